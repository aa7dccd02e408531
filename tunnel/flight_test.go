package tunnel

import (
	"encoding/binary"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// countingTUN is a TUN device that only counts what is written to it.
type countingTUN struct {
	tun.Device // nil: only Write is called
	written    int
}

func (t *countingTUN) Write(bufs [][]byte, _ int) (int, error) {
	t.written += len(bufs)
	return len(bufs), nil
}

// wgMessages returns received datagrams of the given WireGuard types and sizes.
func wgMessages(kinds ...[2]int) (bufs [][]byte, sizes []int) {
	for _, k := range kinds {
		b := make([]byte, max(k[1], 4))
		binary.LittleEndian.PutUint32(b, uint32(k[0]))
		bufs, sizes = append(bufs, b), append(sizes, k[1])
	}
	return bufs, sizes
}

// roomSoon calls f.room in a goroutine and returns its result, or -1 if it still waits after d.
func roomSoon(f *flight, done chan struct{}, d time.Duration) int {
	res := make(chan int, 1)
	go func() { res <- f.room(done) }()
	select {
	case n := <-res:
		return n
	case <-time.After(d):
		close(done) // let it go
		<-res
		return -1
	}
}

func TestFlightWaitsForTheTUN(t *testing.T) {
	f := newFlight(4)
	f.stall = time.Hour
	if n := f.room(nil); n != 4 {
		t.Fatalf("room before any TUN is wrapped = %d, want the limit", n)
	}
	dev := &countingTUN{}
	paced := f.wrap(dev)

	// Counted: transport messages carrying data. Not counted: keepalives (they never reach
	// the TUN) and handshake messages.
	data := [2]int{device.MessageTransportType, 1300}
	bufs, sizes := wgMessages(data, [2]int{device.MessageTransportType, device.MessageKeepaliveSize},
		[2]int{device.MessageInitiationType, device.MessageInitiationSize}, data, data, data)
	f.handed(bufs, sizes, len(bufs))
	if n := f.n.Load(); n != 4 {
		t.Fatalf("in flight = %d, want the 4 data messages", n)
	}
	if n := roomSoon(f, make(chan struct{}), 50*time.Millisecond); n != -1 {
		t.Fatalf("room with the limit in flight = %d, want a wait", n)
	}
	// wireguard-go writes 3 of them: room for 3.
	if _, err := paced.Write(bufs[:3], 0); err != nil {
		t.Fatal(err)
	}
	if dev.written != 3 {
		t.Errorf("TUN got %d packets, want 3", dev.written)
	}
	if n := roomSoon(f, make(chan struct{}), 5*time.Second); n != 3 {
		t.Fatalf("room after 3 written = %d, want 3", n)
	}
	// A closed Bind stops the wait.
	f.handed(bufs[:3], sizes[:3], 1)
	f.n.Store(4)
	done := make(chan struct{})
	close(done)
	if n := f.room(done); n != 0 {
		t.Fatalf("room with done closed = %d, want 0", n)
	}
}

func TestFlightStartsAfreshAfterAStall(t *testing.T) {
	f := newFlight(2)
	f.stall = 10 * time.Millisecond
	f.wrap(&countingTUN{})
	bufs, sizes := wgMessages([2]int{device.MessageTransportType, 100}, [2]int{device.MessageTransportType, 100})
	f.handed(bufs, sizes, 2) // dropped by wireguard-go: never written
	if n := roomSoon(f, make(chan struct{}), 5*time.Second); n != 2 {
		t.Fatalf("room after a stall = %d, want the whole limit", n)
	}
	f.written(2) // late writes of what was forgotten do not go negative
	if n := f.n.Load(); n != 0 {
		t.Fatalf("in flight = %d after late writes, want 0", n)
	}
}
