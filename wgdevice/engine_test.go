package wgdevice

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/echotest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/usernet"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

// udpBind is wireguard-go's own UDP bind with a TUN that passes through: the engine's test
// stands in for the tunnel (tested with real engines in the agents) with real sockets on
// loopback.
type udpBind struct{ conn.Bind }

func (udpBind) TUN(t tun.Device) tun.Device { return t }

func keyPair(t *testing.T) (private, public meshspec.Key) {
	t.Helper()
	private, err := meshspec.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return private, private.PublicKey()
}

func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func TestIdentityUAPI(t *testing.T) {
	var priv, pub meshspec.Key
	priv[0], pub[0] = 1, 2
	id := Identity{PrivateKey: priv, PeerPublicKey: pub, Endpoint: netip.MustParseAddrPort("127.0.0.1:51820"),
		ListenPort: 51820, Keepalive: 25 * time.Second,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.7.0.1/32"), netip.MustParsePrefix("fd00::/64")}}
	want := "private_key=01" + strings.Repeat("00", 31) + "\n" +
		"listen_port=51820\n" +
		"replace_peers=true\n" +
		"public_key=02" + strings.Repeat("00", 31) + "\n" +
		"endpoint=127.0.0.1:51820\n" +
		"persistent_keepalive_interval=25\n" +
		"replace_allowed_ips=true\n" +
		"allowed_ip=10.7.0.1/32\n" +
		"allowed_ip=fd00::/64\n"
	if diff := cmp.Diff(want, id.UAPI()); diff != "" {
		t.Errorf("UAPI (-want +got):\n%s", diff)
	}
	id.ListenPort = 0
	if got := id.UAPI(); strings.Contains(got, "listen_port") {
		t.Errorf("listen_port without a port:\n%s", got)
	}
}

// TestEnginePair: two engines in netstack mode, real UDP on loopback between them: handshake, a
// TCP flow from one stack to the other's workload; UAPI socket, health, peer metrics and
// rehandshake on a live device; Close leaves nothing (TestMain checks goroutines).
func TestEnginePair(t *testing.T) {
	privA, pubA := keyPair(t)
	privB, pubB := keyPair(t)
	portA, portB := freeUDPPort(t), freeUDPPort(t)
	addrA, addrB := netip.MustParseAddr("10.7.0.1"), netip.MustParseAddr("10.7.0.2")
	// B's workload: an echo server on loopback, where B's stack sends the flows it receives.
	workload, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echotest.TCP(t, workload)
	toWorkload := func(ctx context.Context, _, _ netip.AddrPort) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", workload.Addr().String())
	}
	sock := filepath.Join(t.TempDir(), "a.sock")
	a, err := Start(Config{
		Identity: Identity{PrivateKey: privA, PeerPublicKey: pubB, ListenPort: portA, Keepalive: time.Second,
			Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), portB), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.7.0.2/32")}},
		Bind: udpBind{conn.NewDefaultBind()}, Netstack: &usernet.Config{Addresses: []netip.Addr{addrA}}, UAPISocket: sock,
	})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.ServeUAPI() }()
	defer func() {
		a.Close()
		a.Close() // twice is fine
		if err := <-served; err != nil {
			t.Errorf("ServeUAPI: %v", err)
		}
	}()
	b, err := Start(Config{
		Identity: Identity{PrivateKey: privB, PeerPublicKey: pubA, ListenPort: portB,
			Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), portA), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.7.0.1/32")}},
		Bind: udpBind{conn.NewDefaultBind()}, Netstack: &usernet.Config{Addresses: []netip.Addr{addrB}, DialTCP: toWorkload},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.ServeUAPI(); err != nil { // no socket: returns at once
		t.Errorf("ServeUAPI without a socket: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var p Peer
	for p.LastHandshake.IsZero() {
		if p, err = a.Peer(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("no handshake between the two engines within 10 s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if p.PublicKey != pubB || p.TxBytes == 0 {
		t.Errorf("peer %+v, want B with bytes sent", p)
	}
	// A flow from A's stack to B's address reaches B's workload through both devices.
	c, err := a.Stack().DialTCP(ctx, netip.AddrPortFrom(addrB, 7000))
	if err != nil {
		t.Fatalf("dial through the engines: %v", err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	echo := make([]byte, 4)
	if _, err := io.ReadFull(c, echo); err != nil || string(echo) != "ping" {
		t.Errorf("echo through the engines: %q, %v", echo, err)
	}
	c.Close()
	if b.Stack() == nil {
		t.Error("netstack engine without a stack")
	}

	first := p.LastHandshake
	time.Sleep(1100 * time.Millisecond) // handshake times have a second's resolution to rate limits
	if err := a.Rehandshake(pubB); err != nil {
		t.Fatalf("Rehandshake: %v", err)
	}
	for p.LastHandshake.Equal(first) {
		if p, err = a.Peer(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("no new handshake after Rehandshake")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := a.Rehandshake(pubA); err == nil {
		t.Error("Rehandshake of an unknown peer succeeded")
	}

	// The UAPI socket answers wg(8)'s get.
	c, err = net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("get=1\n\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _ := c.Read(buf)
	if peers, err := ParsePeers(string(buf[:n])); err != nil || len(peers) != 1 || peers[0].PublicKey != pubB {
		t.Errorf("UAPI socket get: %v, %v", peers, err)
	}

	rec := httptest.NewRecorder()
	ServeHealthz(rec, a)
	if rec.Code != http.StatusOK {
		t.Errorf("healthz of a netstack engine: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	ServeHealthz(rec, nil)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not up") {
		t.Errorf("healthz without an engine: %d %s", rec.Code, rec.Body)
	}

	// The metrics both agents report, read off the live engine; nothing of the peer without one.
	var running Running
	cfg := MetricsConfig{Prefix: "test", Ready: func() bool { return true }, ReadyHelp: "ready", Peer: "the peer",
		Tunnel:      TunnelRole{SessionsHelp: "sessions", RefusedName: "refused_total", RefusedHelp: "refused"},
		TunnelStats: func() tunnel.Stats { return tunnel.Stats{Sessions: 3, Active: 1, TxDatagrams: 7} },
		Engine:      &running}
	families := func() map[string]float64 {
		got := map[string]float64{}
		mfs, err := NewRegistry(cfg).Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if !strings.HasPrefix(mf.GetName(), "test_") {
				continue
			}
			for _, m := range mf.GetMetric() {
				got[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return got
	}
	down := families()
	if _, ok := down["test_peer_bytes_total"]; ok || down["test_ready"] != 1 || down["test_tunnel_sessions_total"] != 3 || down["test_tunnel_datagrams_total"] != 7 {
		t.Errorf("metrics without an engine: %v", down)
	}
	running.e.Store(a)
	up := families()
	if up["test_peer_bytes_total"] == 0 || up["test_peer_last_handshake_timestamp_seconds"] < float64(first.Unix()) {
		t.Errorf("peer metrics of the live engine: %v", up)
	}
	running.e.Store(nil)

	rec = httptest.NewRecorder()
	ProbeMux(&running, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("mine")) }, NewRegistry(cfg)).
		ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Body.String() != "mine" {
		t.Errorf("/readyz = %q, want the agent's handler", rec.Body)
	}
}

func TestStartRefuses(t *testing.T) {
	if _, err := Start(Config{Netstack: &usernet.Config{Addresses: []netip.Addr{netip.MustParseAddr("10.7.0.1")}}}); err == nil || !strings.Contains(err.Error(), "no bind") {
		t.Errorf("Start without a bind = %v", err)
	}
	// A UAPI socket path that cannot be made: the device is closed again.
	_, err := Start(Config{Bind: udpBind{conn.NewDefaultBind()}, Netstack: &usernet.Config{Addresses: []netip.Addr{netip.MustParseAddr("10.7.0.1")}},
		UAPISocket: "/proc/no/such/dir/x.sock"})
	if err == nil {
		t.Error("Start with an impossible UAPI socket succeeded")
	}
}
