package netfilter

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/goldentest"
)

// ruleCases are the configurations whose rule sets are pinned in testdata/rules-<name>.golden.
var ruleCases = []struct {
	name   string
	modify func(*Config)
}{
	{"stock", func(c *Config) { c.ExcludeTCP = []uint16{28080, 9090, 28080} }},
	{"no-pod-ip", func(c *Config) { c.PodIP = netip.Addr{}; c.ExcludeTCP = []uint16{28080} }},
	{"udp-excluded", func(c *Config) { c.ExcludeTCP = []uint16{28080, 8081}; c.ExcludeUDP = []uint16{5353, 53} }},
	{"many-ports", func(c *Config) {
		c.ExcludeTCP = nil
		for p := uint16(20); p >= 1; p-- {
			c.ExcludeTCP = append(c.ExcludeTCP, 8000+p)
		}
	}},
	{"nothing-excluded", func(c *Config) {
		c.MainInterface, c.WireGuardInterface = "net1", "wg7b3f1c2a9d0e"
		c.ExcludeTCP = nil
	}},
}

func TestRulesGolden(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(&c)
			rs, err := Rules(c)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "rules-"+tc.name+".golden")
			got := rs.String()
			goldentest.Check(t, path, []byte(got))
		})
	}
}

// TestRulesInvariants checks what Shadow relies on: owned names fit iptables' limit, every rule
// and jump is tagged, comments are unique within a chain (they give the order), and no port is
// DNATed before its exclusion.
func TestRulesInvariants(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(&c)
			rs, err := Rules(c)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 3 {
				t.Fatalf("got %d chains, want 3", len(rs))
			}
			for _, ch := range rs {
				if len(ch.Name) > 28 {
					t.Errorf("chain %s longer than 28 characters", ch.Name)
				}
				if !strings.HasPrefix(specComment(ch.Jump), CommentPrefix) {
					t.Errorf("jump into %s is not tagged: %q", ch.Name, ch.Jump)
				}
				seen := map[string]bool{}
				dnat := map[string]bool{}
				for _, r := range ch.Rules {
					cm := specComment(r)
					if !strings.HasPrefix(cm, CommentPrefix) || len(cm) > 255 {
						t.Errorf("%s: bad comment %q", ch.Name, cm)
					}
					if seen[cm] {
						t.Errorf("%s: duplicate comment %q", ch.Name, cm)
					}
					seen[cm] = true
					proto := r[indexOf(r, "-p")+1]
					switch r[len(r)-1] {
					case "RETURN":
						if dnat[proto] {
							t.Errorf("%s: %s exclusion after its DNAT: %q", ch.Name, proto, r)
						}
					case c.Peer.String():
						dnat[proto] = true
					}
				}
			}
		})
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestListedComment(t *testing.T) {
	tests := []struct{ line, want string }{
		{`-A X -i eth0 -m comment --comment "interlink-k8s-mesh: dnat tcp to the peer" -j DNAT --to-destination 10.7.0.2`, "interlink-k8s-mesh: dnat tcp to the peer"},
		{`-A X -m comment --comment plain_word-1 -j RETURN`, "plain_word-1"},
		{`-A X -m comment --comment plain`, "plain"},
		{`-A X -m comment --comment "say \"hi\" it\'s a \\ path" -j ACCEPT`, `say "hi" it's a \ path`},
		{`-A X -m comment --comment ""`, ""},
		// As iptables-save v1.8.9 wrote it: bytes that are not UTF-8 pass raw.
		{"-A X -m comment --comment \"a\x88b \\\"q\\\" it\\'s\" -j RETURN", "a\x88b \"q\" it's"},
		{`-A X -j ACCEPT`, ""},
		{`-A X -m comment --comment "unterminated`, "unterminated"},
		{`-A X -m comment --comment "trailing\`, "trailing"},
	}
	for _, tt := range tests {
		if got := listedComment(tt.line); got != tt.want {
			t.Errorf("listedComment(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}

// FuzzListedComment checks that listedComment undoes iptables' quoting of any comment, and
// survives any line.
func FuzzListedComment(f *testing.F) {
	for _, s := range []string{"interlink-k8s-mesh: dnat tcp to the peer", "plain", "", `a"b\c'd`, "--comment x", "é ü", "a\x88b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, comment string) {
		line := "-A X -p tcp -m comment --comment " + saveString(comment) + " -j RETURN"
		if got := listedComment(line); got != comment {
			t.Fatalf("listedComment(%q) = %q, want %q", line, got, comment)
		}
		_ = listedComment(comment)
	})
}
