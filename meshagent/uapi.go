package meshagent

import (
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// identity is the device's WireGuard identity and its one peer, the shadow pod: a pure function
// of the spec, holding the private key. The endpoint is only a label for the tunnel's Bind,
// which sends everything over the WebSocket; it is the destination the tunnel asks for, as in
// the stock mesh's wg config.
func identity(s meshspec.Spec) wgdevice.Identity {
	return wgdevice.Identity{
		PrivateKey:    s.PrivateKey,
		PeerPublicKey: s.PeerPublicKey,
		Endpoint:      s.Tunnel.Destination,
		Keepalive:     s.PersistentKeepalive,
		AllowedIPs:    s.AllowedIPs(),
	}
}
