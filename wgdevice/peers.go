package wgdevice

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// Peer is what the UAPI "get" text says about one peer.
type Peer struct {
	PublicKey meshspec.Key
	// Endpoint is the peer's current endpoint as the device's Bind formats it; empty if none.
	Endpoint         string
	RxBytes, TxBytes uint64
	// LastHandshake is zero until a handshake completed.
	LastHandshake time.Time
}

// ReadPeer returns the state of dev's only peer; a device with no peer or several is an error.
func ReadPeer(dev *device.Device) (Peer, error) {
	text, err := dev.IpcGet()
	if err != nil {
		return Peer{}, fmt.Errorf("get device state: %w", err)
	}
	peers, err := ParsePeers(text)
	if err != nil {
		return Peer{}, err
	}
	if len(peers) != 1 {
		return Peer{}, fmt.Errorf("device has %d peers, want 1", len(peers))
	}
	return peers[0], nil
}

// ParsePeers reads the peers out of a UAPI "get" reply (wireguard-go's IpcGet, or the socket's
// reply with its errno line; a non-zero errno is an error). Lines before the first public_key
// describe the device, the private key among them: they are skipped and never kept or quoted.
// Unknown keys are ignored, as the protocol asks; the text ends at an empty line or at its end.
func ParsePeers(text string) ([]Peer, error) {
	var (
		peers []Peer
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
			var p Peer
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
