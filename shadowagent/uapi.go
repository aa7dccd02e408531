package shadowagent

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// uapiConfig is the WireGuard UAPI "set" text that gives the device its identity and its one
// peer, the offloaded pod. It is a pure function of a defaulted Config and contains the private
// key: hand it to IpcSet, never to a logger.
//
// The endpoint is only a label, the tunnel's Destination: the tunnel's ServerBind sends to the
// live session whatever the endpoint, and keeps datagrams sent while no session is up for the
// next one (minus handshake initiations, see the tunnel's newLink). With it, the keepalive and
// handshake initiations wireguard-go sends before the offloaded pod connects go nowhere quietly
// instead of failing with "no known endpoint for peer" every few seconds. The first authenticated packet
// roams the endpoint to its session. listen_port is the stock WireGuard port, for wg(8) to
// show; the Bind opens no socket.
func uapiConfig(c Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(c.PrivateKey[:]))
	fmt.Fprintf(&b, "listen_port=%d\n", c.Destination.Port())
	b.WriteString("replace_peers=true\n")
	fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(c.PeerPublicKey[:]))
	fmt.Fprintf(&b, "endpoint=%s\n", c.Destination)
	fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(c.PersistentKeepalive/time.Second))
	b.WriteString("replace_allowed_ips=true\n")
	fmt.Fprintf(&b, "allowed_ip=%s\n", netip.PrefixFrom(c.PeerAddress, c.PeerAddress.BitLen()))
	return b.String()
}
