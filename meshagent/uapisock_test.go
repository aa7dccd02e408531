package meshagent

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
// does; close must remove the socket, end open connections and stop serve.
func TestUAPISocket(t *testing.T) {
	dev := testDevice(t)
	s := testSpec()
	if err := dev.IpcSet(uapiConfig(s)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "run", "wg0.sock")
	us, err := listenUAPI(path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- us.serve(dev) }()

	if fi, err := os.Stat(path); err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket file: %v, %v; want a 0600 socket", fi, err)
	}
	if _, err := listenUAPI(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second listen = %v, want in use", err)
	}

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("get=1\n\n")); err != nil {
		t.Fatal(err)
	}
	var reply strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() && sc.Text() != "" {
		reply.WriteString(sc.Text() + "\n")
	}
	peers, err := parsePeers(reply.String())
	if err != nil || len(peers) != 1 || peers[0].PublicKey != s.PeerPublicKey {
		t.Fatalf("parsePeers(socket reply) = %v, %v; want the one peer", peers, err)
	}

	idle, err := net.Dial("unix", path) // connected, silent: close must not wait for it
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	time.Sleep(20 * time.Millisecond) // let serve accept it

	us.close()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after close")
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file still there after close: %v", err)
	}
}

// TestUAPISocketReplacesStale takes over a socket file left by a dead process.
func TestUAPISocketReplacesStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wg0.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	us, err := listenUAPI(path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	us.close()
}
