package shadowagent

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain fails the run when goroutines of the agent, the tunnel, wireguard-go or an HTTP
// server outlive the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaks := waitGoroutines(5 * time.Second); leaks != "" {
			fmt.Fprintf(os.Stderr, "goroutine leak:\n%s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

var leakMarkers = []string{
	"interlink-k8s-mesh/shadowagent.",
	"interlink-k8s-mesh/tunnel.",
	"interlink-k8s-mesh/netfilter.",
	"golang.zx2c4.com/wireguard/device.",
	"golang.zx2c4.com/wireguard/tun.",
	"net/http.(*conn).serve",
	"net/http.(*persistConn)",
	"net/http.(*Server).Serve",
}

func waitGoroutines(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		leaks := leakedGoroutines()
		if leaks == "" || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leakedGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "leakedGoroutines") || strings.Contains(g, "TestMain") {
			continue
		}
		for _, m := range leakMarkers {
			if strings.Contains(g, m) {
				out = append(out, g)
				break
			}
		}
	}
	return strings.Join(out, "\n\n")
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

// count returns how many lines contain every one of subs.
func (l *logBuffer) count(subs ...string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}
