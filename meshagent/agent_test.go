package meshagent

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/dnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func() Config
		err  string
	}{
		{"defaults", func() Config { return Config{Spec: testSpec()} }, ""},
		{"invalid spec", func() Config {
			s := testSpec()
			s.MTU = 10
			return Config{Spec: s}
		}, "mtu"},
		{"missing ca file", func() Config {
			s := testSpec()
			s.Tunnel.URL, s.Tunnel.CAFile = "wss://example.org", "/nonexistent/ca.crt"
			return Config{Spec: s}
		}, "read ca file"},
		{"socket path too long", func() Config { return Config{Spec: testSpec(), UAPIDir: "/" + strings.Repeat("d", 120)} }, "longer than"},
		{"ready file is a directory", func() Config { return Config{Spec: testSpec(), ReadyFile: "/tmp/"} }, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.cfg())
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if a.cfg.ListenAddr != DefaultListenAddr || a.sock != "/var/run/wireguard/wg0.sock" {
					t.Errorf("defaults: listen %q, socket %q", a.cfg.ListenAddr, a.sock)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// TestProbesBeforeRun checks the HTTP API of an agent whose device is not up: not healthy, not
// ready, and metrics limited to the tunnel counters.
func TestProbesBeforeRun(t *testing.T) {
	a, err := New(Config{Spec: testSpec()})
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, a.handler, "/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz = %d, want 503", code)
	}
	if code, body := get(t, a.handler, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "handshake") {
		t.Errorf("/readyz = %d %q, want 503 waiting for handshake", code, body)
	}
	code, body := get(t, a.handler, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{"mesh_agent_ready 0", "mesh_agent_tunnel_sessions_total 0", `mesh_agent_tunnel_datagrams_total{direction="tx"} 0`,
		"mesh_agent_tunnel_session_active 0", "go_goroutines"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "mesh_agent_peer_bytes_total") {
		t.Error("/metrics has peer metrics without a device")
	}
	a.ready.Store(true)
	if code, _ := get(t, a.handler, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after handshake = %d, want 200", code)
	}
	if code, _ := get(t, a.handler, "/metrics"); code != http.StatusOK {
		t.Errorf("/metrics = %d", code)
	}
}

// TestRunFailsCleanly starts an agent that cannot listen: Run returns the error at once, and
// refuses a second call.
func TestRunFailsCleanly(t *testing.T) {
	a, err := New(Config{Spec: testSpec(), ListenAddr: "256.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run = %v, want a listen error", err)
	}
	if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), "already started") {
		t.Fatalf("second Run = %v", err)
	}
}

func TestReadyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ready")
	at := time.Date(2026, 11, 24, 10, 0, 0, 5, time.UTC)
	if err := writeReadyFile(path, at); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "handshake 2026-11-24T10:00:00.000000005Z\n" {
		t.Errorf("ready file = %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := writeReadyFile(filepath.Join(dir, "missing", "ready"), at); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
	if err := removeFile(path); err != nil {
		t.Fatal(err)
	}
	if err := removeFile(path); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
}

func TestNoHandshakeWhy(t *testing.T) {
	tests := []struct {
		name     string
		st       tunnel.Stats
		unmasked bool
		want     string
	}{
		{"nothing sent", tunnel.Stats{Sessions: 1}, false, "not sending"},
		{"masked, nothing back", tunnel.Stats{Sessions: 1, TxDatagrams: 3}, false, "--websocket-mask-frame"},
		{"unmasked, nothing back", tunnel.Stats{Sessions: 1, TxDatagrams: 3}, true, "does not answer"},
		{"answers, keys do not pair", tunnel.Stats{Sessions: 1, TxDatagrams: 3, RxDatagrams: 2}, false, "keys do not pair"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs := noHandshakeWhy(tt.st, tt.unmasked)
			why, _ := attrs[len(attrs)-1].(string)
			if !strings.Contains(why, tt.want) {
				t.Errorf("why = %q, want it to say %q", why, tt.want)
			}
		})
	}
}

// TestTunnelResolver: the tunnel's nameservers are asked in turn, on the port given; none means
// the pod's own resolver.
func TestTunnelResolver(t *testing.T) {
	if tunnelResolver(nil, 53) != nil {
		t.Error("no nameservers gave a resolver")
	}
	names := map[string]string{"ingress.site.test.": "192.0.2.7"}
	first, a1 := dnstest.Loopback(t, names)
	// The second on 127.0.0.2, same port: the resolver dials one port on every nameserver.
	a2 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), a1.Port())
	pc, err := net.ListenPacket("udp", a2.String())
	if err != nil {
		t.Fatalf("listen %s: %v", a2, err)
	}
	ln, err := net.Listen("tcp", a2.String())
	if err != nil {
		pc.Close()
		t.Fatalf("listen %s: %v", a2, err)
	}
	second := dnstest.Serve(t, pc, ln, names)
	res := tunnelResolver([]netip.Addr{a1.Addr(), a2.Addr()}, a1.Port())
	for range 4 {
		got, err := res.LookupNetIP(t.Context(), "ip4", "ingress.site.test.")
		if err != nil || len(got) != 1 || got[0] != netip.MustParseAddr("192.0.2.7") {
			t.Fatalf("lookup = %v, %v", got, err)
		}
	}
	if len(first.Asked()) == 0 || len(second.Asked()) == 0 {
		t.Errorf("asked %d and %d times: both nameservers must take queries", len(first.Asked()), len(second.Asked()))
	}
}
