package shadowagent

import "net/netip"

// linkPlan is the kernel state the agent wants for its WireGuard interface: computed from the
// configuration by planLink, applied by kernel.apply, undone by kernel.remove.
type linkPlan struct {
	Name    string
	MTU     int
	Address netip.Prefix
	// Routes go to the interface: the peer's address only, where forwarded flows are DNATed.
	Routes []netip.Prefix
}

func planLink(c Config) linkPlan {
	return linkPlan{
		Name:    c.Interface,
		MTU:     c.MTU,
		Address: c.Address,
		Routes:  []netip.Prefix{netip.PrefixFrom(c.PeerAddress, c.PeerAddress.BitLen())},
	}
}
