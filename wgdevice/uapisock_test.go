package wgdevice

import (
	"bufio"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUAPISocket serves a real device on a socket and talks the UAPI protocol to it, as wg(8)
// does; Close must remove the socket, end open connections and stop Serve.
func TestUAPISocket(t *testing.T) {
	dev := testDevice(t, true)
	path := filepath.Join(t.TempDir(), "run", "wg0.sock")
	us, err := ListenUAPI(path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- us.Serve(dev) }()

	if fi, err := os.Stat(path); err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file: %v, %v; want a 0600 socket", fi, err)
	}
	if _, err := ListenUAPI(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second listen = %v, want in use", err)
	}

	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("get=1\n\n")); err != nil {
		t.Fatal(err)
	}
	var reply strings.Builder
	sc := bufio.NewScanner(conn)
	for sc.Scan() && sc.Text() != "" {
		reply.WriteString(sc.Text() + "\n")
	}
	peers, err := ParsePeers(reply.String())
	if err != nil || len(peers) != 1 || peers[0].PublicKey != testPeerKey || !strings.Contains(reply.String(), "errno=0\n") {
		t.Fatalf("get over the socket: %d peers, %v:\n%s", len(peers), err, reply.String())
	}

	idle, err := net.Dial("unix", path) // open, never speaks: Close must end it
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	time.Sleep(20 * time.Millisecond) // let Serve accept it
	closed := make(chan struct{})
	go func() { us.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return: an open connection kept it waiting")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve = %v, want nil after Close", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Close: %v", err)
	}
}

// TestUAPISocketStale replaces a socket file nobody listens on, as a crashed process leaves it.
func TestUAPISocketStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wg0.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	us, err := ListenUAPI(path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	us.Close()
}
