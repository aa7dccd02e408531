package vkmesh

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// wgConfig is what a wg(8) or wg-quick(8) configuration says about the mesh: the VK writes one
// into its mesh script (heredoc EOFWG) and another into interlink.eu/wireguard-client-snippet.
type wgConfig struct {
	privateKey meshspec.Key
	addresses  []netip.Prefix
	dns        []netip.Addr
	mtu        int
	peers      []wgPeer
}

type wgPeer struct {
	publicKey  meshspec.Key
	allowedIPs []netip.Prefix
	endpoint   string
	keepalive  time.Duration
}

// isWGConfig reports whether text holds an [Interface] or [Peer] section header.
func isWGConfig(text string) bool {
	for line := range strings.Lines(text) {
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "[interface]", "[peer]":
			return true
		}
	}
	return false
}

// parseWGConfig reads a WireGuard configuration. Keys are case-insensitive; unknown keys and
// sections are ignored (ListenPort, Table, PostUp…); a key given twice with different values,
// and a PresharedKey, which the mesh cannot carry, are errors. Errors name the mesh field
// (mesh.json names) and never quote a key.
func parseWGConfig(text string) (wgConfig, error) {
	var (
		c       wgConfig
		section string
		peer    *wgPeer
	)
	for line := range strings.Lines(text) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.ToLower(strings.TrimSpace(line[1 : len(line)-1]))
			if section == "peer" {
				c.peers = append(c.peers, wgPeer{})
				peer = &c.peers[len(c.peers)-1]
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue // not a key = value line: the heredoc is over or this is not a config
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		var err error
		switch section + "." + k {
		case "interface.privatekey":
			err = setKey(&c.privateKey, v, "privateKey", "[Interface] PrivateKey")
		case "interface.address":
			var ps []netip.Prefix
			ps, err = parsePrefixList(v, "address", "[Interface] Address")
			c.addresses = appendNew(c.addresses, ps...)
		case "interface.dns":
			// wg-quick takes search domains in DNS too: those are not nameservers.
			for _, f := range splitList(v) {
				if a, perr := netip.ParseAddr(f); perr == nil {
					c.dns = appendNew(c.dns, a)
				}
			}
		case "interface.mtu":
			var n int
			if n, err = strconv.Atoi(v); err != nil {
				err = meshFieldErr("mtu", "[Interface] MTU %q is not a number", v)
			} else if c.mtu != 0 && c.mtu != n {
				err = meshFieldErr("mtu", "[Interface] MTU is given twice, as %d and %d", c.mtu, n)
			}
			c.mtu = n
		case "peer.publickey":
			err = setKey(&peer.publicKey, v, "peerPublicKey", "[Peer] PublicKey")
		case "peer.allowedips":
			var ps []netip.Prefix
			ps, err = parsePrefixList(v, "routes", "[Peer] AllowedIPs")
			peer.allowedIPs = appendNew(peer.allowedIPs, ps...)
		case "peer.endpoint":
			peer.endpoint = v
		case "peer.persistentkeepalive":
			if strings.EqualFold(v, "off") {
				continue
			}
			n, perr := strconv.ParseUint(v, 10, 16)
			if perr != nil || n == 0 {
				err = meshFieldErr("persistentKeepalive", "[Peer] PersistentKeepalive %q is not a number of seconds from 1 to 65535", v)
				break
			}
			peer.keepalive = time.Duration(n) * time.Second
		case "peer.presharedkey":
			err = meshFieldErr("presharedKey", "the WireGuard config sets a [Peer] PresharedKey, which the mesh spec cannot carry: the tunnel would never come up")
		}
		if err != nil {
			return c, err
		}
	}
	if len(c.peers) > 1 {
		return c, meshFieldErr("peerPublicKey", "the WireGuard config has %d [Peer] sections; the mesh has one peer, the shadow pod", len(c.peers))
	}
	return c, nil
}

// peer returns the config's only peer (the zero peer if there is none).
func (c wgConfig) peer() wgPeer {
	if len(c.peers) == 0 {
		return wgPeer{}
	}
	return c.peers[0]
}

func setKey(dst *meshspec.Key, v, field, what string) error {
	k, err := meshspec.ParseKey(v)
	if err != nil {
		return meshFieldErr(field, "%s is not a WireGuard key (base64 of 32 bytes)", what)
	}
	if !dst.IsZero() && *dst != k {
		return meshFieldErr(field, "%s is given twice with different keys", what)
	}
	*dst = k
	return nil
}

// parsePrefixList reads "10.7.0.1/32, 10.0.0.0/8"; a bare address is a host prefix.
func parsePrefixList(v, field, what string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range splitList(v) {
		p, err := parsePrefixOrAddr(f)
		if err != nil {
			return nil, meshFieldErr(field, "%s entry %q is not an address or CIDR", what, f)
		}
		out = append(out, p)
	}
	return out, nil
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// appendNew appends the values of vs not yet in s, keeping the first occurrence's order.
func appendNew[T comparable](s []T, vs ...T) []T {
	for _, v := range vs {
		found := false
		for _, have := range s {
			if have == v {
				found = true
				break
			}
		}
		if !found {
			s = append(s, v)
		}
	}
	return s
}

// meshFieldErr is a refused mesh input; field is the mesh.json field at fault.
func meshFieldErr(field, format string, args ...any) *InputError {
	return &InputError{Field: "mesh." + field, Reason: fmt.Sprintf(format, args...)}
}

// splitList splits a wg-quick list ("a, b,c") into its trimmed, non-empty items.
func splitList(v string) []string {
	items := strings.Split(v, ",")
	out := items[:0]
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
