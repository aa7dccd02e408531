package netfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/syncbuf"
)

// fakeShadow returns a Shadow on a fresh fake, with ip_forward in a file holding forward.
func fakeShadow(t *testing.T, f *fakeIPTables, forward string) *Shadow {
	t.Helper()
	c := validConfig()
	c.ExcludeUDP = []uint16{5353}
	c.IPTables = f
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	s.forwardPath = filepath.Join(t.TempDir(), "ip_forward")
	if err := os.WriteFile(s.forwardPath, []byte(forward+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func readForward(t *testing.T, s *Shadow) string {
	t.Helper()
	v, err := readSysctl(s.forwardPath)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// addForeign puts rules that belong to someone else in the builtin chains and a chain of theirs.
func addForeign(t *testing.T, f *fakeIPTables) {
	t.Helper()
	for _, r := range []struct {
		table, chain string
		spec         []string
	}{
		{"nat", "PREROUTING", []string{"-p", "tcp", "--dport", "53", "-j", "RETURN"}},
		{"nat", "POSTROUTING", []string{"-o", "eth1", "-j", "MASQUERADE"}},
		{"filter", "FORWARD", []string{"-i", "eth1", "-j", "DROP"}},
	} {
		if err := f.Append(r.table, r.chain, r.spec...); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.ClearChain("filter", "KUBE-FORWARD"); err != nil {
		t.Fatal(err)
	}
	if err := f.Append("filter", "KUBE-FORWARD", "-j", "ACCEPT"); err != nil {
		t.Fatal(err)
	}
}

// wantApplied is the fake's dump once the rule set is applied on top of addForeign's rules.
func wantApplied(t *testing.T, s *Shadow) string {
	t.Helper()
	f := newFakeIPTables()
	addForeign(t, f)
	for _, c := range s.Rules() {
		if err := f.ClearChain(c.Table, c.Name); err != nil {
			t.Fatal(err)
		}
		for _, r := range c.Rules {
			if err := f.Append(c.Table, c.Name, r...); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Insert(c.Table, c.From, 1, c.Jump...); err != nil {
			t.Fatal(err)
		}
	}
	return f.dump()
}

func TestEnsureAppliesAndIsIdempotent(t *testing.T) {
	f := newFakeIPTables()
	addForeign(t, f)
	before := f.dump()
	s := fakeShadow(t, f, "0")

	changes, err := s.Ensure(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	wantChanges := []string{
		"created chain filter/IKM-SHADOW-FORWARD with 2 rules",
		"created chain nat/IKM-SHADOW-POSTROUTING with 2 rules",
		"created chain nat/IKM-SHADOW-PREROUTING with 4 rules",
		"inserted jump filter/FORWARD -> IKM-SHADOW-FORWARD",
		"inserted jump nat/POSTROUTING -> IKM-SHADOW-POSTROUTING",
		"inserted jump nat/PREROUTING -> IKM-SHADOW-PREROUTING",
		"set ip_forward to 1 (was 0)",
	}
	if diff := cmp.Diff(wantChanges, changes); diff != "" {
		t.Errorf("first Ensure changes (-want +got):\n%s", diff)
	}
	applied := f.dump()
	if diff := cmp.Diff(wantApplied(t, s), applied); diff != "" {
		t.Errorf("applied state (-want +got):\n%s", diff)
	}
	if got := readForward(t, s); got != "1" {
		t.Errorf("ip_forward = %s, want 1", got)
	}

	// Again, with the same Shadow (fast path) and with a new one (full check).
	other := fakeShadow(t, f, "1")
	for name, sh := range map[string]*Shadow{"same": s, "new": other} {
		changes, err := sh.Ensure(t.Context())
		if err != nil || len(changes) != 0 {
			t.Errorf("%s Shadow: second Ensure = %q, %v; want no changes", name, changes, err)
		}
		if diff := cmp.Diff(applied, f.dump()); diff != "" {
			t.Errorf("%s Shadow: second Ensure changed the tables (-want +got):\n%s", name, diff)
		}
	}

	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("after Remove (-want +got):\n%s", diff)
	}
	if got := readForward(t, s); got != "0" {
		t.Errorf("ip_forward after Remove = %s, want 0 restored", got)
	}
	if err := s.Remove(); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
}

func TestEnsureRepairs(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, f *fakeIPTables, s *Shadow)
		want   string // a substring of the reported changes
	}{
		{"rule deleted", func(t *testing.T, f *fakeIPTables, s *Shadow) {
			f.mutate(func(tb map[string]*fakeTable) {
				c := tb["nat"].chains[ChainPrerouting]
				c.rules = slices.Delete(c.rules, 1, 2)
			})
		}, "rewrote chain nat/IKM-SHADOW-PREROUTING: found 3 rules, want 4"},
		{"foreign rule in our chain", func(t *testing.T, f *fakeIPTables, s *Shadow) {
			if err := f.Append("filter", ChainForward, "-j", "DROP"); err != nil {
				t.Fatal(err)
			}
		}, "rewrote chain filter/IKM-SHADOW-FORWARD: found 3 rules, want 2"},
		{"rules reordered", func(t *testing.T, f *fakeIPTables, s *Shadow) {
			f.mutate(func(tb map[string]*fakeTable) {
				r := tb["nat"].chains[ChainPrerouting].rules
				r[0], r[1] = r[1], r[0]
			})
		}, "rewrote chain nat/IKM-SHADOW-PREROUTING: found 4 rules, want 4"},
		{"rule changed, comment kept", func(t *testing.T, f *fakeIPTables, s *Shadow) {
			f.mutate(func(tb map[string]*fakeTable) {
				r := tb["nat"].chains[ChainPostrouting].rules
				r[0] = slices.Clone(r[0])
				r[0][len(r[0])-1] = "ACCEPT"
			})
		}, "rewrote chain nat/IKM-SHADOW-POSTROUTING"},
		{"jump deleted", func(t *testing.T, f *fakeIPTables, s *Shadow) {
			c := s.Rules()[2]
			if err := f.Delete(c.Table, c.From, c.Jump...); err != nil {
				t.Fatal(err)
			}
		}, "inserted jump nat/PREROUTING -> IKM-SHADOW-PREROUTING"},
		{"chain and jump deleted", func(t *testing.T, f *fakeIPTables, s *Shadow) {
			c := s.Rules()[0]
			for _, err := range []error{f.Delete(c.Table, c.From, c.Jump...), f.ClearChain(c.Table, c.Name), f.DeleteChain(c.Table, c.Name)} {
				if err != nil {
					t.Fatal(err)
				}
			}
		}, "created chain filter/IKM-SHADOW-FORWARD"},
		{"ip_forward reset", func(t *testing.T, f *fakeIPTables, s *Shadow) {
			if err := writeSysctl(s.forwardPath, "0"); err != nil {
				t.Fatal(err)
			}
		}, "set ip_forward to 1 (was 0)"},
	}
	for _, tt := range tests {
		for _, saver := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/saver=%v", tt.name, saver), func(t *testing.T) {
				testEnsureRepairs(t, saver, tt.break_, tt.want)
			})
		}
	}
}

// testEnsureRepairs is one case of TestEnsureRepairs: with a Saver, the turn after the break
// finds it through iptables-save's output, without one chain by chain.
func testEnsureRepairs(t *testing.T, saver bool, break_ func(t *testing.T, f *fakeIPTables, s *Shadow), want string) {
	f := newFakeIPTables()
	addForeign(t, f)
	s := fakeShadow(t, f, "0")
	if !saver {
		s.ipt = noSaver{f}
	}
	if _, err := s.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ensure(t.Context()); err != nil { // a quiet turn: with a Saver, only it
		t.Fatal(err)
	}
	applied := f.dump()
	break_(t, f, s)
	changes, err := s.Ensure(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(changes, "\n"), want) {
		t.Errorf("changes %q do not mention %q", changes, want)
	}
	if diff := cmp.Diff(applied, f.dump()); diff != "" {
		t.Errorf("not repaired (-want +got):\n%s", diff)
	}
	if got := readForward(t, s); got != "1" {
		t.Errorf("ip_forward = %s, want 1", got)
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := readForward(t, s); got != "0" {
		t.Errorf("ip_forward after Remove = %s, want 0", got)
	}
}

// TestEnsureRollsBack fails each mutating call of a first Ensure in turn and checks that the
// tables and ip_forward are as they were before.
func TestEnsureRollsBack(t *testing.T) {
	errInjected := errors.New("injected")
	mutating := []string{"Insert", "Append", "Delete", "ClearChain", "DeleteChain"}
	for n := 1; ; n++ {
		f := newFakeIPTables()
		addForeign(t, f)
		before := f.dump()
		s := fakeShadow(t, f, "0")
		calls := 0
		f.setFail(func(op, table, chain string) error {
			if slices.Contains(mutating, op) {
				calls++
				if calls == n {
					return errInjected
				}
			}
			return nil
		})
		_, err := s.Ensure(t.Context())
		f.setFail(nil)
		if err == nil {
			if n < 10 {
				t.Fatalf("Ensure succeeded with only %d mutating calls", n-1)
			}
			break
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("call %d: Ensure = %v, want the injected error", n, err)
		}
		if diff := cmp.Diff(before, f.dump()); diff != "" {
			t.Errorf("call %d failed (%v); not rolled back (-want +got):\n%s", n, err, diff)
		}
		if got := readForward(t, s); got != "0" {
			t.Errorf("call %d: ip_forward = %s after rollback, want 0", n, got)
		}
	}

	// A failed ip_forward write rolls back the chains too.
	f := newFakeIPTables()
	before := f.dump()
	s := fakeShadow(t, f, "0")
	s.forwardPath = filepath.Join(t.TempDir(), "missing")
	if _, err := s.Ensure(t.Context()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Ensure = %v, want a missing-file error", err)
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("not rolled back after ip_forward failure (-want +got):\n%s", diff)
	}
}

func TestEnsureCancelled(t *testing.T) {
	f := newFakeIPTables()
	before := f.dump()
	s := fakeShadow(t, f, "0")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Ensure(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ensure = %v, want context.Canceled", err)
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("cancelled Ensure changed the tables (-want +got):\n%s", diff)
	}
}

func TestRemove(t *testing.T) {
	t.Run("nothing there", func(t *testing.T) {
		f := newFakeIPTables()
		before := f.dump()
		s := fakeShadow(t, f, "0")
		if err := s.Remove(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, f.dump()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("ip_forward already on stays on", func(t *testing.T) {
		s := fakeShadow(t, newFakeIPTables(), "1")
		if _, err := s.Ensure(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(); err != nil {
			t.Fatal(err)
		}
		if got := readForward(t, s); got != "1" {
			t.Errorf("ip_forward = %s, want 1 untouched", got)
		}
	})
	t.Run("left over by an earlier process, duplicated jumps", func(t *testing.T) {
		f := newFakeIPTables()
		before := f.dump()
		if _, err := fakeShadow(t, f, "0").Ensure(t.Context()); err != nil {
			t.Fatal(err)
		}
		c := validConfig()
		c.ExcludeUDP = []uint16{5353}
		rs, err := Rules(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range rs {
			if err := f.Append(ch.Table, ch.From, ch.Jump...); err != nil {
				t.Fatal(err)
			}
		}
		if err := fakeShadow(t, f, "1").Remove(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, f.dump()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("chain referenced by someone else", func(t *testing.T) {
		f := newFakeIPTables()
		s := fakeShadow(t, f, "0")
		if _, err := s.Ensure(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := f.Append("filter", "INPUT", "-j", ChainForward); err != nil {
			t.Fatal(err)
		}
		err := s.Remove()
		if err == nil || !strings.Contains(err.Error(), "delete chain filter/"+ChainForward) {
			t.Fatalf("Remove = %v, want the delete chain error", err)
		}
		// The other chains are gone all the same, and ip_forward is restored.
		if ok, _ := f.ChainExists("nat", ChainPrerouting); ok {
			t.Error("nat chain left behind")
		}
		if got := readForward(t, s); got != "0" {
			t.Errorf("ip_forward = %s, want 0", got)
		}
	})
}

// TestEnsureQuietTurnSavesOnce: after a checked turn, a turn that finds the owned chains and
// jumps as they were makes one call, Save, whatever changed elsewhere (counters, foreign rules);
// without a Saver, or when Save fails, it checks chain by chain and changes nothing.
func TestEnsureQuietTurnSavesOnce(t *testing.T) {
	f := newFakeIPTables()
	addForeign(t, f)
	s := fakeShadow(t, f, "0")
	var ops []string
	f.setFail(func(op, _, _ string) error { ops = append(ops, op); return nil })
	turn := func(what string) []string {
		t.Helper()
		ops = nil
		changes, err := s.Ensure(t.Context())
		if err != nil || len(changes) > 0 {
			t.Fatalf("%s: Ensure = %q, %v; want no change", what, changes, err)
		}
		return ops
	}
	if _, err := s.Ensure(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := turn("quiet"); !slices.Equal(got, []string{"Save"}) {
		t.Errorf("a quiet turn called %v, want [Save]", got)
	}
	if err := f.Append("nat", "PREROUTING", "-p", "udp", "--dport", "67", "-j", "RETURN"); err != nil {
		t.Fatal(err)
	}
	if got := turn("a foreign rule added"); !slices.Equal(got, []string{"Save"}) {
		t.Errorf("a turn after a foreign rule called %v, want [Save]", got)
	}

	var logs syncbuf.Buffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	f.setFail(func(op, _, _ string) error {
		ops = append(ops, op)
		if op == "Save" {
			return errors.New("iptables-save: broken")
		}
		return nil
	})
	for i := range 3 {
		if got := turn("Save failing"); !slices.Contains(got, "List") || !slices.Contains(got, "Exists") {
			t.Errorf("with Save failing, turn %d called %v, want List and Exists", i+1, got)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"iptables-save failed"); n != 1 {
		t.Errorf("three turns with Save failing logged %d warnings, want 1:\n%s", n, logs.String())
	}
	f.setFail(func(op, _, _ string) error { ops = append(ops, op); return nil })
	turn("Save back") // checks chain by chain, then remembers
	if got := turn("quiet again"); !slices.Equal(got, []string{"Save"}) {
		t.Errorf("a quiet turn after Save came back called %v, want [Save]", got)
	}
	if n := strings.Count(logs.String(), "iptables-save works again"); n != 1 {
		t.Errorf("Save back logged %q %d times, want 1:\n%s", "iptables-save works again", n, logs.String())
	}

	s.ipt = noSaver{f}
	if got := turn("no Saver"); slices.Contains(got, "Save") || !slices.Contains(got, "List") {
		t.Errorf("without a Saver a turn called %v, want List and no Save", got)
	}
}
