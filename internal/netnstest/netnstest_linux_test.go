package netnstest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// TestNamespaceLifecycle checks that New's namespace is fresh, that Do enters it and leaves
// the test's own namespace alone, and that the namespace is gone after the test.
func TestNamespaceLifecycle(t *testing.T) {
	Require(t, "ip")
	root, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	var name string
	t.Run("inside", func(t *testing.T) {
		n := New(t)
		name = n.Name
		if !strings.HasPrefix(name, Prefix) {
			t.Errorf("name %q lacks prefix %q", name, Prefix)
		}
		if out := n.MustExec("ip", "-o", "link", "show"); strings.Count(out, "\n") != 1 || !strings.Contains(out, "lo:") {
			t.Errorf("fresh namespace has more than lo:\n%s", out)
		}
		err := n.Do(func() error {
			cur, err := netns.Get()
			if err != nil {
				return err
			}
			defer cur.Close()
			if !cur.Equal(n.h) || cur.Equal(root) {
				return errors.New("Do did not run in the namespace")
			}
			ifs, err := net.Interfaces()
			if err != nil {
				return err
			}
			if len(ifs) != 1 || ifs[0].Name != "lo" || ifs[0].Flags&net.FlagUp == 0 {
				return errors.New("namespace interfaces are not just lo, up")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		wantErr := errors.New("from fn")
		if err := n.Do(func() error { return wantErr }); !errors.Is(err, wantErr) {
			t.Errorf("Do = %v, want fn's error", err)
		}
	})
	if out, err := run("ip", "netns", "list"); err != nil || strings.Contains(out, name) {
		t.Errorf("namespace %s still listed after the test (err %v):\n%s", name, err, out)
	}
}

// TestVeth links two namespaces and carries a TCP exchange between them, with sockets opened
// inside Do and used outside it.
func TestVeth(t *testing.T) {
	a, b := New(t), New(t)
	Veth(a, "va", b, "vb")
	a.MustExec("ip", "addr", "add", "192.168.77.1/24", "dev", "va")
	b.MustExec("ip", "addr", "add", "192.168.77.2/24", "dev", "vb")

	var ln net.Listener
	if err := b.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "192.168.77.2:7777")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_, err = io.WriteString(c, c.RemoteAddr().String())
		served <- err
	}()

	var conn net.Conn
	if err := a.Do(func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", "192.168.77.2:7777")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if ap, err := netip.ParseAddrPort(string(got)); err != nil || ap.Addr() != netip.MustParseAddr("192.168.77.1") {
		t.Errorf("server saw %q, want 192.168.77.1:*", got)
	}
}

// TestStart runs a function in the namespace until Stop: it runs there, Exited says it runs, and
// Stop cancels it and returns its error.
func TestStart(t *testing.T) {
	ns := New(t)
	inside := make(chan string, 1)
	run := ns.Start(t, func(ctx context.Context) error {
		h, err := netns.Get()
		if err != nil {
			return err
		}
		defer h.Close()
		inside <- h.UniqueId()
		<-ctx.Done()
		return errors.New("stopped as asked")
	})
	want, err := netns.GetFromName(ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	if got := <-inside; got != want.UniqueId() {
		t.Errorf("ran in %s, want the namespace's %s", got, want.UniqueId())
	}
	if exited, _ := run.Exited(); exited {
		t.Error("Exited before Stop")
	}
	if err := run.Stop(); err == nil || err.Error() != "stopped as asked" {
		t.Errorf("Stop = %v", err)
	}
	if exited, err := run.Exited(); !exited || err == nil {
		t.Errorf("Exited after Stop = %v, %v", exited, err)
	}
}
