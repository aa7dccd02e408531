package shadowagent

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// uapiConfig is the WireGuard UAPI "set" text that gives the device its identity and its one
// peer, the offloaded pod. It is a pure function of a defaulted Config and contains the private
// key: hand it to IpcSet, never to a logger.
//
// The endpoint is only a label, the tunnel's Destination: the tunnel's ServerBind sends to the
// live session whatever the endpoint, and keeps datagrams sent while no session is up for the
// next one (minus handshake initiations, see freshInitiations). With it, the keepalive and
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

// peerState is what the agent reads back about its peer from the UAPI "get" text.
type peerState struct {
	PublicKey        meshspec.Key
	Endpoint         string
	RxBytes, TxBytes uint64
	// LastHandshake is zero until a handshake completed.
	LastHandshake time.Time
}

// parsePeers reads the peers out of a UAPI "get" reply (wireguard-go's IpcGet, or the socket's
// reply). Lines before the first public_key describe the device, the private key among them:
// they are skipped and never kept or quoted. Unknown keys are ignored, as the protocol asks;
// the text ends at an empty line or at its end.
func parsePeers(text string) ([]peerState, error) {
	var (
		peers []peerState
		hs    [][2]int64 // per peer: last handshake sec, nsec
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			break
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("parse uapi line %d: no '='", n)
		}
		if key == "errno" {
			if value != "0" {
				return nil, fmt.Errorf("uapi reply: errno=%s", value)
			}
			continue
		}
		if key == "public_key" {
			var p peerState
			if len(value) != 2*meshspec.KeyLen {
				return nil, fmt.Errorf("parse uapi line %d: public_key is not %d hex digits", n, 2*meshspec.KeyLen)
			}
			if _, err := hex.Decode(p.PublicKey[:], []byte(value)); err != nil {
				return nil, fmt.Errorf("parse uapi line %d: public_key is not hex", n)
			}
			peers = append(peers, p)
			hs = append(hs, [2]int64{})
			continue
		}
		if len(peers) == 0 {
			continue // a device line, maybe the private key: not even quoted in errors
		}
		p, h := &peers[len(peers)-1], &hs[len(hs)-1]
		var err error
		switch key {
		case "endpoint":
			p.Endpoint = value
		case "rx_bytes":
			p.RxBytes, err = strconv.ParseUint(value, 10, 64)
		case "tx_bytes":
			p.TxBytes, err = strconv.ParseUint(value, 10, 64)
		case "last_handshake_time_sec":
			h[0], err = strconv.ParseInt(value, 10, 64)
		case "last_handshake_time_nsec":
			h[1], err = strconv.ParseInt(value, 10, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("parse uapi line %d: %s is not a number", n, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse uapi: %w", err)
	}
	for i, h := range hs {
		if h[0] < 0 || h[1] < 0 || h[1] >= int64(time.Second) {
			return nil, fmt.Errorf("parse uapi: peer %d: last handshake %d.%09d out of range", i, h[0], h[1])
		}
		if h != [2]int64{} {
			peers[i].LastHandshake = time.Unix(h[0], h[1])
		}
	}
	return peers, nil
}
