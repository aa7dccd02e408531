package wgdevice

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
)

func TestEnsureCharDev(t *testing.T) {
	netnstest.Require(t)
	path := filepath.Join(t.TempDir(), "net", "tun")
	for range 2 { // the second call finds it
		if err := ensureCharDev(path, 10, 200); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 10 || unix.Minor(st.Rdev) != 200 || st.Mode&0o777 != 0o666 {
		t.Errorf("node mode %o rdev %d:%d, want a 0666 character device 10:200", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
}

// nsNetlink opens a netlink socket in ns, which it keeps whatever thread uses it.
func nsNetlink(t *testing.T, ns *netnstest.NS) *netlink.Handle {
	t.Helper()
	var h *netlink.Handle
	if err := ns.Do(func() (err error) {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// TestOpenLink opens a Link inside a fresh namespace.
func TestOpenLink(t *testing.T) {
	netnstest.Require(t, "ip")
	if _, err := os.Stat(TUNPath); err != nil {
		t.Skipf("skipping: needs %s: %v", TUNPath, err)
	}
	ns := netnstest.New(t)
	if err := ns.Do(func() error {
		l, err := OpenLink()
		if err != nil {
			return err
		}
		l.Close()
		return nil
	}); err != nil {
		t.Fatalf("OpenLink: %v", err)
	}
}

// TestLinkApplyRemove applies a plan to a veth in a fresh namespace: applying twice is fine,
// a route that another link owns is refused, remove deletes exactly what apply added while the
// link stays, and removing twice is fine.
func TestLinkApplyRemove(t *testing.T) {
	netnstest.Require(t, "ip")
	ns := netnstest.New(t)
	nl := nsNetlink(t, ns)
	if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "mesh0"}, PeerName: "other0"}); err != nil {
		t.Fatal(err)
	}
	other, err := nl.LinkByName("other0")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(other); err != nil {
		t.Fatal(err)
	}
	plan := LinkPlan{Name: "mesh0", MTU: 1300, Address: netip.MustParsePrefix("10.7.0.2/32"), Routes: []netip.Prefix{
		netip.MustParsePrefix("10.7.0.1/32"), netip.MustParsePrefix("10.96.0.0/16"), netip.MustParsePrefix("fd00:96::/64")}}

	l := &Link{h: nl}
	if err := l.CheckUp(); err == nil {
		t.Error("CheckUp before Apply succeeded")
	}
	if err := l.Apply(plan); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	l2 := &Link{h: nl}
	if err := l2.Apply(plan); err != nil {
		t.Fatalf("Apply again: %v", err)
	}
	link, _ := nl.LinkByName("mesh0")
	if link.Attrs().MTU != 1300 || link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("link mtu %d flags %v, want 1300 and up", link.Attrs().MTU, link.Attrs().Flags)
	}
	if err := l.CheckUp(); err != nil {
		t.Errorf("CheckUp: %v", err)
	}
	checkState(t, nl, "mesh0", true)

	// A route to the same destination through another link is not ours to take.
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: other.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("10.244.0.0/16"))}); err != nil {
		t.Fatal(err)
	}
	l3 := &Link{h: nl}
	err = l3.Apply(LinkPlan{Name: "mesh0", MTU: 1300, Address: plan.Address, Routes: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
	if err == nil || !strings.Contains(err.Error(), "already exists via other0") {
		t.Errorf("Apply over another link's route = %v, want a conflict", err)
	}
	for range 2 {
		if err := l.Remove(); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	if err := l2.Remove(); err != nil {
		t.Fatalf("Remove by a second owner: %v", err)
	}
	checkState(t, nl, "mesh0", false)
	if _, err := nl.LinkByName("mesh0"); err != nil {
		t.Errorf("Remove deleted the link: %v", err)
	}
	if err := l.CheckUp(); err != nil {
		t.Errorf("CheckUp after Remove (the link stays up): %v", err)
	}
	if err := nl.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	if err := l.CheckUp(); err == nil || !strings.Contains(err.Error(), "down") {
		t.Errorf("CheckUp of a down link = %v, want down", err)
	}
}

// checkState asserts that the plan's address and routes are (or are not) on the link.
func checkState(t *testing.T, nl *netlink.Handle, name string, present bool) {
	t.Helper()
	link, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	hasAddr := false
	for _, a := range addrs {
		hasAddr = hasAddr || a.IP.Equal(net.ParseIP("10.7.0.2"))
	}
	if hasAddr != present {
		t.Errorf("address 10.7.0.2 on %s: %v, want %v", name, hasAddr, present)
	}
	routes, err := nl.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range routes {
		if r.Dst != nil {
			got[r.Dst.String()] = true
		}
	}
	for _, dst := range []string{"10.7.0.1/32", "10.96.0.0/16", "fd00:96::/64"} {
		if got[dst] != present {
			t.Errorf("route %s on %s: %v, want %v (routes %v)", dst, name, got[dst], present, got)
		}
	}
}

// TestEngineKernelMode starts an engine on a real TUN device in a fresh namespace: the interface
// comes up with its address and routes, health checks the link, and Close removes the device
// and its routes.
func TestEngineKernelMode(t *testing.T) {
	netnstest.Require(t, "ip")
	if _, err := os.Stat(TUNPath); err != nil {
		t.Skipf("skipping: needs %s: %v", TUNPath, err)
	}
	ns := netnstest.New(t)
	priv, pub := keyPair(t)
	plan := LinkPlan{Name: "wgk0", MTU: 1280, Address: netip.MustParsePrefix("10.7.0.2/32"),
		Routes: []netip.Prefix{netip.MustParsePrefix("10.7.0.1/32"), netip.MustParsePrefix("10.96.0.0/16")}}
	var e *Engine
	if err := ns.Do(func() (err error) {
		e, err = Start(Config{Identity: Identity{PrivateKey: priv, PeerPublicKey: pub, Endpoint: netip.MustParseAddrPort("127.0.0.1:51820"),
			AllowedIPs: plan.Routes}, Bind: udpBind{conn.NewDefaultBind()}, Link: plan})
		return err
	}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := e.CheckUp(); err != nil {
		t.Errorf("CheckUp: %v", err)
	}
	if out := ns.MustExec("ip", "-o", "addr", "show", "dev", "wgk0"); !strings.Contains(out, "inet 10.7.0.2/32") {
		t.Errorf("address not applied:\n%s", out)
	}
	if out := ns.MustExec("ip", "route", "show", "10.96.0.0/16"); !strings.Contains(out, "dev wgk0") {
		t.Errorf("route not applied: %q", out)
	}
	e.Close()
	if out, err := ns.Exec("ip", "link", "show", "wgk0"); err == nil {
		t.Errorf("device left after Close:\n%s", out)
	}
	if out := ns.MustExec("ip", "route", "show", "10.96.0.0/16"); out != "" {
		t.Errorf("route left after Close: %q", out)
	}
}
