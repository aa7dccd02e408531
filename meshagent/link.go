package meshagent

import (
	"net/netip"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// linkPlan is the kernel state the agent wants for its interface: computed from the spec by
// planLink, applied by kernel.apply, undone by kernel.remove.
type linkPlan struct {
	Name    string
	MTU     int
	Address netip.Prefix
	// Routes go to the interface: the peer's address, then the spec's routes (the AllowedIPs,
	// so that whatever the peer may send us, we route to it too).
	Routes []netip.Prefix
}

func planLink(s meshspec.Spec) linkPlan {
	return linkPlan{Name: s.Interface, MTU: s.MTU, Address: s.Address, Routes: s.AllowedIPs()}
}
