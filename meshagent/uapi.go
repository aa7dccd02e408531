package meshagent

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// uapiConfig is the WireGuard UAPI "set" text that gives the device its identity and its one
// peer, the shadow pod. It is a pure function of the spec and contains the private key: hand it
// to IpcSet, never to a logger. The endpoint is only a label for the tunnel's Bind, which sends
// everything over the WebSocket; it is the destination the tunnel asks for, as in the stock
// mesh's wg config.
func uapiConfig(s meshspec.Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\n", hex.EncodeToString(s.PrivateKey[:]))
	b.WriteString("replace_peers=true\n")
	fmt.Fprintf(&b, "public_key=%s\n", hex.EncodeToString(s.PeerPublicKey[:]))
	fmt.Fprintf(&b, "endpoint=%s\n", s.Tunnel.Destination)
	fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(s.PersistentKeepalive/time.Second))
	b.WriteString("replace_allowed_ips=true\n")
	for _, p := range s.AllowedIPs() {
		fmt.Fprintf(&b, "allowed_ip=%s\n", p)
	}
	return b.String()
}
