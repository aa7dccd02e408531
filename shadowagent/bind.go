package shadowagent

import (
	"encoding/binary"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

var _ conn.Bind = freshInitiations{}

// freshInitiations is the tunnel's ServerBind, except that while no session is up it drops
// WireGuard handshake initiations instead of handing them to the tunnel's backlog, which would
// replay them into the next session.
//
// A replayed initiation is stale by the time it arrives: the offloaded pod sends its own
// initiation as the session opens, the two cross, each side answers the other and then drops
// the answer to its own, and nothing flows until wireguard-go retries 5 s later (seen in the
// namespace test: 5 s to 15 s to the first TCP exchange, against 20 ms without). The backlog
// stays useful for data packets across a reconnect, so it is kept for them.
type freshInitiations struct {
	*tunnel.ServerBind
	srv *tunnel.Server
}

// Send passes bufs on, minus the handshake initiations when no session is up. bufs itself is
// not modified: the filtered batch is a new slice.
func (b freshInitiations) Send(bufs [][]byte, ep conn.Endpoint) error {
	if b.srv.Stats().Active != 0 {
		return b.ServerBind.Send(bufs, ep)
	}
	kept := make([][]byte, 0, len(bufs))
	for _, p := range bufs {
		if !isInitiation(p) {
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return b.ServerBind.Send(kept, ep)
}

// isInitiation reports whether p is a WireGuard handshake initiation: message type 1 (a
// little-endian uint32) and its fixed size.
func isInitiation(p []byte) bool {
	return len(p) == device.MessageInitiationSize && binary.LittleEndian.Uint32(p) == device.MessageInitiationType
}
