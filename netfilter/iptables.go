package netfilter

import "strings"

// IPTables is the part of *github.com/coreos/go-iptables/iptables.IPTables the package uses.
// Table and chain names are iptables names ("nat", "PREROUTING"); a rulespec is the argument list
// after the chain, e.g. {"-o", "wg0", "-j", "MASQUERADE"}. Implementations act on the network
// namespace of the calling thread and need not be safe for concurrent use: Shadow serializes
// its calls.
type IPTables interface {
	// Exists reports whether the rule is in the chain. Matching is by meaning (iptables -C), not
	// by text.
	Exists(table, chain string, rulespec ...string) (bool, error)
	// Insert puts the rule at position pos (1 = first) of the chain.
	Insert(table, chain string, pos int, rulespec ...string) error
	// Append adds the rule at the end of the chain.
	Append(table, chain string, rulespec ...string) error
	// Delete removes the first rule matching rulespec; a missing rule is an error.
	Delete(table, chain string, rulespec ...string) error
	// List returns the chain as iptables -S prints it: "-N chain" (or "-P chain policy"),
	// then one "-A chain …" line per rule. A missing chain is an error.
	List(table, chain string) ([]string, error)
	// ChainExists reports whether the chain exists.
	ChainExists(table, chain string) (bool, error)
	// ClearChain creates the chain, or empties it if it exists.
	ClearChain(table, chain string) error
	// DeleteChain deletes an empty, unreferenced chain; a missing chain is an error.
	DeleteChain(table, chain string) error
}

// Saver is an IPTables that also prints every table at once, as iptables-save does: "*table"
// headers, ":chain policy [packets:bytes]" declarations and "-A chain …" lines as List prints them.
// Shadow uses it for a quiet re-assert: one process a turn instead of one per chain and jump.
type Saver interface {
	Save() (string, error)
}

// listedComment returns the --comment value of one line of iptables -S output, or "". It
// undoes iptables' quoting: a value with characters other than [A-Za-z0-9_-] is printed in
// double quotes, with `"`, `\` and `'` escaped by a backslash.
func listedComment(line string) string {
	const opt = " --comment "
	i := strings.Index(line, opt)
	if i < 0 {
		return ""
	}
	s := line[i+len(opt):]
	if !strings.HasPrefix(s, `"`) {
		if j := strings.IndexByte(s, ' '); j >= 0 {
			return s[:j]
		}
		return s
	}
	var b strings.Builder
	for k := 1; k < len(s); k++ {
		switch s[k] {
		case '\\':
			if k+1 < len(s) {
				k++
				b.WriteByte(s[k])
			}
		case '"':
			return b.String()
		default:
			b.WriteByte(s[k])
		}
	}
	return b.String() // unterminated: take what there is
}
