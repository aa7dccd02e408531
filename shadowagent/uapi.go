package shadowagent

import (
	"net/netip"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// identity is the device's WireGuard identity and its one peer, the offloaded pod: a pure
// function of a defaulted Config, holding the private key.
//
// The endpoint is only a label, the tunnel's Destination: the tunnel's ServerBind sends to the
// live session whatever the endpoint, and keeps datagrams sent while no session is up for the
// next one (minus handshake initiations, see the tunnel's newLink). With it, the keepalive and
// handshake initiations wireguard-go sends before the offloaded pod connects go nowhere quietly
// instead of failing with "no known endpoint for peer" every few seconds. The first
// authenticated packet roams the endpoint to its session. The listen port is the stock
// WireGuard port, for wg(8) to show; the Bind opens no socket.
func identity(c Config) wgdevice.Identity {
	return wgdevice.Identity{
		PrivateKey:    c.PrivateKey,
		PeerPublicKey: c.PeerPublicKey,
		Endpoint:      c.Destination,
		ListenPort:    c.Destination.Port(),
		Keepalive:     c.PersistentKeepalive,
		AllowedIPs:    []netip.Prefix{netip.PrefixFrom(c.PeerAddress, c.PeerAddress.BitLen())},
	}
}
