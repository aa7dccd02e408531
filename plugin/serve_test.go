package plugin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// TestServeSocket: a second plugin on the socket of a live one is refused and the first keeps
// serving; a stale socket file (its process died) is replaced.
func TestServeSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "plugin.sock")
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("first")) })
	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() { first <- Serve(ctx, "unix", sock, ok) }()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	answers := func() bool {
		resp, err := client.Get("http://plugin/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(10 * time.Second)
	for !answers() {
		if time.Now().After(deadline) {
			t.Fatal("the first plugin never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := Serve(t.Context(), "unix", sock, ok); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second Serve on a live socket: %v, want ErrSocketInUse", err)
	}
	if !answers() {
		t.Fatal("the first plugin lost its socket to the second")
	}
	cancel()
	if err := <-first; err != nil {
		t.Fatalf("first Serve: %v", err)
	}

	// A socket file left by a process that died: nothing answers, so it is replaced.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	again := make(chan error, 1)
	go func() { again <- Serve(ctx, "unix", sock, ok) }()
	deadline = time.Now().Add(10 * time.Second)
	for !answers() {
		select {
		case err := <-again:
			t.Fatalf("Serve on a stale socket: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("Serve never answered on the stale socket's path")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-again; err != nil {
		t.Fatal(err)
	}
}
