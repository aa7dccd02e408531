package relay

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// MaxDatagram is the largest datagram relayed whole; a longer one is cut to it.
const MaxDatagram = 65535

// DefaultIdle is how long a datagram session lives without a datagram either way, as a kernel's
// conntrack keeps an answered UDP flow (net.netfilter.nf_conntrack_udp_timeout_stream is 120 s;
// 60 s is between it and the unanswered 30 s).
const DefaultIdle = 60 * time.Second

var datagramBufs = sync.Pool{New: func() any { b := make([]byte, MaxDatagram); return &b }}

// Datagrams copies datagrams between two connected datagram connections (a UDP socket dialed to
// its peer, a netstack UDP endpoint) until idle passes with no datagram either way (idle <= 0:
// DefaultIdle), or either side fails. It closes both and returns the datagrams copied each way;
// an idle end is not an error.
func Datagrams(a, b net.Conn, idle time.Duration) (aToB, bToA int64, err error) {
	if idle <= 0 {
		idle = DefaultIdle
	}
	var last atomic.Int64 // unix nanoseconds of the last datagram either way
	last.Store(time.Now().UnixNano())
	var (
		wg   sync.WaitGroup
		once sync.Once
		errA error
	)
	stop := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		aToB, errA = copyDatagrams(b, a, idle, &last)
		stop()
	}()
	bToA, err = copyDatagrams(a, b, idle, &last)
	stop()
	wg.Wait()
	if err == nil {
		err = errA
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return aToB, bToA, err
}

// copyDatagrams copies datagrams from src to dst until src fails or both directions were idle
// for idle (last is shared with the other direction).
func copyDatagrams(dst, src net.Conn, idle time.Duration, last *atomic.Int64) (int64, error) {
	bp := datagramBufs.Get().(*[]byte)
	defer datagramBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		if err := src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle)); err != nil {
			return n, err
		}
		nr, err := src.Read(buf)
		if isTimeout(err) {
			if time.Since(time.Unix(0, last.Load())) >= idle {
				return n, nil
			}
			continue // the other direction was busy
		}
		if err != nil {
			return n, err
		}
		last.Store(time.Now().UnixNano())
		if _, err := dst.Write(buf[:nr]); err != nil {
			return n, err
		}
		n++
	}
}
