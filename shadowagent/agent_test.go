package shadowagent

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/porttest"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/usernet"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// TestProbesBeforeRun checks the HTTP API of an agent that is not up: not healthy, not ready
// with the list of what is missing, and metrics limited to the tunnel counters.
func TestProbesBeforeRun(t *testing.T) {
	a, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, a.handler, "/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz = %d, want 503", code)
	}
	code, body := get(t, a.handler, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "tunnel listener, wireguard device, netfilter rules") {
		t.Errorf("/readyz = %d %q, want 503 listing all three", code, body)
	}
	code, body = get(t, a.handler, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{"shadow_agent_ready 0", "shadow_agent_tunnel_sessions_total 0", "shadow_agent_tunnel_refused_upgrades_total 0",
		"shadow_agent_tunnel_malformed_requests_total 0", `shadow_agent_tunnel_datagrams_total{direction="rx"} 0`,
		`shadow_agent_tunnel_dropped_datagrams_total{direction="tx"} 0`, "shadow_agent_tunnel_session_active 0", "go_goroutines", "process_"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "shadow_agent_peer_") {
		t.Error("/metrics has peer metrics without a device")
	}
	a.listening = func() bool { return true }
	a.rulesApplied.Store(true)
	if code, body := get(t, a.handler, "/readyz"); code != http.StatusServiceUnavailable || body != "not ready: wireguard device\n" {
		t.Errorf("/readyz without device = %d %q", code, body)
	}
	a.stopping.Store(true)
	if code, body := get(t, a.handler, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while stopping = %d %q", code, body)
	}
	if code, _ := get(t, a.handler, "/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d", code)
	}
}

// TestRunFailsCleanly starts agents that cannot listen: Run returns the error at once, closes
// what it opened, and refuses a second call.
func TestRunFailsCleanly(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name    string
		health  string
		listen  string
		wantErr string
	}{
		{"health", "256.0.0.1:1", "127.0.0.1:28080", "listen for health and metrics"},
		{"tunnel", "127.0.0.1:0", taken.Addr().String(), "listen for the tunnel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			c.HealthAddr, c.ListenAddr = tc.health, tc.listen
			if tc.name == "tunnel" {
				c.HealthAddr = porttest.FreeLoopback(t)
			}
			a, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Run = %v, want %q", err, tc.wantErr)
			}
			if err := a.Run(ctx); err == nil || !strings.Contains(err.Error(), "already started") {
				t.Fatalf("second Run = %v", err)
			}
			if tc.name == "tunnel" { // the health listener was closed again
				ln, err := net.Listen("tcp", c.HealthAddr)
				if err != nil {
					t.Fatalf("health port still taken after Run failed: %v", err)
				}
				ln.Close()
			}
		})
	}
}

// TestReadyzMeshLost: a mesh that was up and has had no handshake for MeshLostAfter makes the
// shadow not ready, saying why; a mesh never up (the offloaded pod not there yet) does not, and a
// fresh handshake makes it ready again. The handshake times stand in for the device's; the real
// loss, with the real mesh-agent stopped, is TestShadowMeshLost.
func TestReadyzMeshLost(t *testing.T) {
	logs, log := newLogBuffer(t)
	cfg := testConfig()
	cfg.Logger = log
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.eng.Start(wgdevice.Config{Identity: identity(a.cfg), Bind: a.side.Bind, Netstack: &usernet.Config{Addresses: []netip.Addr{a.cfg.Address.Addr()}}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.eng.Stop)
	a.listening = func() bool { return true }
	a.rulesApplied.Store(true)
	var last time.Time
	a.lastHandshake = func() (time.Time, error) { return last, nil }
	for _, tc := range []struct {
		name string
		last time.Time
		code int
		body string
	}{
		{"never up", time.Time{}, http.StatusOK, "ready\n"},
		{"up", time.Now().Add(-30 * time.Second), http.StatusOK, "ready\n"},
		{"lost", time.Now().Add(-MeshLostAfter - 10*time.Second), http.StatusServiceUnavailable, "not ready: mesh to the offloaded pod lost (last WireGuard handshake 3m10s ago)\n"},
		{"back", time.Now(), http.StatusOK, "ready\n"},
	} {
		last = tc.last
		if code, body := get(t, a.handler, "/readyz"); code != tc.code || body != tc.body {
			t.Errorf("%s: /readyz = %d %q, want %d %q", tc.name, code, body, tc.code, tc.body)
		}
	}
	for _, want := range []string{"mesh to the offloaded pod lost", "mesh to the offloaded pod back"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}
