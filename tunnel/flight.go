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
	// not add throughput (README).
	DefaultInFlight = 128
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

// pacedTUN is a TUN device that tells a flight what it wrote.
type pacedTUN struct {
	tun.Device
	f *flight
}

// Write writes bufs, then releases them from the flight: wireguard-go
// recycles the buffers once Write returns.
func (t *pacedTUN) Write(bufs [][]byte, offset int) (int, error) {
	n, err := t.Device.Write(bufs, offset)
	t.f.written(len(bufs))
	return n, err
}

// wrap returns dev paced by f and enables f.
func (f *flight) wrap(dev tun.Device) tun.Device {
	f.enabled.Store(true)
	return &pacedTUN{Device: dev, f: f}
}
