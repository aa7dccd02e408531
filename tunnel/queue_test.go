package tunnel

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/conn"
)

func popAll(q *queue, bufLen int) (got []string, eps []conn.Endpoint) {
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, bufLen)
	}
	sizes := make([]int, len(bufs))
	out := make([]conn.Endpoint, len(bufs))
	for {
		n := q.pop(bufs, sizes, out)
		if n == 0 {
			return got, eps
		}
		for i := range n {
			got = append(got, string(bufs[i][:sizes[i]]))
			eps = append(eps, out[i])
		}
	}
}

func TestQueueDropsOldest(t *testing.T) {
	q := newQueue(3)
	ep := newEndpoint(netip.MustParseAddrPort("192.0.2.1:1"))
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		q.push([]byte(s), ep)
	}
	got, eps := popAll(q, 16)
	if diff := cmp.Diff([]string{"c", "d", "e"}, got); diff != "" {
		t.Errorf("queued (-want +got):\n%s", diff)
	}
	if d := q.dropped.Load(); d != 2 {
		t.Errorf("dropped = %d, want 2", d)
	}
	for _, e := range eps {
		if e != conn.Endpoint(ep) {
			t.Errorf("endpoint %v, want %v", e, ep)
		}
	}
}

func TestQueueGrowsSlotsAndDropsWhatDoesNotFit(t *testing.T) {
	q := newQueue(4)
	big := make([]byte, 3000) // larger than a slot's initial size
	q.push(big, nil)
	q.push([]byte("small"), nil)
	bufs := [][]byte{make([]byte, 100), make([]byte, 100)}
	sizes := make([]int, 2)
	eps := make([]conn.Endpoint, 2)
	if n := q.pop(bufs, sizes, eps); n != 2 {
		t.Fatalf("pop = %d, want 2", n)
	}
	if diff := cmp.Diff([]int{0, 5}, sizes); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
	if d := q.dropped.Load(); d != 1 {
		t.Errorf("dropped = %d, want 1 (the datagram larger than the buffer)", d)
	}
}

// frames returns a server-side wsConn whose peer sent datagrams, masked.
func frames(datagrams ...string) *wsConn {
	var in []byte
	for _, d := range datagrams {
		in = append(in, binFrame(testKey, []byte(d))...)
	}
	return newWSConn(newMemConn(in), nil, false, DefaultMaxMessageSize, time.Second)
}

func TestReceiverBatchesWhatIsBufferedThenCloses(t *testing.T) {
	in := newInbox(4, 3)
	done, err := in.bind.open()
	if err != nil {
		t.Fatal(err)
	}
	recv := in.receiver(done)
	bufs := [][]byte{make([]byte, 64), make([]byte, 64), make([]byte, 64), make([]byte, 64)}
	sizes := make([]int, len(bufs))
	eps := make([]conn.Endpoint, len(bufs))

	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() { n, err := recv(bufs, sizes, eps); res <- result{n, err} }()
	select {
	case r := <-res:
		t.Fatalf("receive returned %+v with nothing received", r)
	case <-time.After(20 * time.Millisecond):
	}
	// Four datagrams arrive at once: the first receive takes the batch (3).
	c := frames("a", "bb", "ccc", "dddd")
	ep := newEndpoint(netip.MustParseAddrPort("192.0.2.1:1"))
	var rx atomic.Uint64
	if ok, err := c.nextDatagram(true); !ok || err != nil {
		t.Fatalf("next datagram: %v %v", ok, err)
	}
	if err := in.deliver(c, ep, &rx); err != nil {
		t.Fatal(err)
	}
	r := <-res
	var got []string
	for i := range r.n {
		got = append(got, string(bufs[i][:sizes[i]]))
		if eps[i] != conn.Endpoint(ep) {
			t.Errorf("endpoint %d = %v, want %v", i, eps[i], ep)
		}
	}
	if r.err != nil || rx.Load() != 3 {
		t.Fatalf("receive: %v, %d counted", r.err, rx.Load())
	}
	if diff := cmp.Diff([]string{"a", "bb", "ccc"}, got); diff != "" {
		t.Errorf("first batch (-want +got):\n%s", diff)
	}

	// Closed: the next datagram waits in the queue, and the receiver says closed.
	in.bind.close()
	if ok, err := c.nextDatagram(true); !ok || err != nil {
		t.Fatalf("next datagram: %v %v", ok, err)
	}
	if err := in.deliver(c, ep, &rx); err != nil {
		t.Fatal(err)
	}
	if _, err := recv(bufs, sizes, eps); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after close: err = %v, want net.ErrClosed even with datagrams queued", err)
	}
	// Reopened: the queued datagram comes first.
	done, err = in.bind.open()
	if err != nil {
		t.Fatal(err)
	}
	defer in.bind.close()
	if n, err := in.receiver(done)(bufs, sizes, eps); n != 1 || err != nil || string(bufs[0][:sizes[0]]) != "dddd" {
		t.Fatalf("after reopen: n=%d err=%v %q, want the queued datagram", n, err, bufs[0][:sizes[0]])
	}
}

func TestAttachment(t *testing.T) {
	var a attachment
	d1, err := a.open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.open(); !errors.Is(err, conn.ErrBindAlreadyOpen) {
		t.Fatalf("second open: err = %v, want ErrBindAlreadyOpen", err)
	}
	a.close()
	a.close()
	select {
	case <-d1:
	default:
		t.Fatal("close did not end the attachment")
	}
	if _, err := a.open(); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	a.close()
}

func TestRateLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRateLimiter(2, 3, func() time.Time { return now })
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	var got []bool
	for range 4 {
		got = append(got, l.allow(a))
	}
	got = append(got, l.allow(b)) // another source has its own bucket
	now = now.Add(500 * time.Millisecond)
	got = append(got, l.allow(a), l.allow(a)) // one token refilled
	if diff := cmp.Diff([]bool{true, true, true, false, true, true, false}, got); diff != "" {
		t.Errorf("allow (-want +got):\n%s", diff)
	}
}

func TestRateLimiterBoundsMemory(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newRateLimiter(1, 1, func() time.Time { return now })
	for i := range maxTrackedSources {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	extra := netip.MustParseAddr("192.0.2.9")
	if l.allow(extra) {
		t.Error("a new source was admitted while the table is full of active buckets")
	}
	now = now.Add(2 * time.Second) // every bucket refilled: the sweep frees them
	if !l.allow(extra) {
		t.Error("a new source was refused after idle buckets could be swept")
	}
	if n := len(l.buckets); n != 1 {
		t.Errorf("tracked sources = %d after the sweep, want 1", n)
	}
}
