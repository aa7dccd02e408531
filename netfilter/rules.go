package netfilter

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The chains the package owns. Each holds exactly the rules Rules computes and is entered from
// one builtin chain through one jump rule.
const (
	ChainForward     = "IKM-SHADOW-FORWARD"     // filter: let forwarded flows through
	ChainPostrouting = "IKM-SHADOW-POSTROUTING" // nat: MASQUERADE both ways
	ChainPrerouting  = "IKM-SHADOW-PREROUTING"  // nat: DNAT to the peer
)

// CommentPrefix starts the comment of every rule the package writes, so that iptables-save
// shows who owns it. Within a chain, comments are unique: they identify rules when checking
// the chain's order.
const CommentPrefix = "interlink-k8s-mesh"

// maxMultiport is how many ports one -m multiport --dports match takes.
const maxMultiport = 15

// Chain is one owned chain: its exact content and the jump rule that enters it.
type Chain struct {
	Table string     // "filter" or "nat"
	Name  string     // the owned chain, one of the Chain* constants
	From  string     // the builtin chain holding the jump rule, at position 1
	Jump  []string   // the jump rule's rulespec
	Rules [][]string // the chain's rulespecs, in order
}

// RuleSet is the whole kernel state the package owns, in apply order: forwarding is accepted
// before traffic is redirected, and Remove walks it backwards.
type RuleSet []Chain

// Rules computes the rule set for cfg. It is a pure function of cfg and fails only when cfg
// does not validate.
func Rules(cfg Config) (RuleSet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	main, wg := cfg.MainInterface, cfg.WireGuardInterface
	peer := cfg.Peer.String()

	// Inbound flows: on the main interface, addressed to the pod.
	inbound := []string{"-i", main}
	if cfg.PodIP.IsValid() {
		inbound = append(inbound, "-d", cfg.PodIP.String()+"/32")
	} else {
		inbound = append(inbound, "-m", "addrtype", "--dst-type", "LOCAL")
	}
	var pre [][]string
	for _, p := range []struct {
		proto   string
		exclude []uint16
	}{{"tcp", cfg.ExcludeTCP}, {"udp", cfg.ExcludeUDP}} {
		ports := slices.Clone(p.exclude)
		slices.Sort(ports)
		ports = slices.Compact(ports)
		for chunk := range slices.Chunk(ports, maxMultiport) {
			list := joinPorts(chunk)
			pre = append(pre, rule(inbound, []string{"-p", p.proto, "-m", "multiport", "--dports", list},
				"keep "+p.proto+" "+list+" on the shadow", "RETURN"))
		}
		pre = append(pre, rule(inbound, []string{"-p", p.proto},
			"dnat "+p.proto+" to the peer", "DNAT", "--to-destination", peer))
	}

	return RuleSet{
		{
			Table: "filter", Name: ChainForward, From: "FORWARD",
			Rules: [][]string{
				rule([]string{"-i", main, "-o", wg}, nil, "forward main to wireguard", "ACCEPT"),
				rule([]string{"-i", wg, "-o", main}, nil, "forward wireguard to main", "ACCEPT"),
			},
		},
		{
			Table: "nat", Name: ChainPostrouting, From: "POSTROUTING",
			Rules: [][]string{
				// Replies from the peer come back through the shadow, whatever the client.
				rule([]string{"-o", wg}, nil, "masquerade towards the peer", "MASQUERADE"),
				// The peer reaches local pods and Services as the pod. -i is not allowed in
				// POSTROUTING: the peer's source address stands for "came from the tunnel".
				rule([]string{"-s", peer + "/32", "-o", main}, nil, "masquerade egress of the peer", "MASQUERADE"),
			},
		},
		{
			Table: "nat", Name: ChainPrerouting, From: "PREROUTING",
			Rules: pre,
		},
	}.withJumps(), nil
}

// withJumps fills in each chain's jump rule.
func (rs RuleSet) withJumps() RuleSet {
	for i := range rs {
		rs[i].Jump = rule(nil, nil, "jump to "+rs[i].Name, rs[i].Name)
	}
	return rs
}

// rule assembles a rulespec in a fixed order: addresses and interfaces, protocol matches,
// the owner comment, then the target and its options.
func rule(where, match []string, comment, target string, targetOpts ...string) []string {
	r := slices.Concat(where, match, []string{"-m", "comment", "--comment", CommentPrefix + ": " + comment, "-j", target})
	return append(r, targetOpts...)
}

func joinPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// specComment returns the value of the --comment option in a rulespec, or "".
func specComment(spec []string) string {
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] == "--comment" {
			return spec[i+1]
		}
	}
	return ""
}

// String renders the rule set as the iptables commands that create it, one per line, in apply
// order; arguments with spaces are quoted. It is what the golden files hold.
func (rs RuleSet) String() string {
	var b strings.Builder
	for _, c := range rs {
		fmt.Fprintf(&b, "-t %s -N %s\n", c.Table, c.Name)
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "-t %s -A %s %s\n", c.Table, c.Name, quoteArgs(r))
		}
		fmt.Fprintf(&b, "-t %s -I %s 1 %s\n", c.Table, c.From, quoteArgs(c.Jump))
	}
	return b.String()
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if a == "" || strings.ContainsAny(a, " \t\"\\'") {
			q[i] = strconv.Quote(a)
		}
	}
	return strings.Join(q, " ")
}
