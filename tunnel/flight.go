package tunnel

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

const (
	// DefaultInFlight is how many received data datagrams wireguard-go may
	// hold at once, between the Bind and its TUN device. It keeps a 64 KiB
	// buffer for each, so this bounds the receiving device's memory (8 MiB
	// at most) whatever the batch size; measured through the mesh, more does
	// not add throughput (docs/performance.md).
	DefaultInFlight = 128
	// DefaultOutFlight is how many packets wireguard-go may hold at once
	// between reading them from its TUN device and handing them, encrypted,
	// to the Bind: a TUN read waits while that many are held. Its queues hold
	// up to 1,024 such packets per stage, each in a 64 KiB buffer, so a
	// sender whose tunnel is slower than its TUN (a local client sending to
	// the offloaded pod through an ingress) grew to 75 MiB before (docs/performance.md).
	DefaultOutFlight = 128
	// defaultFlightStall is how long a receive waits for wireguard-go to write to
	// its TUN before it assumes the datagrams it counts were dropped on the
	// way (failed decryption, replays, disallowed sources never reach the
	// TUN) and starts counting afresh.
	defaultFlightStall = 20 * time.Millisecond
)

// flight counts the data datagrams the Bind handed wireguard-go that its
// TUN device has not written yet, once a TUN is wrapped (Bind.TUN): a
// receive waits while the count is at the limit, so the WebSocket's TCP
// window, not wireguard-go's 64 KiB buffers, holds what the device cannot
// take yet.
type flight struct {
	limit   int64
	stall   time.Duration // see defaultFlightStall
	enabled atomic.Bool
	n       atomic.Int64
	wake    chan struct{} // capacity 1: a write released datagrams
	// busy counts releases under way (the outbound flight: a Send writing to
	// a slow session): a stall is not a drop while one is.
	busy atomic.Int32
}

func newFlight(limit int) *flight {
	return &flight{limit: int64(limit), stall: defaultFlightStall, wake: make(chan struct{}, 1)}
}

// room waits until datagrams may be handed out and returns how many, at
// least one. It returns 0 when done is closed.
func (f *flight) room(done <-chan struct{}) int {
	if !f.enabled.Load() {
		return int(f.limit)
	}
	var stall *time.Timer
	for {
		if n := f.n.Load(); n < f.limit {
			if stall != nil {
				stall.Stop()
			}
			return int(f.limit - n)
		}
		if stall == nil {
			stall = time.NewTimer(f.stall)
		}
		select {
		case <-f.wake:
		case <-stall.C:
			if f.busy.Load() > 0 {
				stall.Reset(f.stall) // waiting on the session, not lost
				continue
			}
			f.n.Store(0)
			stall = nil
		case <-done:
			stall.Stop()
			return 0
		}
	}
}

// handed counts the data datagrams among the first n of bufs, as
// wireguard-go will write them to its TUN: transport messages carrying
// more than a keepalive.
func (f *flight) handed(bufs [][]byte, sizes []int, n int) {
	if !f.enabled.Load() {
		return
	}
	k := 0
	for i := range n {
		if sizes[i] > device.MessageKeepaliveSize && binary.LittleEndian.Uint32(bufs[i]) == device.MessageTransportType {
			k++
		}
	}
	f.n.Add(int64(k))
}

func (f *flight) written(k int) {
	if f.n.Add(-int64(k)) < 0 {
		f.n.Store(0) // counted afresh after a stall
	}
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// sending counts the packets a TUN read handed wireguard-go for sending.
func (f *flight) sending(n int) {
	if n > 0 && f.enabled.Load() {
		f.n.Add(int64(n))
	}
}

// release marks the start of a Send of bufs; its result, called once the
// Send returned (written, held or dropped), releases the data messages among
// them from the outbound flight.
func (f *flight) release(bufs [][]byte) func() {
	if !f.enabled.Load() {
		return func() {}
	}
	k := 0
	for _, b := range bufs {
		if len(b) > device.MessageKeepaliveSize && binary.LittleEndian.Uint32(b) == device.MessageTransportType {
			k++
		}
	}
	f.busy.Add(1)
	return func() {
		f.busy.Add(-1)
		f.written(k)
	}
}

// pacedTUN is a TUN device that tells the inbound flight what it wrote and
// waits on the outbound one before it reads.
type pacedTUN struct {
	tun.Device
	f   *flight // inbound
	out *flight // outbound; nil: reads are not paced
}

// Read waits while the outbound flight is full, then reads and counts what
// it read.
func (t *pacedTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if t.out == nil {
		return t.Device.Read(bufs, sizes, offset)
	}
	t.out.room(nil)
	n, err := t.Device.Read(bufs, sizes, offset)
	t.out.sending(n)
	return n, err
}

// Write writes bufs, then releases them from the flight: wireguard-go
// recycles the buffers once Write returns.
func (t *pacedTUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := t.Device.Write(bufs, offset)
	t.f.written(len(bufs))
	return n, err
}

// wrap returns dev paced by f (what it writes) and out (what it reads, when
// not nil) and enables both.
func (f *flight) wrap(dev tun.Device, out *flight) tun.Device {
	f.enabled.Store(true)
	if out != nil {
		out.enabled.Store(true)
	}
	return &pacedTUN{Device: dev, f: f, out: out}
}
