package tunnel

import (
	"net"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// inbox hands the datagrams the sessions read to the Bind's ReceiveFunc
// without an intermediate copy. A session's reader waits, with the next
// frame wholly in its read buffer, until the ReceiveFunc asks; it then
// copies that datagram, and every further one already buffered (up to the
// batch size), straight into the buffers wireguard-go handed the
// ReceiveFunc. The batch thus follows the load: one datagram when traffic
// trickles, full batches under bulk transfer. While nobody asks, the reader
// reads nothing: the WebSocket's TCP window is the queue, and a device that
// cannot keep up slows its peer down instead of dropping.
//
// While the Bind is closed (wireguard-go rebinds), readers keep reading,
// so pings are answered, and keep the datagrams in a small queue for the
// next Open.
//
// Once the device's TUN is wrapped (Bind.TUN), a receive also waits while
// wireguard-go holds DefaultInFlight datagrams it has not written yet (see
// flight): the batch size no longer bounds the device's memory.
type inbox struct {
	bind   attachment
	reqs   chan *request // unbuffered: a ReceiveFunc waiting for datagrams
	queue  *queue
	batch  int
	flight *flight
}

// request is one call of a ReceiveFunc, filled by one session reader.
type request struct {
	bufs  [][]byte
	sizes []int
	eps   []conn.Endpoint
	limit int // how many datagrams to fill at most
	n     int
	done  chan struct{} // capacity 1: the reader is done with the request
}

func newInbox(queueLen, batch int) *inbox {
	return &inbox{reqs: make(chan *request), queue: newQueue(queueLen), batch: batch, flight: newFlight(DefaultInFlight)}
}

// receiver returns a conn.ReceiveFunc that blocks until at least one
// datagram arrives or done is closed. Its only error is net.ErrClosed:
// transport trouble never reaches wireguard-go, whose receive routine gives
// up after ten errors in a row. It is called from one goroutine at a time,
// as wireguard-go does.
func (in *inbox) receiver(done <-chan struct{}) conn.ReceiveFunc {
	r := &request{done: make(chan struct{}, 1)}
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			select {
			case <-done:
				return 0, net.ErrClosed
			default:
			}
			room := in.flight.room(done)
			if room == 0 {
				return 0, net.ErrClosed
			}
			limit := min(len(bufs), in.batch, room)
			if n := in.queue.pop(bufs[:limit], sizes, eps); n > 0 {
				in.flight.handed(bufs, sizes, n)
				return n, nil
			}
			r.bufs, r.sizes, r.eps, r.limit, r.n = bufs, sizes, eps, limit, 0
			select {
			case in.reqs <- r:
				// The reader copies from its buffer only: this wait is short.
				<-r.done
				r.bufs, r.sizes, r.eps = nil, nil, nil
				if r.n > 0 {
					in.flight.handed(bufs, sizes, r.n)
					return r.n, nil
				}
			case <-in.queue.notify:
			case <-done:
				return 0, net.ErrClosed
			}
		}
	}
}

// deliver hands c's pending datagram, and what else is buffered, to the
// next request, or queues it while the Bind is closed. It counts the
// datagrams in rx. It fails only when c closes before a request came.
func (in *inbox) deliver(c *wsConn, ep *endpoint, rx *atomic.Uint64) error {
	for {
		done := in.bind.current()
		if done == nil {
			p, _ := c.readDatagram() // buffered: cannot fail
			in.queue.push(p, ep)
			rx.Add(1)
			return nil
		}
		select {
		case r := <-in.reqs:
			err := in.fill(c, ep, r)
			rx.Add(uint64(r.n))
			r.done <- struct{}{}
			return err
		case <-done: // closed meanwhile: queue it
		case <-c.done:
			return net.ErrClosed
		}
	}
}

// fill copies the pending datagram into r, then every whole datagram
// already buffered, up to the batch size, never waiting for the network.
// The error is the connection's (a protocol violation, a close frame met
// on the way): the datagrams before it are delivered.
func (in *inbox) fill(c *wsConn, ep *endpoint, r *request) error {
	for {
		size := c.take(r.bufs[r.n])
		if size < 0 {
			size = 0 // wireguard-go skips it
			in.queue.dropped.Add(1)
		}
		r.sizes[r.n], r.eps[r.n] = size, ep
		r.n++
		if r.n == r.limit {
			return nil
		}
		if ok, err := c.nextDatagram(false); !ok || err != nil {
			return err
		}
	}
}
