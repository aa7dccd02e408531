package tunnel

import (
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// slotSize is the initial capacity of a queue slot: a full-MTU WireGuard
// datagram fits, bigger ones grow their slot once.
const slotSize = 2048

// queue is a bounded FIFO of the datagrams received while the Bind is
// closed (see inbox), dropping the OLDEST when full, so the freshest
// packets survive for the next Open. Slots are reused.
type queue struct {
	mu    sync.Mutex // guards the fields below
	slots []qslot
	head  int
	n     int

	notify  chan struct{} // capacity 1: "something was pushed"
	dropped atomic.Uint64 // overflowed or did not fit the reader's buffer
}

type qslot struct {
	buf []byte
	ep  *endpoint
}

func newQueue(capacity int) *queue {
	return &queue{slots: make([]qslot, capacity), notify: make(chan struct{}, 1)}
}

// push copies p into the queue, evicting the oldest datagram when full.
func (q *queue) push(p []byte, ep *endpoint) {
	q.mu.Lock()
	if q.n == len(q.slots) {
		q.slots[q.head].ep = nil
		q.head = (q.head + 1) % len(q.slots)
		q.n--
		q.dropped.Add(1)
	}
	s := &q.slots[(q.head+q.n)%len(q.slots)]
	if cap(s.buf) < len(p) {
		s.buf = make([]byte, 0, max(len(p), slotSize))
	}
	s.buf = append(s.buf[:0], p...)
	s.ep = ep
	q.n++
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// pop moves up to len(bufs) datagrams into bufs and returns how many
// elements of sizes and eps it filled. A datagram larger than its buffer is
// dropped (sizes holds 0 for it, which callers ignore).
func (q *queue) pop(bufs [][]byte, sizes []int, eps []conn.Endpoint) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := min(q.n, len(bufs))
	for i := range k {
		s := &q.slots[q.head]
		if len(s.buf) <= len(bufs[i]) {
			sizes[i] = copy(bufs[i], s.buf)
		} else {
			sizes[i] = 0
			q.dropped.Add(1)
		}
		eps[i] = s.ep
		s.ep = nil
		q.head = (q.head + 1) % len(q.slots)
	}
	q.n -= k
	return k
}

// attachment is the open/closed state of the Bind in front of a
// transport. The transport outlives it: wireguard-go closes and re-opens
// its Bind on every rebind.
type attachment struct {
	mu   sync.Mutex
	done chan struct{} // nil while closed
}

// open returns the done channel of a new attachment.
func (a *attachment) open() (chan struct{}, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done != nil {
		return nil, conn.ErrBindAlreadyOpen
	}
	a.done = make(chan struct{})
	return a.done, nil
}

// current returns the done channel of the open attachment, nil while closed.
func (a *attachment) current() chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.done
}

// close ends the current attachment; closing twice is harmless.
func (a *attachment) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done != nil {
		close(a.done)
		a.done = nil
	}
}
