package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// benchLink is a Client and a Server joined over loopback, both Binds
// open, for benchmarks of the tunnel without WireGuard.
type benchLink struct {
	cbind, sbind *benchBind
}

type benchBind struct {
	conn.Bind
	recv  conn.ReceiveFunc
	bufs  [][]byte
	sizes []int
	eps   []conn.Endpoint
}

func newBenchBind(t testing.TB, b conn.Bind) *benchBind {
	bb := &benchBind{Bind: b, recv: openBind(t, b), sizes: make([]int, conn.IdealBatchSize), eps: make([]conn.Endpoint, conn.IdealBatchSize)}
	for range conn.IdealBatchSize {
		bb.bufs = append(bb.bufs, make([]byte, device.MaxMessageSize))
	}
	return bb
}

func newBenchLink(b *testing.B) *benchLink {
	srv, addr := newTestServer(b, ServerConfig{})
	startServer(b, srv)
	cli := newTestClient(b, ClientConfig{URL: "ws://" + addr})
	start(b, cli.Run)
	l := &benchLink{cbind: newBenchBind(b, NewClientBind(cli)), sbind: newBenchBind(b, NewServerBind(srv))}
	polltest.True(b, "session", 5*time.Second, func() bool { return cli.Stats().Active == 1 && srv.Stats().Active == 1 })
	return l
}

// BenchmarkDatagramRoundTrip sends one 1400-byte datagram from ClientBind
// to ServerBind over loopback WebSocket and echoes it back.
func BenchmarkDatagramRoundTrip(b *testing.B) {
	l := newBenchLink(b)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer l.sbind.Close()
	wg.Go(func() { // echo: everything the server receives goes back
		s := l.sbind
		out := make([][]byte, conn.IdealBatchSize)
		for {
			n, err := s.recv(s.bufs, s.sizes, s.eps)
			if err != nil {
				return
			}
			for i := range n {
				out[i] = s.bufs[i][:s.sizes[i]]
			}
			s.Send(out[:n], s.eps[0])
		}
	})
	c := l.cbind
	ep, _ := c.ParseEndpoint("127.0.0.1:51820")
	msg := [][]byte{make([]byte, 1400)}
	b.SetBytes(int64(len(msg[0])))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Send(msg, ep); err != nil {
			b.Fatal(err)
		}
		if n, err := c.recv(c.bufs, c.sizes, c.eps); err != nil || n != 1 || c.sizes[0] != 1400 {
			b.Fatalf("receive: n=%d err=%v", n, err)
		}
	}
}

// BenchmarkBatchThroughput sends wireguard-go sized batches (128 x 1400 B)
// one way, ClientBind to ServerBind, and waits for all of them.
func BenchmarkBatchThroughput(b *testing.B) {
	l := newBenchLink(b)
	batch := make([][]byte, conn.IdealBatchSize)
	for i := range batch {
		batch[i] = make([]byte, 1400)
	}
	ep, _ := l.cbind.ParseEndpoint("127.0.0.1:51820")
	var received atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer l.sbind.Close()
	wg.Go(func() {
		s := l.sbind
		for {
			n, err := s.recv(s.bufs, s.sizes, s.eps)
			if err != nil {
				return
			}
			received.Add(int64(n))
		}
	})
	b.SetBytes(int64(len(batch) * 1400))
	b.ReportAllocs()
	sent := int64(0)
	for b.Loop() {
		l.cbind.Send(batch, ep)
		sent += int64(len(batch))
		// No pacing: a receiver that lags leaves the WebSocket unread and
		// TCP slows the sender down; nothing is dropped.
	}
	deadline := time.Now().Add(10 * time.Second)
	for received.Load()+int64(l.sbind.Bind.(*ServerBind).s.inbox.queue.dropped.Load()) < sent && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
	b.ReportMetric(float64(l.sbind.Bind.(*ServerBind).s.inbox.queue.dropped.Load())/float64(b.N), "dropped/op")
}

// BenchmarkDeviceThroughput pushes bulk TCP between two wireguard-go
// devices on netstack TUNs, through our WebSocket Binds ("ws") and, for
// reference, through wireguard-go's own UDP Bind on loopback ("udp").
func BenchmarkDeviceThroughput(b *testing.B) {
	b.Run("ws", func(b *testing.B) {
		p := newWGPair(b, ServerConfig{}, ClientConfig{}, false)
		benchBulkTCP(b, p.snet, p.cnet)
		b.ReportMetric(float64(p.srv.Stats().RxDropped), "queue-drops")
	})
	b.Run("udp", func(b *testing.B) {
		snet, cnet := newUDPPair(b)
		benchBulkTCP(b, snet, cnet)
	})
}

// benchBulkTCP writes 64 KiB chunks from the pod side to a sink on the
// shadow side and waits until the sink has read them all.
func benchBulkTCP(b *testing.B, snet, cnet *netstack.Net) {
	ln, err := snet.ListenTCPAddrPort(netip.AddrPortFrom(shadowIP, 7001))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var got atomic.Int64
	sinkDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sinkDone <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(writerFunc(func(p []byte) (int, error) { got.Add(int64(len(p))); return len(p), nil }), c)
		sinkDone <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cnet.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(shadowIP, 7001))
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(b.N) * int64(len(chunk))
	c.Close()
	select {
	case err := <-sinkDone:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			b.Fatalf("sink: %v", err)
		}
	case <-time.After(30 * time.Second):
		b.Fatal("sink did not finish")
	}
	if got.Load() != want {
		b.Fatalf("sink read %d bytes, want %d", got.Load(), want)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// newUDPPair is newWGPair over wireguard-go's standard UDP Bind on
// loopback: the yardstick for the WebSocket Binds.
func newUDPPair(b *testing.B) (snet, cnet *netstack.Net) {
	skey, ckey := wgKey(b), wgKey(b)
	stun, ctun := mustTUN(b, shadowIP, &snet), mustTUN(b, podIP, &cnet)
	sdev := device.NewDevice(stun, conn.NewStdNetBind(), wgLogger(b, "udp shadow"))
	cdev := device.NewDevice(ctun, conn.NewStdNetBind(), wgLogger(b, "udp pod"))
	b.Cleanup(func() {
		cdev.Close()
		sdev.Close()
	})
	port := freeUDPPort(b)
	mustIpc(b, sdev, fmt.Sprintf("private_key=%x\nlisten_port=%d\npublic_key=%x\nallowed_ip=%s/32\n",
		skey.Bytes(), port, ckey.PublicKey().Bytes(), podIP))
	mustIpc(b, cdev, fmt.Sprintf("private_key=%x\npublic_key=%x\nendpoint=127.0.0.1:%d\nallowed_ip=%s/32\n",
		ckey.Bytes(), skey.PublicKey().Bytes(), port, shadowIP))
	for _, d := range []*device.Device{sdev, cdev} {
		if err := d.Up(); err != nil {
			b.Fatal(err)
		}
	}
	return snet, cnet
}

func freeUDPPort(t testing.TB) int {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
