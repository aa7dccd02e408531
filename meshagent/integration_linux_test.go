package meshagent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/echotest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

var (
	podIP       = netip.MustParseAddr("10.7.0.2")
	shadowIP    = netip.MustParseAddr("10.7.0.1")
	serviceIP   = netip.MustParseAddr("10.96.0.10") // on the shadow, reached through Spec.Routes
	serviceCIDR = netip.MustParsePrefix("10.96.0.0/16")
)

// TestAgentInNamespaces runs a real Agent in one network namespace against a shadow side (the
// tunnel server, a ServerBind and a wireguard-go device on a TUN) in another, and checks what a
// pod relies on: readiness after the handshake, traffic both ways and through a spec route, the
// UAPI socket for wgctrl, the metrics, a clean teardown, and logs free of secrets.
//
// Topology: the agent's TUN, netlink socket and HTTP listener are made on a thread inside the
// pod namespace (Run is called there); the shadow's TUN is inside the shadow namespace. The
// WebSocket runs over the root namespace's loopback, because the tunnel client dials from
// goroutines that are not pinned to the pod namespace's thread. Every 10.x address and route
// lives in the test namespaces.
func TestAgentInNamespaces(t *testing.T) {
	requireTUN(t)
	podNS, shadowNS := netnstest.New(t), netnstest.New(t)
	logs, log := newLogBuffer(t)

	podKey, err := meshspec.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	shadowKey, _ := meshspec.GeneratePrivateKey()
	prefix := "pfx-" + randHex(16)
	sh := startShadow(t, shadowNS, shadowKey, podKey.PublicKey(), prefix, log.With("side", "shadow"))

	iface := "ikm" + randHex(4) // unique: the socket directory is shared with the host
	readyFile := filepath.Join(t.TempDir(), "ready")
	sock := filepath.Join(DefaultUAPIDir, iface+".sock")
	a, err := New(Config{
		Spec: meshspec.Spec{
			Interface:     iface,
			PrivateKey:    podKey,
			PeerPublicKey: shadowKey.PublicKey(),
			Routes:        []netip.Prefix{serviceCIDR},
			Tunnel:        meshspec.Tunnel{URL: "ws://" + sh.addr, PathPrefix: meshspec.Secret(prefix)},
		},
		ListenAddr: "127.0.0.1:9101", // inside the pod namespace
		ReadyFile:  readyFile,
		UAPIDir:    DefaultUAPIDir,
		Logger:     log.With("side", "pod"),
	})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	run := podNS.Start(t, a.Run)
	hc := nsHTTPClient(podNS)

	// Readiness: 503 until the first handshake, then 200, and the ready file.
	saw503 := false
	for deadline := time.Now().Add(20 * time.Second); ; {
		if exited, err := run.Exited(); exited {
			t.Fatalf("Run returned before readiness: %v", err)
		}
		code, _, err := hc.get("/readyz")
		if err == nil && code == http.StatusServiceUnavailable {
			saw503 = true
		}
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within 20s (last %d, %v)\nlogs:\n%s", code, err, logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	readyAfter := time.Since(start)
	if !saw503 {
		t.Error("/readyz never answered 503 before the handshake")
	}
	b, err := os.ReadFile(readyFile)
	if err != nil {
		t.Fatalf("ready file after the handshake: %v", err)
	}
	hs, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(strings.TrimPrefix(string(b), "handshake ")))
	if err != nil {
		t.Fatalf("ready file %q: %v", b, err)
	}
	t.Logf("agent start to first handshake: %v (handshake time in the ready file); to /readyz 200: %v",
		hs.Sub(start).Round(time.Millisecond), readyAfter.Round(time.Millisecond))

	if code, body, err := hc.get("/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz = %d %q %v, want 200", code, body, err)
	}

	// Traffic both ways over the mesh, and to the shadow's side of a spec route.
	echoIn(t, podNS, netip.AddrPortFrom(podIP, 7001))
	echoIn(t, shadowNS, netip.AddrPortFrom(shadowIP, 7002))
	echoIn(t, shadowNS, netip.AddrPortFrom(serviceIP, 7003))
	payload := bytes.Repeat([]byte("offloaded pod "), 10000) // 140 kB: many packets at MTU 1280
	for _, tc := range []struct {
		name string
		from *netnstest.NS
		to   netip.AddrPort
	}{
		{"shadow to pod", shadowNS, netip.AddrPortFrom(podIP, 7001)},
		{"pod to shadow", podNS, netip.AddrPortFrom(shadowIP, 7002)},
		{"pod to a service route", podNS, netip.AddrPortFrom(serviceIP, 7003)},
	} {
		t.Run(tc.name, func(t *testing.T) { echoRoundTrip(t, tc.from, tc.to, payload) })
	}

	// The route from Spec.Routes is on the WireGuard link.
	podNL := podNS.Netlink()
	link, err := podNL.LinkByName(iface)
	if err != nil {
		t.Fatal(err)
	}
	if rs := routesTo(t, podNL, serviceCIDR); len(rs) != 1 || rs[0].LinkIndex != link.Attrs().Index {
		t.Errorf("routes to %v: %+v, want one via %s", serviceCIDR, rs, iface)
	}
	if link.Attrs().MTU != meshspec.DefaultMTU {
		t.Errorf("link MTU %d, want %d", link.Attrs().MTU, meshspec.DefaultMTU)
	}

	// wgctrl, from the pod namespace, sees the device through the UAPI socket.
	var wd *wgtypes.Device
	if err := podNS.Do(func() error {
		c, err := wgctrl.New()
		if err != nil {
			return err
		}
		defer c.Close()
		wd, err = c.Device(iface)
		return err
	}); err != nil {
		t.Fatalf("wgctrl: %v", err)
	}
	checkWgctrl(t, wd, podKey, shadowKey.PublicKey())

	// Metrics.
	_, body, err := hc.get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct {
		name string
		min  float64
	}{
		{"mesh_agent_ready", 1},
		{`mesh_agent_peer_bytes_total{direction="rx"}`, float64(len(payload))},
		{`mesh_agent_peer_bytes_total{direction="tx"}`, float64(len(payload))},
		{"mesh_agent_peer_last_handshake_age_seconds", 0},
		{"mesh_agent_peer_last_handshake_timestamp_seconds", float64(start.Unix())},
		{"mesh_agent_tunnel_sessions_total", 1},
		{"mesh_agent_tunnel_session_active", 1},
		{`mesh_agent_tunnel_datagrams_total{direction="rx"}`, 100},
		{`mesh_agent_tunnel_dropped_datagrams_total{direction="rx"}`, 0},
		{`mesh_agent_tunnel_dropped_datagrams_total{direction="tx"}`, 0},
		{"mesh_agent_tunnel_dial_failures_total", 0},
	} {
		v, ok := metricValue(body, m.name)
		if !ok || v < m.min {
			t.Errorf("metric %s = %v (present %v), want at least %v", m.name, v, ok, m.min)
		}
	}

	// Teardown: Run returns, and leaves nothing behind.
	if err := run.Stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("UAPI socket %s still there: %v", sock, err)
	}
	if _, err := os.Lstat(readyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ready file still there: %v", err)
	}
	if _, err := podNL.LinkByName(iface); err == nil {
		t.Errorf("link %s still there", iface)
	}
	if rs := routesTo(t, podNL, serviceCIDR); len(rs) != 0 {
		t.Errorf("routes to %v still there: %+v", serviceCIDR, rs)
	}
	addrs, err := podNL.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range addrs {
		if ad.IP.Equal(podIP.AsSlice()) {
			t.Errorf("address %v still there", ad)
		}
	}
	if _, _, err := hc.get("/healthz"); err == nil {
		t.Error("HTTP server still answers after Run returned")
	}

	// No secret reached the logs, from either side.
	text := logs.String()
	for name, sec := range map[string]string{
		"pod private key":      base64.StdEncoding.EncodeToString(podKey[:]),
		"pod private key hex":  hex.EncodeToString(podKey[:]),
		"shadow private key":   base64.StdEncoding.EncodeToString(shadowKey[:]),
		"shadow key hex":       hex.EncodeToString(shadowKey[:]),
		"pod public key":       b64Key(podKey.PublicKey()),
		"shadow public key":    b64Key(shadowKey.PublicKey()),
		"shadow public hex":    hexKey(shadowKey.PublicKey()),
		"path prefix":          prefix,
		"path prefix, escaped": strings.ReplaceAll(prefix, "-", "%2D"),
	} {
		if strings.Contains(text, sec) {
			t.Errorf("the %s appears in the logs", name)
		}
	}
	if !strings.Contains(text, "first handshake") || !strings.Contains(text, "component=wireguard") {
		t.Errorf("logs lack the agent's or wireguard-go's lines:\n%s", text)
	}
}

func b64Key(k meshspec.Key) string { return base64.StdEncoding.EncodeToString(k[:]) }
func hexKey(k meshspec.Key) string { return hex.EncodeToString(k[:]) }

func checkWgctrl(t *testing.T, d *wgtypes.Device, podKey, shadowPub meshspec.Key) {
	t.Helper()
	if d.Type != wgtypes.Userspace || d.PublicKey != wgtypes.Key(podKey.PublicKey()) {
		t.Errorf("wgctrl device type %v, public key match %v", d.Type, d.PublicKey == wgtypes.Key(podKey.PublicKey()))
	}
	if len(d.Peers) != 1 {
		t.Fatalf("wgctrl lists %d peers, want 1", len(d.Peers))
	}
	p := d.Peers[0]
	var allowed []string
	for _, n := range p.AllowedIPs {
		allowed = append(allowed, n.String())
	}
	if p.PublicKey != wgtypes.Key(shadowPub) || p.PersistentKeepaliveInterval != 25*time.Second || p.LastHandshakeTime.IsZero() ||
		p.Endpoint == nil || p.Endpoint.String() != "127.0.0.1:51820" || strings.Join(allowed, ",") != "10.7.0.1/32,10.96.0.0/16" {
		t.Errorf("wgctrl peer: key match %v, keepalive %v, handshake %v, endpoint %v, allowed %v",
			p.PublicKey == wgtypes.Key(shadowPub), p.PersistentKeepaliveInterval, p.LastHandshakeTime, p.Endpoint, allowed)
	}
}

// shadow is the local-cluster end: a tunnel server and a wireguard-go device at 10.7.0.1 that
// also holds a "service" address, 10.96.0.10.
type shadow struct{ addr string }

func startShadow(t *testing.T, ns *netnstest.NS, key, peer meshspec.Key, prefix string, log *slog.Logger) *shadow {
	t.Helper()
	srv, err := tunnel.NewServer(tunnel.ServerConfig{PathPrefix: prefix, Logger: log.With("component", "tunnel")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = hs.Serve(ln) })
	wg.Go(func() { _ = srv.Run(ctx) })

	var dev *device.Device
	if err := ns.Do(func() error { // NewDevice reads the MTU by name: in the namespace too
		tdev, err := tun.CreateTUN("ikms0", meshspec.DefaultMTU)
		if err == nil {
			dev = device.NewDevice(tdev, tunnel.NewServerBind(srv), wgdevice.NewLogger(log))
		}
		return err
	}); err != nil {
		cancel()
		hs.Close()
		wg.Wait()
		t.Fatalf("create shadow tun: %v", err)
	}
	t.Cleanup(func() {
		dev.Close()
		cancel()
		hs.Close()
		wg.Wait()
	})
	if err := dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=51820\npublic_key=%s\nallowed_ip=%s/32\n",
		hexKey(key), hexKey(peer), podIP)); err != nil {
		t.Fatal(err)
	}
	nl := ns.Netlink()
	link, err := nl.LinkByName("ikms0")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{shadowIP, serviceIP} {
		if err := nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(a, 32))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nl.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(netip.PrefixFrom(podIP, 32)), Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	return &shadow{addr: ln.Addr().String()}
}

// echoIn serves a TCP echo on addr inside ns until the test ends.
func echoIn(t *testing.T, ns *netnstest.NS, addr netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr.String()); return }); err != nil {
		t.Fatal(err)
	}
	echotest.TCP(t, ln)
}

// echoRoundTrip dials addr from ns and checks that payload comes back whole within 10s.
func echoRoundTrip(t *testing.T, ns *netnstest.NS, addr netip.AddrPort, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr.String()); return }); err != nil {
		t.Fatalf("dial %v: %v", addr, err)
	}
	defer c.Close()
	d, _ := ctx.Deadline()
	c.SetDeadline(d)
	werr := make(chan error, 1)
	go func() { _, err := c.Write(payload); werr <- err }()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo from %v: %v", addr, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write to %v: %v", addr, err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo from %v differs from what was sent", addr)
	}
}

func routesTo(t *testing.T, nl *netlink.Handle, dst netip.Prefix) []netlink.Route {
	t.Helper()
	rs, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: ipNet(dst)}, netlink.RT_FILTER_DST)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// nsClient is an HTTP client whose connections are made inside a namespace.
type nsClient struct{ c *http.Client }

func nsHTTPClient(ns *netnstest.NS) nsClient {
	return nsClient{&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() (err error) { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return })
			return c, err
		},
	}}}
}

func (h nsClient) get(path string) (int, string, error) {
	resp, err := h.c.Get("http://127.0.0.1:9101" + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metricValue finds "name value" in a Prometheus text exposition.
func metricValue(body, name string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// TestAgentSaysWhyNoHandshake: a tunnel session that comes up but carries no WireGuard handshake
// (here the shadow expects another client key and drops our initiations) is explained in the log,
// with what crossed the tunnel, instead of "tunnel session up" and then silence.
func TestAgentSaysWhyNoHandshake(t *testing.T) {
	requireTUN(t)
	podNS, shadowNS := netnstest.New(t), netnstest.New(t)
	logs, log := newLogBuffer(t)
	podKey, _ := meshspec.GeneratePrivateKey()
	otherKey, _ := meshspec.GeneratePrivateKey()
	shadowKey, _ := meshspec.GeneratePrivateKey()
	prefix := "pfx-" + randHex(16)
	sh := startShadow(t, shadowNS, shadowKey, otherKey.PublicKey(), prefix, log.With("side", "shadow"))
	a, err := New(Config{
		Spec: meshspec.Spec{
			Interface:     "ikm" + randHex(4),
			PrivateKey:    podKey,
			PeerPublicKey: shadowKey.PublicKey(),
			Routes:        []netip.Prefix{serviceCIDR},
			Tunnel:        meshspec.Tunnel{URL: "ws://" + sh.addr, PathPrefix: meshspec.Secret(prefix)},
		},
		ListenAddr: "127.0.0.1:9101",
		UAPIDir:    DefaultUAPIDir,
		Logger:     log.With("side", "pod"),
	})
	if err != nil {
		t.Fatal(err)
	}
	run := podNS.Start(t, a.Run)
	defer func() {
		if err := run.Stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(noHandshakeAfter + 10*time.Second)
	for logs.Count("tunnel session up but no WireGuard handshake") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no explanation logged within %v of the start\n%s", noHandshakeAfter+10*time.Second, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if logs.Count("tunnel session up but no WireGuard handshake", "datagrams_received=0", "nothing comes back", "key") != 1 {
		t.Errorf("the explanation does not say that nothing came back and what to check:\n%s", logs.String())
	}
}

// requireTUN skips unless the test can make network namespaces (root, ip) and TUN devices.
func requireTUN(t *testing.T) {
	t.Helper()
	netnstest.Require(t, "ip")
	if _, err := os.Stat(wgdevice.TUNPath); err != nil {
		t.Skipf("skipping: %s is missing: %v", wgdevice.TUNPath, err)
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
