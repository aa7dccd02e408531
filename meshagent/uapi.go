package meshagent

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
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

// peerStatus is what the agent reads back about a peer from the UAPI "get" text.
type peerStatus struct {
	PublicKey        meshspec.Key
	RxBytes, TxBytes uint64
	// LastHandshake is zero until a handshake completed.
	LastHandshake time.Time
}

// parsePeers reads the peers out of a UAPI "get" reply (wireguard-go's IpcGet, or the socket's
// reply without its errno line). Device lines, the private key among them, are skipped without
// being kept; unknown keys are ignored, as the protocol asks. The text ends at an empty line or
// at its end.
func parsePeers(text string) ([]peerStatus, error) {
	var (
		peers []peerStatus
		sec   = map[int][2]int64{} // peer index -> last handshake sec, nsec
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	for line := 1; sc.Scan(); line++ {
		if sc.Text() == "" {
			break
		}
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			return nil, fmt.Errorf("parse uapi line %d: no '='", line)
		}
		if key == "errno" {
			if value != "0" {
				return nil, fmt.Errorf("uapi reply: errno=%s", value)
			}
			continue
		}
		if key == "public_key" {
			var p peerStatus
			if len(value) != 2*meshspec.KeyLen {
				return nil, fmt.Errorf("parse uapi line %d: public_key is not %d hex digits", line, 2*meshspec.KeyLen)
			}
			if _, err := hex.Decode(p.PublicKey[:], []byte(value)); err != nil {
				return nil, fmt.Errorf("parse uapi line %d: public_key: %w", line, err)
			}
			peers = append(peers, p)
			continue
		}
		if len(peers) == 0 {
			continue // a device line
		}
		i := len(peers) - 1
		var err error
		switch key {
		case "rx_bytes":
			peers[i].RxBytes, err = strconv.ParseUint(value, 10, 64)
		case "tx_bytes":
			peers[i].TxBytes, err = strconv.ParseUint(value, 10, 64)
		case "last_handshake_time_sec", "last_handshake_time_nsec":
			var v int64
			v, err = strconv.ParseInt(value, 10, 64)
			t := sec[i]
			if key == "last_handshake_time_sec" {
				t[0] = v
			} else {
				t[1] = v
			}
			sec[i] = t
		}
		if err != nil {
			return nil, fmt.Errorf("parse uapi line %d: %s: %w", line, key, errors.Unwrap(err))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse uapi: %w", err)
	}
	for i, t := range sec {
		if t[0] < 0 || t[1] < 0 || t[1] >= int64(time.Second) {
			return nil, fmt.Errorf("parse uapi: peer %d: last handshake %d.%09d out of range", i, t[0], t[1])
		}
		if t != [2]int64{} {
			peers[i].LastHandshake = time.Unix(t[0], t[1])
		}
	}
	return peers, nil
}
