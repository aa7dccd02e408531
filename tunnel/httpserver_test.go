package tunnel

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/logtest"
)

// TestOwnListenerReportsGarbage runs a Server on its own loopback listener:
// garbage and truncated requests are answered by net/http and logged with a reason; requests the
// tunnel refuses are logged by the tunnel only; an idle connection is not logged at all.
func TestOwnListenerReportsGarbage(t *testing.T) {
	logs, log := logtest.New(t)
	srv, err := NewServer(ServerConfig{PathPrefix: testPrefix, Addr: "127.0.0.1:0", Logger: log.With("component", "tunnel")})
	if err != nil {
		t.Fatal(err)
	}
	srv.readHeaderTimeout = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	for deadline := time.Now().Add(5 * time.Second); srv.ListenAddr() == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not listen within 5 s")
		}
	}
	addr := srv.ListenAddr().String()

	exchange := func(send string) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	waitLogs := func(want int, subs ...string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); logs.Count(subs...) < want; {
			if time.Now().After(deadline) {
				t.Fatalf("want %d log lines with %q, logs:\n%s", want, subs, logs)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	if got := exchange("\x16\x03\x01\x00garbage\r\n\r\n"); got != "HTTP/1.1 400 Bad Request" {
		t.Errorf("garbage answered %q", got)
	}
	waitLogs(1, "refused tunnel connection", "no valid HTTP request")

	if got := exchange("GET /" + testPrefix); strings.Contains(got, "101") { // truncated: the header timeout ends it
		t.Errorf("truncated request answered %q", got)
	}
	waitLogs(2, "refused tunnel connection")

	if got := exchange("GET /wrong/events HTTP/1.1\r\nHost: x\r\n\r\n"); got != "HTTP/1.1 400 Bad Request" {
		t.Errorf("wrong path answered %q", got)
	}
	waitLogs(1, "refused tunnel upgrade", `reason="wrong path"`)

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = idle.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = idle.Read(make([]byte, 1)) // the header timeout closes it
	idle.Close()

	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || string(body) != "Invalid request" {
		t.Errorf("plain GET = %d %q, want wstunnel's 400 Invalid request", resp.StatusCode, body)
	}

	time.Sleep(50 * time.Millisecond)
	if n := srv.Stats().Malformed; n != 2 || logs.Count("refused tunnel connection") != 2 {
		t.Errorf("malformed = %d, logged %d; want 2 (garbage, truncated), not the idle one nor the refused upgrades\n%s",
			n, logs.Count("refused tunnel connection"), logs)
	}
	if strings.Contains(logs.String(), testPrefix) {
		t.Error("the path prefix appears in the logs")
	}
}
