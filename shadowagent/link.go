package shadowagent

import (
	"net/netip"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// planLink is the kernel state the agent wants for its WireGuard interface, applied by
// wgdevice.Link.Apply. Its one route is the peer's address, where forwarded flows are DNATed.
func planLink(c Config) wgdevice.LinkPlan {
	return wgdevice.LinkPlan{
		Name:    c.Interface,
		MTU:     c.MTU,
		Address: c.Address,
		Routes:  []netip.Prefix{netip.PrefixFrom(c.PeerAddress, c.PeerAddress.BitLen())},
	}
}
