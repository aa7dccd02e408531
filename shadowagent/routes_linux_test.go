package shadowagent

import (
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// TestKernel applies and removes a link plan on a veth link in a fresh namespace, and finds
// the default route's interface there.
func TestKernel(t *testing.T) {
	netnstest.Require(t, "ip")
	if _, err := os.Stat(wgdevice.TUNPath); err != nil {
		t.Skipf("skipping: needs %s: %v", wgdevice.TUNPath, err)
	}
	ns := netnstest.New(t)
	ns.MustExec("ip", "link", "add", "wgt", "type", "veth", "peer", "name", "wgtp")
	ns.MustExec("ip", "link", "add", "other", "type", "veth", "peer", "name", "otherp")
	for _, l := range []string{"wgtp", "other", "otherp"} {
		ns.MustExec("ip", "link", "set", l, "up")
	}
	ns.MustExec("ip", "addr", "add", "192.168.77.2/24", "dev", "other")

	// exec runs a command in ns from inside Do, where MustExec (t.Fatal) must not be called.
	exec := func(args ...string) string {
		out, err := ns.Exec(args...)
		if err != nil {
			t.Error(err)
		}
		return out
	}
	err := ns.Do(func() error {
		k, err := openRoutes()
		if err != nil {
			return err
		}
		defer k.close()
		l, err := wgdevice.OpenLink()
		if err != nil {
			return err
		}
		defer l.Close()
		if _, err := k.defaultInterface(); err == nil || !strings.Contains(err.Error(), "no IPv4 default route") {
			t.Errorf("defaultInterface without a default route = %v", err)
		}
		// A pod without a default route (a real node's CNI bridge that is no gateway): the
		// interface holding the pod IP is the main one.
		a := &Agent{cfg: Config{PodIP: netip.MustParseAddr("192.168.77.2")}, log: slog.New(slog.DiscardHandler)}
		if name, err := a.mainInterfaceOf(k); err != nil || name != "other" {
			t.Errorf("mainInterface without a default route = %q, %v; want other (holds the pod IP)", name, err)
		}
		exec("ip", "route", "add", "default", "via", "192.168.77.1", "dev", "other", "metric", "100")
		if name, err := k.defaultInterface(); err != nil || name != "other" {
			t.Errorf("defaultInterface = %q, %v; want other", name, err)
		}
		if name, err := k.interfaceWith(netip.MustParseAddr("192.168.77.2")); err != nil || name != "other" {
			t.Errorf("interfaceWith(192.168.77.2) = %q, %v; want other", name, err)
		}
		if name, err := k.interfaceWith(netip.MustParseAddr("192.168.77.9")); err != nil || name != "" {
			t.Errorf("interfaceWith(an address no link holds) = %q, %v; want none", name, err)
		}
		addrs, err := k.linkAddrs("other")
		if err != nil || !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("192.168.77.2")}) {
			t.Errorf("linkAddrs(other) = %v, %v", addrs, err)
		}
		if _, err := k.linkAddrs("missing0"); err == nil {
			t.Error("linkAddrs of a missing link succeeded")
		}

		plan := planLink(testConfig().withDefaults())
		plan.Name = "wgt"
		for range 2 { // idempotent
			if err := l.Apply(plan); err != nil {
				return err
			}
		}
		if err := l.CheckUp(); err != nil {
			t.Errorf("CheckUp after apply: %v", err)
		}
		out := exec("ip", "-o", "addr", "show", "dev", "wgt")
		if !strings.Contains(out, "inet 10.7.0.1/32") {
			t.Errorf("address not applied:\n%s", out)
		}
		if out := exec("ip", "link", "show", "wgt"); !strings.Contains(out, "mtu 1280") {
			t.Errorf("mtu not applied:\n%s", out)
		}
		if out := exec("ip", "route", "show", "10.7.0.2/32"); !strings.Contains(out, "dev wgt scope link") {
			t.Errorf("route not applied: %q", out)
		}
		if err := l.Remove(); err != nil {
			return err
		}
		if err := l.Remove(); err != nil { // already gone
			t.Errorf("second remove: %v", err)
		}
		if out := exec("ip", "-o", "addr", "show", "dev", "wgt"); strings.Contains(out, "10.7.0.1") {
			t.Errorf("address left:\n%s", out)
		}
		if out := exec("ip", "route", "show", "10.7.0.2/32"); out != "" {
			t.Errorf("route left: %q", out)
		}

		// A route to the peer through another link is not taken over.
		exec("ip", "route", "add", "10.7.0.2/32", "dev", "other")
		if err := l.Apply(plan); err == nil || !strings.Contains(err.Error(), "already exists via other") {
			t.Errorf("apply over a foreign route = %v", err)
		}
		if err := l.Remove(); err != nil {
			t.Errorf("remove after a failed apply: %v", err)
		}
		if out := exec("ip", "route", "show", "10.7.0.2/32"); !strings.Contains(out, "dev other") {
			t.Errorf("the foreign route was touched: %q", out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
