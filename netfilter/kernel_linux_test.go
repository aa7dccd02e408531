package netfilter

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// The kernel tests build three namespaces:
//
//	client  c0 10.201.0.2/24 ─veth─ eth0 10.201.0.1/24  shadow  wg0 10.7.0.1/32 ─veth─ wgb 10.7.0.2/32  backend
//	"service" 10.96.0.10 on lo       default via 10.201.0.2                              default via 10.7.0.1
//
// A plain veth stands in for the WireGuard interface: the tunnel is another package's job.
var (
	shadowIP  = netip.MustParseAddr("10.201.0.1")
	peerIP    = netip.MustParseAddr("10.7.0.2")
	wgIP      = netip.MustParseAddr("10.7.0.1")
	serviceIP = netip.MustParseAddr("10.96.0.10")
)

type topology struct {
	client, shadow, backend *netnstest.NS
	ipt                     backend // the iptables flavour the shadow is programmed with
}

// backend is one iptables flavour: its binaries for the test's own commands, and the
// IPTables handed to the package.
type backend struct {
	name, iptables, save string
}

var backends = []backend{
	{"nft", "iptables-nft", "iptables-nft-save"},
	{"legacy", "iptables-legacy", "iptables-legacy-save"},
}

// forBackends runs fn as one subtest per iptables flavour whose binaries are installed.
func forBackends(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			netnstest.Require(t, b.iptables, b.save)
			fn(t, b)
		})
	}
}

// ipTables returns go-iptables bound to the flavour's binary, with its iptables-save.
func (b backend) ipTables(t *testing.T) IPTables {
	t.Helper()
	path, err := netnstest.LookPath(b.iptables)
	if err != nil {
		t.Fatal(err)
	}
	ipt, err := newExecIPTables(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ipt.(Saver); !ok {
		t.Fatalf("%s has no %s-save beside it", path, path)
	}
	return ipt
}

// defaultBackend is what Config.IPTables == nil uses: the iptables on PATH.
var defaultBackend = backend{"default", "iptables", "iptables-save"}

// requireKernel skips unless the test can create namespaces and run iptables, and checks at the
// end that the host's own namespace kept its firewall and ip_forward.
func requireKernel(t *testing.T) {
	t.Helper()
	netnstest.Require(t, "ip", "iptables", "iptables-save", "sh", "cat")
	before := hostState(t)
	t.Cleanup(func() {
		if after := hostState(t); after != before {
			t.Errorf("the host namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

func hostState(t *testing.T) string {
	t.Helper()
	fwd, err := readSysctl(ipForwardPath)
	if err != nil {
		t.Fatal(err)
	}
	state := "ip_forward=" + fwd + "\n"
	for _, b := range append([]backend{defaultBackend}, backends...) {
		path, err := netnstest.LookPath(b.save)
		if err != nil {
			continue
		}
		out, err := exec.Command(path).Output()
		if err != nil {
			t.Fatalf("%s in the host namespace: %v", b.save, err)
		}
		state += b.save + ":\n" + normalizeSave(string(out))
	}
	return state
}

func newTopology(t *testing.T, b backend) topology {
	t.Helper()
	tp := topology{client: netnstest.New(t), shadow: netnstest.New(t), backend: netnstest.New(t), ipt: b}
	netnstest.Veth(tp.client, "c0", tp.shadow, "eth0")
	netnstest.Veth(tp.shadow, "wg0", tp.backend, "wgb")
	tp.client.MustExec("ip", "addr", "add", "10.201.0.2/24", "dev", "c0")
	tp.client.MustExec("ip", "addr", "add", serviceIP.String()+"/32", "dev", "lo")
	// A new namespace takes the host's forwarding setting: the shadow starts from 0 whatever the
	// host does (a node of the real-node cluster forwards), so Ensure has something to change.
	tp.shadow.MustExec("sh", "-c", "echo 0 > "+ipForwardPath)
	tp.shadow.MustExec("ip", "addr", "add", shadowIP.String()+"/24", "dev", "eth0")
	tp.shadow.MustExec("ip", "addr", "add", wgIP.String()+"/32", "dev", "wg0")
	tp.shadow.MustExec("ip", "route", "add", peerIP.String()+"/32", "dev", "wg0")
	tp.shadow.MustExec("ip", "route", "add", "default", "via", "10.201.0.2", "dev", "eth0")
	tp.backend.MustExec("ip", "addr", "add", peerIP.String()+"/32", "dev", "wgb")
	tp.backend.MustExec("ip", "route", "add", wgIP.String()+"/32", "dev", "wgb")
	tp.backend.MustExec("ip", "route", "add", "default", "via", wgIP.String(), "dev", "wgb")
	return tp
}

// seedForeign gives the shadow namespace rules of someone else's, which must survive untouched.
func seedForeign(t *testing.T, tp topology) {
	t.Helper()
	for _, args := range [][]string{
		{"-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "53", "-j", "RETURN"},
		{"-t", "nat", "-A", "POSTROUTING", "-o", "eth9", "-j", "MASQUERADE"},
		{"-t", "filter", "-A", "FORWARD", "-i", "eth9", "-j", "DROP"},
		{"-t", "filter", "-N", "KUBE-FOO"},
		{"-t", "filter", "-A", "KUBE-FOO", "-j", "ACCEPT"},
		{"-t", "filter", "-A", "INPUT", "-j", "KUBE-FOO"},
	} {
		tp.shadow.MustExec(append([]string{tp.ipt.iptables}, args...)...)
	}
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// normalizeSave drops iptables-save's dated comments and zeroes its counters.
func normalizeSave(s string) string {
	var b strings.Builder
	for l := range strings.Lines(s) {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(counters.ReplaceAllString(l, "[0:0]"))
		}
	}
	return b.String()
}

// save returns the shadow's tables, as its iptables flavour sees them.
func save(t *testing.T, tp topology) string {
	t.Helper()
	return normalizeSave(tp.shadow.MustExec(tp.ipt.save))
}

func ipForward(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	return strings.TrimSpace(ns.MustExec("cat", ipForwardPath))
}

// kernelConfig is the shadow agent's configuration in the topology, programming it with the
// topology's iptables flavour; podIP may be invalid.
func kernelConfig(t *testing.T, tp topology, podIP netip.Addr, log *slog.Logger) Config {
	t.Helper()
	var ipt IPTables // the default backend: found by New
	if tp.ipt != defaultBackend {
		ipt = tp.ipt.ipTables(t)
	}
	return Config{
		IPTables:           ipt,
		MainInterface:      "eth0",
		WireGuardInterface: "wg0",
		PodIP:              podIP,
		Peer:               peerIP,
		ExcludeTCP:         []uint16{28080, 9090},
		ExcludeUDP:         []uint16{5354},
		Logger:             log,
	}
}

// checkApplied verifies, with iptables itself, that during is pre plus exactly the rule set:
// every line of pre kept in order, every added line ours, each owned chain holding its rules
// (iptables -C) and nothing else, each jump once and first in its builtin chain.
func checkApplied(t *testing.T, tp topology, rs RuleSet, pre, during string) {
	t.Helper()
	duringLines := strings.Split(during, "\n")
	i := 0
	for l := range strings.Lines(pre) {
		l = strings.TrimSuffix(l, "\n")
		j := slices.Index(duringLines[i:], l)
		if j < 0 {
			t.Errorf("line of the state before lost or moved: %q", l)
			continue
		}
		for _, added := range duringLines[i : i+j] {
			if !strings.Contains(added, "IKM-SHADOW-") {
				t.Errorf("added line is not ours: %q", added)
			}
		}
		i += j + 1
	}
	for _, c := range rs {
		var owned, jumps []string
		first := ""
		for _, l := range duringLines {
			if strings.HasPrefix(l, "-A "+c.Name+" ") {
				owned = append(owned, l)
			}
			if strings.HasPrefix(l, "-A "+c.From+" ") {
				if first == "" {
					first = l
				}
				if strings.HasSuffix(l, "-j "+c.Name) {
					jumps = append(jumps, l)
				}
			}
		}
		if len(owned) != len(c.Rules) {
			t.Errorf("%s has %d rules, want %d:\n%s", c.Name, len(owned), len(c.Rules), strings.Join(owned, "\n"))
		}
		for _, l := range owned {
			if !strings.Contains(l, CommentPrefix) {
				t.Errorf("untagged rule: %q", l)
			}
		}
		for _, r := range c.Rules {
			if _, err := tp.shadow.Exec(append([]string{tp.ipt.iptables, "-t", c.Table, "-C", c.Name}, r...)...); err != nil {
				t.Errorf("rule missing from %s: %v", c.Name, err)
			}
		}
		if len(jumps) != 1 || first != jumps[0] {
			t.Errorf("%s: jumps %q, first rule %q; want one jump, first", c.From, jumps, first)
		}
	}
}

// inShadow runs fn in the shadow namespace and fails the test on error.
func inShadow(t *testing.T, tp topology, fn func() error) {
	t.Helper()
	if err := tp.shadow.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// TestKernelApplyRemove proves on real iptables that Ensure adds exactly the rule set and
// nothing else, that it is idempotent for the same and for a new Shadow, that it rewrites an
// owned chain holding a foreign rule, and that Remove restores the exact state before,
// ip_forward included, and can run twice.
func TestKernelApplyRemove(t *testing.T) {
	requireKernel(t)
	forBackends(t, testKernelApplyRemove)
}

func testKernelApplyRemove(t *testing.T, b backend) {
	tp := newTopology(t, b)
	seedForeign(t, tp)
	pre := save(t, tp)
	preFwd := ipForward(t, tp.shadow)
	if strings.Contains(pre, "IKM-SHADOW") || strings.Contains(pre, CommentPrefix) {
		t.Fatalf("our chains before Ensure:\n%s", pre)
	}
	if preFwd != "0" {
		t.Fatalf("fresh namespace has ip_forward=%s, want 0", preFwd)
	}

	cfg := kernelConfig(t, tp, netip.Addr{}, nil) // no pod IP: exercises -m addrtype
	for p := uint16(1); p <= 16; p++ {            // more than one multiport match
		cfg.ExcludeTCP = append(cfg.ExcludeTCP, 10000+p)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	inShadow(t, tp, func() (err error) { changes, err = s.Ensure(t.Context()); return err })
	if len(changes) != 7 {
		t.Errorf("first Ensure reported %d changes, want 7: %q", len(changes), changes)
	}
	if s.saved == "" { // iptables-save's lines did not read as iptables -S's, which were checked
		t.Errorf("the owned lines are not remembered after a checked Ensure: each quiet turn would list chain by chain")
	}
	during := save(t, tp)
	t.Logf("iptables-save while applied:\n%s", during)
	checkApplied(t, tp, s.Rules(), pre, during)
	if got := ipForward(t, tp.shadow); got != "1" {
		t.Errorf("ip_forward = %s while applied, want 1", got)
	}

	other, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, sh := range map[string]*Shadow{"same": s, "new": other} {
		inShadow(t, tp, func() (err error) { changes, err = sh.Ensure(t.Context()); return err })
		if len(changes) != 0 {
			t.Errorf("%s Shadow: second Ensure changed %q", name, changes)
		}
		if got := save(t, tp); got != during {
			t.Errorf("%s Shadow: second Ensure changed iptables-save:\n%s", name, got)
		}
	}

	tp.shadow.MustExec(tp.ipt.iptables, "-t", "filter", "-A", ChainForward, "-j", "DROP")
	inShadow(t, tp, func() (err error) { changes, err = s.Ensure(t.Context()); return err })
	if want := "rewrote chain filter/IKM-SHADOW-FORWARD: found 3 rules, want 2"; !slices.Contains(changes, want) {
		t.Errorf("changes %q lack %q", changes, want)
	}
	if got := save(t, tp); got != during {
		t.Errorf("foreign rule not removed from our chain:\n%s", got)
	}

	for range 2 {
		inShadow(t, tp, s.Remove)
		if got := save(t, tp); got != pre {
			t.Errorf("after Remove:\n%s\nwant the state before:\n%s", got, pre)
		}
		if got := ipForward(t, tp.shadow); got != preFwd {
			t.Errorf("ip_forward = %s after Remove, want %s", got, preFwd)
		}
	}
}

// TestKernelKeepsIPForward proves that Remove leaves an ip_forward it found at 1 alone.
func TestKernelKeepsIPForward(t *testing.T) {
	requireKernel(t)
	tp := newTopology(t, defaultBackend)
	inShadow(t, tp, func() error { return writeSysctl(ipForwardPath, "1") })
	s, err := New(kernelConfig(t, tp, shadowIP, nil))
	if err != nil {
		t.Fatal(err)
	}
	var changes []string
	inShadow(t, tp, func() (err error) { changes, err = s.Ensure(t.Context()); return err })
	if slices.ContainsFunc(changes, func(c string) bool { return strings.Contains(c, "ip_forward") }) {
		t.Errorf("Ensure touched ip_forward already at 1: %q", changes)
	}
	inShadow(t, tp, s.Remove)
	if got := ipForward(t, tp.shadow); got != "1" {
		t.Errorf("ip_forward = %s after Remove, want 1 untouched", got)
	}
}

// failingIPTables fails the first call matching op and chain, and passes the rest to real
// iptables: the state it leaves behind is the kernel's.
type failingIPTables struct {
	IPTables
	op, chain string
}

var errInjected = errors.New("injected failure")

func (f *failingIPTables) Insert(table, chain string, pos int, spec ...string) error {
	if f.op == "Insert" && f.chain == chain {
		return errInjected
	}
	return f.IPTables.Insert(table, chain, pos, spec...)
}

// TestKernelRollback proves on real iptables that an Ensure failing at its last jump leaves
// the tables and ip_forward as they were.
func TestKernelRollback(t *testing.T) {
	requireKernel(t)
	tp := newTopology(t, defaultBackend)
	seedForeign(t, tp)
	pre := save(t, tp)
	ipt, err := defaultIPTables()
	if err != nil {
		t.Fatal(err)
	}
	cfg := kernelConfig(t, tp, shadowIP, nil)
	cfg.IPTables = &failingIPTables{IPTables: ipt, op: "Insert", chain: "PREROUTING"}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = tp.shadow.Do(func() error { _, err := s.Ensure(t.Context()); return err })
	if !errors.Is(err, errInjected) {
		t.Fatalf("Ensure = %v, want the injected failure", err)
	}
	if got := save(t, tp); got != pre {
		t.Errorf("after failed Ensure:\n%s\nwant the state before:\n%s", got, pre)
	}
	if got := ipForward(t, tp.shadow); got != "0" {
		t.Errorf("ip_forward = %s after failed Ensure, want 0", got)
	}
}

// runShadow starts Run in the shadow namespace and returns a stop function that cancels it and
// returns Run's error.
func runShadow(t *testing.T, tp topology, s *Shadow) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	wait := tp.shadow.Go(func() error { return s.Run(ctx) })
	stop = func() error { cancel(); return wait() }
	t.Cleanup(func() { _ = stop() })
	return stop
}

// TestKernelRunRepairs proves that Run re-asserts on real iptables: a deleted rule, a deleted
// jump, a deleted chain and a reset ip_forward come back and are logged, and that Run's exit
// restores the state before.
func TestKernelRunRepairs(t *testing.T) {
	requireKernel(t)
	forBackends(t, testKernelRunRepairs)
}

func testKernelRunRepairs(t *testing.T, b backend) {
	tp := newTopology(t, b)
	seedForeign(t, tp)
	pre := save(t, tp)
	var logs syncBuffer
	cfg := kernelConfig(t, tp, shadowIP, slog.New(slog.NewTextHandler(&logs, nil)))
	cfg.Interval = 50 * time.Millisecond
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runShadow(t, tp, s)
	polltest.True(t, "rules applied", 5*time.Second, func() bool { return strings.Contains(logs.String(), "netfilter rules applied") })
	if !strings.Contains(logs.String(), `quiet_check="one iptables-save"`) {
		t.Errorf("Run's first log does not say quiet checks are one iptables-save:\n%s", logs.String())
	}
	during := save(t, tp)
	checkApplied(t, tp, s.Rules(), pre, during)

	jump := func(c Chain) []string {
		return append([]string{tp.ipt.iptables, "-t", c.Table, "-D", c.From}, c.Jump...)
	}
	damage := []struct {
		name string
		cmds [][]string
		log  string
	}{
		{"rule deleted", [][]string{{tp.ipt.iptables, "-t", "nat", "-D", ChainPrerouting, "2"}},
			"rewrote chain nat/IKM-SHADOW-PREROUTING: found 3 rules, want 4"},
		{"jump deleted", [][]string{jump(s.Rules()[2])},
			"inserted jump nat/PREROUTING -> IKM-SHADOW-PREROUTING"},
		{"chain deleted", [][]string{jump(s.Rules()[0]), {tp.ipt.iptables, "-t", "filter", "-F", ChainForward}, {tp.ipt.iptables, "-t", "filter", "-X", ChainForward}},
			"created chain filter/IKM-SHADOW-FORWARD with 2 rules"},
		{"ip_forward reset", [][]string{{"sh", "-c", "echo 0 > " + ipForwardPath}},
			"set ip_forward to 1 (was 0)"},
	}
	for _, d := range damage {
		// Run may repair between two of a damage's commands (deleting a chain takes three, and
		// a jump it re-inserted makes the last one fail): do the whole damage again then.
		var err error
		for range 20 {
			if err = execAll(tp.shadow, d.cmds); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("damage %q: %v", d.name, err)
		}
		polltest.True(t, d.name+" repaired", 5*time.Second, func() bool {
			return strings.Contains(logs.String(), d.log) && save(t, tp) == during && ipForward(t, tp.shadow) == "1"
		})

	}

	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := save(t, tp); got != pre {
		t.Errorf("after Run:\n%s\nwant the state before:\n%s", got, pre)
	}
	if got := ipForward(t, tp.shadow); got != "0" {
		t.Errorf("ip_forward = %s after Run, want 0", got)
	}
	t.Logf("Run's log:\n%s", logs.String())
}

// execAll runs cmds in ns in order and stops at the first failure.
func execAll(ns *netnstest.NS, cmds [][]string) error {
	for _, cmd := range cmds {
		if _, err := ns.Exec(cmd...); err != nil {
			return err
		}
	}
	return nil
}
