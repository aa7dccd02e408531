package meshagent

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/leakcheck"
)

// TestMain fails the run when goroutines of the agent, the tunnel, wireguard-go or an HTTP
// server outlive the tests.
func TestMain(m *testing.M) {
	leakcheck.Main(m, leakcheck.Config{Markers: []string{
		"interlink-k8s-mesh/meshagent.",
		"interlink-k8s-mesh/tunnel.",
		"interlink-k8s-mesh/wgdevice.",
		"golang.zx2c4.com/wireguard/device.",
		"golang.zx2c4.com/wireguard/tun.",
		"net/http.(*conn).serve",
		"net/http.(*persistConn)",
	}})
}

// logBuffer collects log output for assertions and echoes it to the test log with -v.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func newLogBuffer(t testing.TB) (*logBuffer, *slog.Logger) {
	lb := &logBuffer{t: t}
	return lb, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if testing.Verbose() {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
