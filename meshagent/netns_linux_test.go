package meshagent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// requireNetAdmin skips unless the test can make network namespaces and TUN devices.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (network namespaces, TUN devices, netlink)")
	}
	if _, err := os.Stat(wgdevice.TUNPath); err != nil {
		t.Skipf("skipping: %s is missing: %v", wgdevice.TUNPath, err)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip command (iproute2) is missing")
	}
}

// testNS is a named network namespace that lives as long as the test.
type testNS struct {
	name string
	h    netns.NsHandle
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newNS makes "ikmma-<random>-<role>" with its loopback up, deleted on cleanup.
func newNS(t *testing.T, role string) *testNS {
	t.Helper()
	n := &testNS{name: "ikmma-" + randHex(4) + "-" + role}
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	h, err := netns.GetFromName(n.name)
	if err != nil {
		t.Fatal(err)
	}
	n.h = h
	t.Cleanup(func() { h.Close() })
	nl := n.netlink(t)
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("set lo up in %s: %v", n.name, err)
	}
	return n
}

// netlink returns a netlink handle bound to the namespace, closed on cleanup.
func (n *testNS) netlink(t *testing.T) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.h)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", n.name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// do runs f on an OS thread moved into the namespace, then moves the thread back. Sockets and
// devices f creates stay in the namespace; goroutines f starts do not run there.
func (n *testNS) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter %s: %w", n.name, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it exits with this goroutine instead of serving others.
			errc <- errors.Join(ferr, fmt.Errorf("restore namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// TestNetnsHelpersLeaveNothing checks the namespace helper itself: a namespace exists while the
// test runs, do runs in it, and the thread comes back.
func TestNetnsHelpersLeaveNothing(t *testing.T) {
	requireNetAdmin(t)
	var name string
	t.Run("make", func(t *testing.T) {
		n := newNS(t, "chk")
		name = n.name
		var inside netns.NsHandle
		if err := n.do(func() (err error) { inside, err = netns.Get(); return }); err != nil {
			t.Fatal(err)
		}
		defer inside.Close()
		if !inside.Equal(n.h) {
			t.Error("do did not run in the namespace")
		}
	})
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), name) {
		t.Errorf("namespace %s left behind: %s", name, out)
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
