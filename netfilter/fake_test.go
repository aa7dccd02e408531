package netfilter

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// fakeIPTables is an in-memory model of the IPv4 filter and nat tables with the kernel's
// refusals that matter here: missing chains, jumps to missing chains, deleting a builtin,
// non-empty or referenced chain, deleting a missing rule. Rules match by exact rulespec, where
// iptables matches by meaning. It is safe for concurrent use.
type fakeIPTables struct {
	mu     sync.Mutex
	tables map[string]*fakeTable
	// fail, when set, is asked before every call; a non-nil error fails the call unchanged.
	fail  func(op, table, chain string) error
	saves int // Save calls, printed as the builtin chains' packet counters
}

type fakeTable struct {
	order  []string // chain names in creation order, builtins first
	chains map[string]*fakeChain
}

type fakeChain struct {
	builtin bool
	rules   [][]string
}

var (
	_ IPTables = (*fakeIPTables)(nil)
	_ Saver    = (*fakeIPTables)(nil)
)

// noSaver hides the fake's Save: an iptables without iptables-save beside it.
type noSaver struct{ IPTables }

func newFakeIPTables() *fakeIPTables {
	f := &fakeIPTables{tables: map[string]*fakeTable{}}
	for table, builtins := range map[string][]string{
		"filter": {"INPUT", "FORWARD", "OUTPUT"},
		"nat":    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	} {
		t := &fakeTable{chains: map[string]*fakeChain{}}
		for _, c := range builtins {
			t.order = append(t.order, c)
			t.chains[c] = &fakeChain{builtin: true}
		}
		f.tables[table] = t
	}
	return f
}

type fakeError struct {
	msg     string
	noChain bool // the chain named in the call does not exist
}

func (e *fakeError) Error() string { return "fake iptables: " + e.msg }

// builtinTargets are the targets that are not chains.
var builtinTargets = []string{"ACCEPT", "DROP", "RETURN", "DNAT", "SNAT", "MASQUERADE", "REJECT"}

// chainLocked returns the chain or a "no such chain" error.
func (f *fakeIPTables) chainLocked(op, table, chain string) (*fakeTable, *fakeChain, error) {
	if f.fail != nil {
		if err := f.fail(op, table, chain); err != nil {
			return nil, nil, err
		}
	}
	t, ok := f.tables[table]
	if !ok {
		return nil, nil, &fakeError{msg: "no table " + table}
	}
	c, ok := t.chains[chain]
	if !ok {
		return t, nil, &fakeError{msg: fmt.Sprintf("no chain %s/%s", table, chain), noChain: true}
	}
	return t, c, nil
}

// checkTargetLocked refuses a jump to a chain that does not exist, like the kernel.
func checkTargetLocked(t *fakeTable, spec []string) error {
	i := slices.Index(spec, "-j")
	if i < 0 || i+1 >= len(spec) {
		return &fakeError{msg: fmt.Sprintf("rule without target: %q", spec)}
	}
	target := spec[i+1]
	if slices.Contains(builtinTargets, target) {
		return nil
	}
	if c, ok := t.chains[target]; !ok || c.builtin {
		return &fakeError{msg: "no target " + target}
	}
	return nil
}

func (f *fakeIPTables) Exists(table, chain string, spec ...string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, c, err := f.chainLocked("Exists", table, chain)
	if err != nil {
		return false, err
	}
	if err := checkTargetLocked(t, spec); err != nil {
		return false, err
	}
	return slices.ContainsFunc(c.rules, func(r []string) bool { return slices.Equal(r, spec) }), nil
}

func (f *fakeIPTables) Insert(table, chain string, pos int, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, c, err := f.chainLocked("Insert", table, chain)
	if err != nil {
		return err
	}
	if err := checkTargetLocked(t, spec); err != nil {
		return err
	}
	if pos < 1 || pos > len(c.rules)+1 {
		return &fakeError{msg: fmt.Sprintf("index %d out of range", pos)}
	}
	c.rules = slices.Insert(c.rules, pos-1, slices.Clone(spec))
	return nil
}

func (f *fakeIPTables) Append(table, chain string, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, c, err := f.chainLocked("Append", table, chain)
	if err != nil {
		return err
	}
	if err := checkTargetLocked(t, spec); err != nil {
		return err
	}
	c.rules = append(c.rules, slices.Clone(spec))
	return nil
}

func (f *fakeIPTables) Delete(table, chain string, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, c, err := f.chainLocked("Delete", table, chain)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(c.rules, func(r []string) bool { return slices.Equal(r, spec) })
	if i < 0 {
		return &fakeError{msg: "bad rule (does a matching rule exist in that chain?)"}
	}
	c.rules = slices.Delete(c.rules, i, i+1)
	return nil
}

func (f *fakeIPTables) List(table, chain string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, c, err := f.chainLocked("List", table, chain)
	if err != nil {
		return nil, err
	}
	return listLines(chain, c), nil
}

func (f *fakeIPTables) ChainExists(table, chain string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, c, err := f.chainLocked("ChainExists", table, chain)
	if err != nil && !isNoChain(err) {
		return false, err
	}
	return c != nil, nil
}

func (f *fakeIPTables) ClearChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, c, err := f.chainLocked("ClearChain", table, chain)
	switch {
	case err != nil && !isNoChain(err):
		return err
	case c != nil:
		c.rules = nil
		return nil
	}
	t.order = append(t.order, chain)
	t.chains[chain] = &fakeChain{}
	return nil
}

func (f *fakeIPTables) DeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, c, err := f.chainLocked("DeleteChain", table, chain)
	switch {
	case err != nil:
		return err
	case c.builtin:
		return &fakeError{msg: "cannot delete builtin chain " + chain}
	case len(c.rules) > 0:
		return &fakeError{msg: "chain not empty: " + chain}
	}
	for _, other := range t.chains {
		for _, r := range other.rules {
			if i := slices.Index(r, "-j"); i >= 0 && i+1 < len(r) && r[i+1] == chain {
				return &fakeError{msg: "chain referenced: " + chain}
			}
		}
	}
	delete(t.chains, chain)
	t.order = slices.DeleteFunc(t.order, func(n string) bool { return n == chain })
	return nil
}

// listLines prints a chain like iptables -S, comments quoted the way iptables quotes them.
func listLines(name string, c *fakeChain) []string {
	head := "-N " + name
	if c.builtin {
		head = "-P " + name + " ACCEPT"
	}
	lines := []string{head}
	for _, r := range c.rules {
		args := slices.Clone(r)
		for i := range args {
			if i > 0 && args[i-1] == "--comment" {
				args[i] = saveString(args[i])
			}
		}
		lines = append(lines, "-A "+name+" "+strings.Join(args, " "))
	}
	return lines
}

// saveString quotes like iptables' xtables_save_string.
func saveString(s string) string {
	plain := s != "" && strings.Trim(s, "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") == ""
	if plain {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	// Bytes, as iptables-save writes them: ranging over runes would turn bytes that are not
	// UTF-8 into U+FFFD (FuzzListedComment found 0x88).
	for i := range len(s) {
		if c := s[i]; c == '"' || c == '\\' || c == '\'' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// Save prints the whole model as iptables-save does; the builtin chains' counters change at
// every call, as a busy kernel's would.
func (f *fakeIPTables) Save() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		if err := f.fail("Save", "", ""); err != nil {
			return "", err
		}
	}
	f.saves++
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(f.tables)) {
		t := f.tables[name]
		fmt.Fprintf(&b, "# Generated by fake\n*%s\n", name)
		for _, c := range t.order {
			if t.chains[c].builtin {
				fmt.Fprintf(&b, ":%s ACCEPT [%d:%d]\n", c, f.saves, 60*f.saves)
			} else {
				fmt.Fprintf(&b, ":%s - [0:0]\n", c)
			}
		}
		for _, c := range t.order {
			for _, l := range listLines(c, t.chains[c])[1:] {
				b.WriteString(l + "\n")
			}
		}
		b.WriteString("COMMIT\n")
	}
	return b.String(), nil
}

// dump prints the whole model, tables sorted and chains in order, for state comparisons.
func (f *fakeIPTables) dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(f.tables)) {
		t := f.tables[name]
		fmt.Fprintf(&b, "*%s\n", name)
		for _, c := range t.order {
			for _, l := range listLines(c, t.chains[c]) {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

// mutate runs fn on the model under its lock, as "someone else" editing the tables.
func (f *fakeIPTables) mutate(fn func(tables map[string]*fakeTable)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.tables)
}

func (f *fakeIPTables) setFail(fn func(op, table, chain string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fn
}

func isNoChain(err error) bool {
	var fe *fakeError
	return errors.As(err, &fe) && fe.noChain
}
