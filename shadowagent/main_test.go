package shadowagent

import (
	"log/slog"
	"testing"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/buildtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/leakcheck"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/logtest"
)

// TestMain fails the run when goroutines of the agent, the tunnel, wireguard-go or an HTTP
// server outlive the tests.
func TestMain(m *testing.M) {
	leakcheck.Main(m, leakcheck.Config{AfterRun: buildtest.Cleanup, Markers: []string{
		"interlink-k8s-mesh/shadowagent.",
		"interlink-k8s-mesh/tunnel.",
		"interlink-k8s-mesh/wgdevice.",
		"interlink-k8s-mesh/netfilter.",
		"golang.zx2c4.com/wireguard/device.",
		"golang.zx2c4.com/wireguard/tun.",
		"net/http.(*conn).serve",
		"net/http.(*persistConn)",
		"net/http.(*Server).Serve",
	}})
}

// logBuffer collects log output for assertions and echoes it to the test log with -v.
type logBuffer = logtest.Buffer

func newLogBuffer(t testing.TB) (*logBuffer, *slog.Logger) { return logtest.New(t) }
