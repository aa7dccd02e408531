package shadowagent

import (
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

// TestShadowDialsInNamespaces is the inbound direction, in TestShadowInNamespaces's topology: the
// real mesh-agent binary serves the tunnel in the pod namespace (mesh.json tunnel.listen) and the
// shadow-agent dials it (ConnectURL), so that nothing in the shadow namespace listens for the
// remote side. The mesh does what it does outbound: the client reaches the pod on the shadow's
// IP, the pod reaches a local service as the shadow's IP; and it comes back after the mesh-agent
// restarts.
func TestShadowDialsInNamespaces(t *testing.T) {
	netnstest.Require(t, "ip", "iptables", "iptables-save", "ss")
	if _, err := os.Stat(wgdevice.TUNPath); err != nil {
		t.Skipf("skipping: needs %s: %v", wgdevice.TUNPath, err)
	}
	meshAgent := buildtest.Binary(t, "../cmd/mesh-agent")
	shadowAgent := buildtest.Binary(t, "../cmd/shadow-agent")
	client, shadow, pod := newTopology(t)

	podAddr := netip.AddrPortFrom(podMeshIP, 8080)
	serveHTTPIn(t, pod, podAddr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod saw %s", r.RemoteAddr)
	}))
	serveHTTPIn(t, client, netip.AddrPortFrom(serviceIP, 80), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "service saw %s", r.RemoteAddr)
	}))

	// The pod's tunnel, as the remote cluster's ingress would reach it.
	podTunnel := netip.MustParseAddrPort("192.168.60.2:28081")
	shadowKey, podKey := genKey(t), genKey(t)
	prefix := "pfx" + randHex(t, 12)
	// The binary, not an in-process Agent: a dialing shadow dials from its process's network
	// namespace (in a pod, the pod's), which for a test process is the host's.
	logs, stopShadow := startShadowAgentProc(t, shadow, shadowAgent, prefix, shadowKey,
		"--peer-public-key="+b64(podKey.PublicKey()), "--pod-ip="+shadowPodIP.String(),
		"--connect=ws://"+podTunnel.String(), "--reassert-interval=500ms")
	alive := func(t *testing.T) {
		t.Helper()
		if exited, err := stopShadow.exited(); exited {
			t.Fatalf("the shadow-agent stopped: %v\nlogs:\n%s", err, logs)
		}
	}
	fromClient := nsHTTPClient(client)
	probe := func(path string) (int, string, error) {
		return fromClient.get("http://" + netip.AddrPortFrom(shadowPodIP, 9102).String() + path)
	}
	// Ready before the pod exists: a dialing shadow waits for no peer, as a listening one.
	polltest.Until(t, "/readyz 200 without a peer", 20*time.Second, func() error {
		alive(t)
		if code, body, err := probe("/readyz"); err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})

	// Nothing in the shadow namespace listens but the health port: the local side only dials.
	listening := shadow.MustExec("ss", "-Hltnu")
	for line := range strings.Lines(listening) {
		if f := strings.Fields(line); len(f) >= 5 && !strings.HasSuffix(f[4], ":9102") {
			t.Errorf("the dialing shadow listens on %s:\n%s", f[4], listening)
		}
	}

	spec := meshspec.Spec{
		PrivateKey:    podKey,
		PeerPublicKey: shadowKey.PublicKey(),
		Routes:        []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")},
		Tunnel:        meshspec.Tunnel{Listen: ":" + fmt.Sprint(podTunnel.Port()), PathPrefix: meshspec.Secret(prefix)},
	}
	firstMeshLogs, stopMesh := startMeshAgentProc(t, pod, meshAgent, spec)
	podURL := "http://" + netip.AddrPortFrom(shadowPodIP, 8080).String() + "/"
	checkPod := func() error {
		code, body, err := fromClient.get(podURL)
		if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "pod saw 10.7.0.1:") {
			return fmt.Errorf("GET %s = %d %q %v", podURL, code, body, err)
		}
		return nil
	}
	first := polltest.Until(t, "TCP from the client to the pod", 30*time.Second, func() error { alive(t); return checkPod() })
	t.Logf("mesh-agent start to first TCP exchange, the shadow dialing: %v", first.Round(time.Millisecond))

	t.Run("pod to a local service", func(t *testing.T) {
		url := "http://" + serviceIP.String() + "/"
		code, body, err := nsHTTPClient(pod).get(url)
		if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "service saw "+shadowPodIP.String()+":") {
			t.Fatalf("GET %s from the pod = %d %q %v; want the service to see the shadow's IP", url, code, body, err)
		}
	})
	// The mesh-agent restarts (a new container of the pod): the shadow re-dials it.
	stopMesh()
	meshLogs, _ := startMeshAgentProc(t, pod, meshAgent, spec)
	back := polltest.Until(t, "TCP to the pod after the mesh-agent restarted", 60*time.Second, func() error { alive(t); return checkPod() })
	t.Logf("traffic back %v after the mesh-agent restarted", back.Round(time.Millisecond))
	t.Run("metrics", func(t *testing.T) {
		_, body, err := probe("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []struct {
			name string
			min  float64
		}{
			{"shadow_agent_ready", 1},
			{"shadow_agent_tunnel_sessions_total", 2},
			{"shadow_agent_tunnel_dial_failures_total", 0},
			{"shadow_agent_tunnel_session_active", 1},
			{`shadow_agent_peer_bytes_total{direction="rx"}`, 1},
		} {
			if v, ok := metricValue(body, m.name); !ok || v < m.min {
				t.Errorf("metric %s = %v (present %v), want at least %v", m.name, v, ok, m.min)
			}
		}
		if strings.Contains(body, "shadow_agent_tunnel_refused_upgrades_total") {
			t.Error("a dialing shadow reports refused upgrades")
		}
	})

	if err := stopShadow.stop(); err != nil {
		t.Fatalf("shadow-agent exit: %v\nlogs:\n%s", err, logs)
	}
	for who, text := range map[string]string{"shadow-agent": logs.String(), "mesh-agent": firstMeshLogs.String() + meshLogs.String()} {
		if strings.Contains(text, prefix) || strings.Contains(text, url64(prefix)) {
			t.Errorf("the path prefix appears in the %s logs", who)
		}
	}
	if !strings.Contains(logs.String(), "tunnel=\"dial ws://"+podTunnel.String()+"\"") {
		t.Errorf("the shadow's logs do not say it dials:\n%s", logs)
	}
}
