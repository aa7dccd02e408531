package wgdevice

import "net/netip"

// TUNPath is the TUN clone device, which OpenLink creates when a container image lacks it.
const TUNPath = "/dev/net/tun"

// LinkPlan is the kernel state wanted for the device's interface: computed by the agent from
// its configuration, applied by Link.Apply, undone by Link.Remove.
type LinkPlan struct {
	// Name is the interface, created by the TUN device; Apply does not create it.
	Name    string
	MTU     int
	Address netip.Prefix
	// Routes go to the interface. An IPv6 route is added with global scope, an IPv4 one with
	// link scope.
	Routes []netip.Prefix
}
