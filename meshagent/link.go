package meshagent

import (
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// planLink is the kernel state the agent wants for its interface, applied by
// wgdevice.Link.Apply. Its routes are the peer's address, then the spec's routes (the
// AllowedIPs, so that whatever the peer may send us, we route to it too).
func planLink(s meshspec.Spec) wgdevice.LinkPlan {
	return wgdevice.LinkPlan{Name: s.Interface, MTU: s.MTU, Address: s.Address, Routes: s.AllowedIPs()}
}
