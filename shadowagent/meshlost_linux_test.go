package shadowagent

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/buildtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// TestShadowMeshLost cuts the link between a shadow and the real mesh-agent once the mesh is up:
// the shadow turns not ready, saying the mesh is lost, once WireGuard's keys have expired
// (MeshLostAfter after the last handshake), and ready again when the link is back and the
// mesh-agent has re-dialled. It waits out WireGuard's 3 minutes, in parallel with the rest.
func TestShadowMeshLost(t *testing.T) {
	netnstest.Require(t, "ip", "iptables", "iptables-save")
	if _, err := os.Stat(wgdevice.TUNPath); err != nil {
		t.Skipf("skipping: needs %s: %v", wgdevice.TUNPath, err)
	}
	t.Parallel()
	meshAgent := buildtest.Binary(t, "../cmd/mesh-agent")
	client, shadow, pod := netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Veth(client, "c0", shadow, "eth0") // the shadow's pod network: its default route
	netnstest.Veth(pod, "p0", shadow, "ws0")
	client.MustExec("ip", "addr", "add", "192.168.50.1/24", "dev", "c0")
	shadow.MustExec("ip", "addr", "add", shadowPodIP.String()+"/24", "dev", "eth0")
	shadow.MustExec("ip", "route", "add", "default", "via", "192.168.50.1", "dev", "eth0")
	shadow.MustExec("ip", "addr", "add", "192.168.60.1/24", "dev", "ws0")
	pod.MustExec("ip", "addr", "add", "192.168.60.2/24", "dev", "p0")

	logs, log := newLogBuffer(t)
	shadowKey, podKey := genKey(t), genKey(t)
	prefix := "pfx" + randHex(t, 12)
	a, err := New(Config{
		PathPrefix: meshspec.Secret(prefix), PrivateKey: shadowKey, PeerPublicKey: podKey.PublicKey(),
		PodIP: shadowPodIP, UAPIDir: t.TempDir(), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	wait := shadow.Go(func() error { return a.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	readyz := func() (int, string) {
		code, body, err := nsHTTPClient(shadow).get("http://" + netip.AddrPortFrom(shadowPodIP, 9102).String() + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		return code, body
	}
	polltest.Until(t, "/readyz 200 before the pod exists", 20*time.Second, func() error {
		if code, body := readyz(); code != http.StatusOK {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})

	startMeshAgent(t, pod, meshAgent, meshspec.Spec{
		PrivateKey: podKey, PeerPublicKey: shadowKey.PublicKey(),
		Tunnel: meshspec.Tunnel{URL: "ws://" + wsAddr.String(), PathPrefix: meshspec.Secret(prefix)},
	})
	polltest.Until(t, "the first handshake", 30*time.Second, func() error {
		if p, err := a.eng.Load().Peer(); err != nil || p.LastHandshake.IsZero() {
			return fmt.Errorf("no handshake yet (%v)", err)
		}
		return nil
	})

	shadow.MustExec("ip", "link", "set", "ws0", "down")
	cut := time.Now()
	lostIn := polltest.Until(t, "/readyz 503: mesh lost", MeshLostAfter+30*time.Second, func() error {
		if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "mesh to the offloaded pod lost") {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})

	t.Logf("not ready %v after the link was cut", lostIn.Round(time.Second))
	if since := time.Since(cut); since < MeshLostAfter-5*time.Second {
		t.Errorf("reported lost %v after the cut, before WireGuard's keys could expire", since)
	}

	shadow.MustExec("ip", "link", "set", "ws0", "up")
	backIn := polltest.Until(t, "/readyz 200 once the link is back", time.Minute, func() error {
		if code, body := readyz(); code != http.StatusOK {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})

	t.Logf("ready again %v after the link came back", backIn.Round(time.Second))
	for _, want := range []string{"mesh to the offloaded pod lost", "mesh to the offloaded pod back"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("shadow logs lack %q", want)
		}
	}
}
