package meshagent

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestEnsureCharDev(t *testing.T) {
	requireNetAdmin(t)
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

// TestKernelApplyRemove applies a plan to a veth in a fresh namespace: applying twice is fine,
// a route that another link owns is refused, remove deletes exactly what apply added while the
// link stays, and removing twice is fine.
func TestKernelApplyRemove(t *testing.T) {
	requireNetAdmin(t)
	ns := newNS(t, "krn")
	nl := ns.netlink(t)
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
	plan := linkPlan{Name: "mesh0", MTU: 1300, Address: netip.MustParsePrefix("10.7.0.2/32"), Routes: []netip.Prefix{
		netip.MustParsePrefix("10.7.0.1/32"), netip.MustParsePrefix("10.96.0.0/16"), netip.MustParsePrefix("fd00:96::/64")}}

	k := &kernel{h: nl}
	if err := k.apply(plan); err != nil {
		t.Fatalf("apply: %v", err)
	}
	k2 := &kernel{h: nl}
	if err := k2.apply(plan); err != nil {
		t.Fatalf("apply again: %v", err)
	}
	link, _ := nl.LinkByName("mesh0")
	if link.Attrs().MTU != 1300 || link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("link mtu %d flags %v, want 1300 and up", link.Attrs().MTU, link.Attrs().Flags)
	}
	if err := k.linkUp(); err != nil {
		t.Errorf("linkUp: %v", err)
	}
	checkState(t, nl, "mesh0", true)

	// A route to the same destination through another link is not ours to take.
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: other.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("10.244.0.0/16"))}); err != nil {
		t.Fatal(err)
	}
	k3 := &kernel{h: nl}
	err = k3.apply(linkPlan{Name: "mesh0", MTU: 1300, Address: plan.Address, Routes: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}})
	if err == nil || !strings.Contains(err.Error(), "already exists via other0") {
		t.Errorf("apply over another link's route = %v, want a conflict", err)
	}

	for range 2 {
		if err := k.remove(); err != nil {
			t.Fatalf("remove: %v", err)
		}
	}
	if err := k2.remove(); err != nil {
		t.Fatalf("remove by a second owner: %v", err)
	}
	checkState(t, nl, "mesh0", false)
	if _, err := nl.LinkByName("mesh0"); err != nil {
		t.Errorf("remove deleted the link: %v", err)
	}
}

// checkState asserts that the agent's address and routes are (or are not) on the link.
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
