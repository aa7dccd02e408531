package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/echotest"
)

// TestDevicesExchangeTraffic connects two real wireguard-go devices through
// the tunnel and runs a TCP echo in each direction.
func TestDevicesExchangeTraffic(t *testing.T) {
	p := newWGPair(t, ServerConfig{}, ClientConfig{}, false)

	sln, err := p.snet.ListenTCPAddrPort(netip.AddrPortFrom(shadowIP, 7000))
	if err != nil {
		t.Fatal(err)
	}
	echotest.TCP(t, sln)
	cln, err := p.cnet.ListenTCPAddrPort(netip.AddrPortFrom(podIP, 7000))
	if err != nil {
		t.Fatal(err)
	}
	echotest.TCP(t, cln)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	payload := bytes.Repeat([]byte("interlink-mesh "), 20000) // 300 kB: many batches
	for _, tc := range []struct {
		name string
		dial func(context.Context, netip.AddrPort) (net.Conn, error)
		to   netip.AddrPort
	}{
		{"pod to shadow", func(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
			return p.cnet.DialContextTCPAddrPort(ctx, a)
		}, netip.AddrPortFrom(shadowIP, 7000)},
		{"shadow to pod", func(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
			return p.snet.DialContextTCPAddrPort(ctx, a)
		}, netip.AddrPortFrom(podIP, 7000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.dial(ctx, tc.to)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if d, ok := ctx.Deadline(); ok {
				c.SetDeadline(d)
			}
			errc := make(chan error, 1)
			go func() { _, err := c.Write(payload); errc <- err }()
			got := make([]byte, len(payload))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("write: %v", err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatal("echo differs from what was sent")
			}
		})
	}
	t.Logf("server %+v", p.srv.Stats())
	t.Logf("client %+v", p.cli.Stats())
}

// TestDevicesSurviveTransportLoss breaks the WebSocket under a TCP stream
// that runs over WireGuard: the tunnel server restarts, the ingress drops
// every connection, or the path dies silently (only pings notice). The
// stream resumes by itself with no byte lost; the gap is logged.
func TestDevicesSurviveTransportLoss(t *testing.T) {
	const down = 300 * time.Millisecond
	for _, tc := range []struct {
		name  string
		fault func(t *testing.T, p *wgPair)
	}{
		{"server restart", func(t *testing.T, p *wgPair) {
			p.srvRun.stop(t)
			if st := p.srv.Stats(); st.Active != 0 {
				t.Fatalf("session still active after stop: %+v", st)
			}
			time.Sleep(down)
			p.srvRun = startServer(t, p.srv)
		}},
		{"ingress drops connections", func(t *testing.T, p *wgPair) {
			p.proxy.cut()
			time.Sleep(down)
			p.proxy.up()
		}},
		{"path dies silently", func(t *testing.T, p *wgPair) {
			p.proxy.blackhole()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ping := 100 * time.Millisecond
			p := newWGPair(t, ServerConfig{PingInterval: ping}, ClientConfig{PingInterval: ping}, true)
			gap := streamThroughFault(t, p, func() { tc.fault(t, p) })
			t.Logf("%s: longest gap between echoes %v (ping interval %v); client %+v; server %+v",
				tc.name, gap.Round(time.Millisecond), ping, p.cli.Stats(), p.srv.Stats())
			if st := p.cli.Stats(); st.Sessions < 2 {
				t.Errorf("client sessions = %d, want a reconnect", st.Sessions)
			}
		})
	}
}

// streamThroughFault echoes sequence numbers over a TCP connection from the
// pod to the shadow, injects fault after 100 echoes, checks that all 300
// come back in order and returns the longest wait between two echoes.
func streamThroughFault(t *testing.T, p *wgPair, fault func()) time.Duration {
	sln, err := p.snet.ListenTCPAddrPort(netip.AddrPortFrom(shadowIP, 7000))
	if err != nil {
		t.Fatal(err)
	}
	echotest.TCP(t, sln)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := p.cnet.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(shadowIP, 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, _ := ctx.Deadline()
	c.SetDeadline(d)

	const total = 300
	var wg sync.WaitGroup
	defer wg.Wait()
	defer c.Close()
	wg.Go(func() {
		var b [8]byte
		for i := range uint64(total) {
			binary.BigEndian.PutUint64(b[:], i)
			if _, err := c.Write(b[:]); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	var (
		b    [8]byte
		last time.Time
		gap  time.Duration
	)
	for i := range uint64(total) {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			t.Fatalf("read echo %d: %v", i, err)
		}
		if got := binary.BigEndian.Uint64(b[:]); got != i {
			t.Fatalf("echo %d carries %d", i, got)
		}
		if now := time.Now(); i > 0 {
			gap = max(gap, now.Sub(last))
			last = now
		} else {
			last = now
		}
		if i == 100 {
			fault()
		}
	}
	return gap
}
