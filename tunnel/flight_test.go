package tunnel

import (
	"encoding/binary"
	"sync/atomic"
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
	paced := f.wrap(dev, nil)

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
	f.wrap(&countingTUN{}, nil)
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

// readingTUN is a TUN device whose Read returns n packets at once.
type readingTUN struct {
	tun.Device // nil: only Read is called
	n          int
	reads      atomic.Int32
}

func (t *readingTUN) Read(bufs [][]byte, sizes []int, _ int) (int, error) {
	t.reads.Add(1)
	for i := range t.n {
		sizes[i] = 1300
	}
	return t.n, nil
}

// TestOutFlightPacesTUNReads: a TUN read waits while the outbound flight is full, a Send writing to
// a slow session keeps it full however long it takes (no stall reset while busy), and the Send's
// end releases the data messages it carried.
func TestOutFlightPacesTUNReads(t *testing.T) {
	in, out := newFlight(4), newFlight(4)
	out.stall = 20 * time.Millisecond
	dev := &readingTUN{n: 4}
	paced := in.wrap(dev, out)
	bufs, sizes := make([][]byte, 4), make([]int, 4)
	if n, err := paced.Read(bufs, sizes, 0); n != 4 || err != nil {
		t.Fatalf("first read = %d, %v", n, err)
	}
	// wireguard-go hands the 4 packets, encrypted, to a Send that blocks on the session.
	data := [2]int{device.MessageTransportType, 1300}
	msgs, _ := wgMessages(data, data, data, data, [2]int{device.MessageTransportType, device.MessageKeepaliveSize})
	done := out.release(msgs)
	read := make(chan struct{})
	go func() {
		paced.Read(bufs, sizes, 0)
		close(read)
	}()
	select {
	case <-read:
		t.Fatal("a TUN read went ahead with the outbound flight full and its Send still writing")
	case <-time.After(10 * out.stall):
	}
	done() // the Send returned: 4 data messages released, the keepalive never counted
	select {
	case <-read:
	case <-time.After(5 * time.Second):
		t.Fatal("the TUN read still waits after the Send released its packets")
	}
	if got := dev.reads.Load(); got != 2 {
		t.Errorf("TUN reads = %d, want 2", got)
	}
	// Packets wireguard-go drops before any Send (no peer for them) release after a stall.
	start := time.Now()
	if n := out.room(nil); n < 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("room after dropped packets = %d in %v", n, time.Since(start))
	}
}
