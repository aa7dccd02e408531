package tunnel

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// backlogAge is how old a datagram held while no session was up may be
// and still be sent when one comes up. Older ones would only be noise:
// WireGuard has retransmitted by then.
const backlogAge = time.Second

// link is the sending half shared by Client and Server: the live
// connection, if any, and a small backlog for the datagrams sent while
// there is none. The backlog hides short reconnects: without it the
// handshake initiation a device sends at start, or right after a
// reconnect, is lost and WireGuard waits 5 s (REKEY_TIMEOUT) to retry.
type link struct {
	common *common
	stats  *counters
	cur    atomic.Pointer[wsConn]

	// skipInitiations keeps WireGuard handshake initiations out of the
	// backlog (the server's rule, see newLink).
	skipInitiations bool

	// flight is the outbound flight: the packets wireguard-go read from its
	// TUN and has not sent through send yet (see flight).
	flight *flight

	mu      sync.Mutex // guards the backlog
	held    [][]byte
	heldAt  []time.Time
	heldCap int
}

// newLink returns a link with a backlog of backlog datagrams. With
// skipInitiations, handshake initiations sent while no connection is up are
// dropped rather than held. The server needs it: a replayed initiation is
// stale by the time a session opens, since the client sends its own as the
// session opens; the two cross, each side answers the other and drops the
// answer to its own, and nothing flows until wireguard-go retries 5 s later.
// The client keeps its initiation: it is the fresh one.
func newLink(cm *common, st *counters, backlog int, skipInitiations bool) *link {
	return &link{common: cm, stats: st, heldCap: backlog, skipInitiations: skipInitiations, flight: newFlight(DefaultOutFlight)}
}

// isInitiation reports whether p is a WireGuard handshake initiation: message
// type 1 (a little-endian uint32) and its fixed size.
func isInitiation(p []byte) bool {
	return len(p) == device.MessageInitiationSize && binary.LittleEndian.Uint32(p) == device.MessageInitiationType
}

// send writes bufs to the live connection, or holds them for the next.
// It returns once the bytes are written, held, or dropped.
func (l *link) send(bufs [][]byte) {
	defer l.flight.release(bufs)()
	bufs = l.common.dropOversize(bufs, l.stats)
	c := l.cur.Load()
	if c == nil {
		l.hold(bufs)
		// A connection may have come up between Load and hold; its flush
		// could have missed what we just held.
		if c = l.cur.Load(); c != nil {
			l.flush(c)
		}
		return
	}
	if err := c.writeBatch(bufs); err != nil {
		l.stats.txDropped.Add(uint64(len(bufs)))
		l.common.log.Debug("tunnel write failed", "err", err)
		c.close() // the session loop notices; the owner replaces it
		return
	}
	l.stats.tx.Add(uint64(len(bufs)))
}

// hold copies bufs into the backlog, dropping the oldest when full (and
// handshake initiations with skipInitiations).
func (l *link) hold(bufs [][]byte) {
	if l.heldCap <= 0 {
		l.stats.txDropped.Add(uint64(len(bufs)))
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range bufs {
		if l.skipInitiations && isInitiation(b) {
			continue
		}
		if len(l.held) == l.heldCap {
			l.held, l.heldAt = l.held[1:], l.heldAt[1:]
			l.stats.txDropped.Add(1)
		}
		l.held = append(l.held, append([]byte(nil), b...))
		l.heldAt = append(l.heldAt, now)
	}
}

// attach makes c the live connection and sends it the fresh backlog.
func (l *link) attach(c *wsConn) {
	l.cur.Store(c)
	l.flush(c)
}

// detach forgets c if it is still the live connection.
func (l *link) detach(c *wsConn) {
	l.cur.CompareAndSwap(c, nil)
}

// active reports whether a connection is live.
func (l *link) active() bool { return l.cur.Load() != nil }

func (l *link) flush(c *wsConn) {
	l.mu.Lock()
	held, at := l.held, l.heldAt
	l.held, l.heldAt = nil, nil
	l.mu.Unlock()
	if len(held) == 0 {
		return
	}
	cutoff := time.Now().Add(-backlogAge)
	fresh := held[:0]
	for i, b := range held {
		if at[i].After(cutoff) {
			fresh = append(fresh, b)
		}
	}
	l.stats.txDropped.Add(uint64(len(held) - len(fresh)))
	for len(fresh) > 0 {
		n := min(len(fresh), 128)
		if err := c.writeBatch(fresh[:n]); err != nil {
			l.stats.txDropped.Add(uint64(len(fresh)))
			c.close()
			return
		}
		l.stats.tx.Add(uint64(n))
		fresh = fresh[n:]
	}
}
