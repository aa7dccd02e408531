package usernet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/leakcheck"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, leakcheck.Config{Markers: []string{"interlink-k8s-mesh/usernet.", "interlink-k8s-mesh/relay.", "gvisor.dev/"}})
}

var (
	podAddr    = netip.MustParseAddr("10.7.0.2")
	shadowAddr = netip.MustParseAddr("10.7.0.1")
)

// pair joins two stacks as wireguard-go would: what one sends, the other receives. The pumps
// stop when either stack closes.
func pair(t testing.TB, a, b *Stack) {
	t.Helper()
	var wg sync.WaitGroup
	pump := func(from, to *Stack) {
		defer wg.Done()
		bufs := make([][]byte, 8)
		for i := range bufs {
			bufs[i] = make([]byte, 65536)
		}
		sizes := make([]int, len(bufs))
		for {
			n, err := from.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			out := make([][]byte, n)
			for i := range n {
				out[i] = bufs[i][:sizes[i]]
			}
			to.Write(out, 0)
		}
	}
	wg.Add(2)
	go pump(a, b)
	go pump(b, a)
	t.Cleanup(func() {
		a.Close()
		b.Close()
		wg.Wait()
	})
}

// loopback dials the same port on 127.0.0.1, as the mesh-agent does for its workload.
func loopback(network string) func(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error) {
	return func(ctx context.Context, _, dst netip.AddrPort) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), dst.Port()).String())
	}
}

// newPair returns the pod's stack (flows to its address go to loopback) and the shadow's (flows
// to any address go where toShadow says).
func newPair(t testing.TB, pod Config, shadow Config) (p, s *Stack) {
	t.Helper()
	pod.Addresses = []netip.Addr{podAddr}
	if pod.DialTCP == nil {
		pod.DialTCP = loopback("tcp")
	}
	if pod.DialUDP == nil {
		pod.DialUDP = loopback("udp")
	}
	shadow.Addresses = []netip.Addr{shadowAddr}
	shadow.AnyDestination = true
	p, err := New(pod)
	if err != nil {
		t.Fatal(err)
	}
	s, err = New(shadow)
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	pair(t, p, s)
	return p, s
}

// echoTCP serves on loopback: it reads until EOF, then writes back what it read and closes,
// which only works if the half-close reached it and the other half stayed open.
func echoTCP(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write(b)
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func echoUDP(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// halfCloseRoundTrip writes msg, half-closes, and returns everything read until EOF.
func halfCloseRoundTrip(t *testing.T, c net.Conn, msg []byte) []byte {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestTCPToPodWithHalfClose(t *testing.T) {
	srv := echoTCP(t)
	p, s := newPair(t, Config{}, Config{})
	msg := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB, many windows
	c, err := s.DialTCP(t.Context(), netip.AddrPortFrom(podAddr, srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	if got := halfCloseRoundTrip(t, c, msg); !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %d bytes, want %d", len(got), len(msg))
	}
	polltest.True(t, "pod's TCP flow to end", 10*time.Second, func() bool { return p.Stats().TCPActive == 0 })
	if st := p.Stats(); st.TCPTotal != 1 {
		t.Errorf("pod stats %+v, want 1 TCP flow", st)
	}
}

func TestTCPRefusedIsReset(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close() // nothing listens there now
	p, s := newPair(t, Config{}, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := s.DialTCP(ctx, netip.AddrPortFrom(podAddr, closed.Port()))
	if err == nil || errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		t.Fatalf("dial to a closed port: %v, want a reset at once", err)
	}
	if st := p.Stats(); st.Refused != 1 {
		t.Errorf("pod stats %+v, want 1 refused", st)
	}
}

// The shadow's stack terminates flows to any address and hands over the real destination.
func TestAnyDestination(t *testing.T) {
	srv := echoTCP(t)
	userv := echoUDP(t)
	local := netip.MustParseAddrPort("10.96.0.10:53")
	seen := make(chan netip.AddrPort, 2)
	to := func(network string, real netip.AddrPort) func(context.Context, netip.AddrPort, netip.AddrPort) (net.Conn, error) {
		return func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
			if src.Addr() != podAddr {
				return nil, errors.New("unexpected source " + src.String())
			}
			seen <- dst
			var d net.Dialer
			return d.DialContext(ctx, network, real.String())
		}
	}
	p, _ := newPair(t, Config{}, Config{DialTCP: to("tcp", srv), DialUDP: to("udp", userv)})
	c, err := p.DialTCP(t.Context(), local)
	if err != nil {
		t.Fatal(err)
	}
	if got := halfCloseRoundTrip(t, c, []byte("hello")); string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
	if d := <-seen; d != local {
		t.Errorf("shadow dialed for %v, want %v", d, local)
	}
	u, err := p.DialUDP(local)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(5 * time.Second))
	u.Write([]byte("q"))
	buf := make([]byte, 100)
	n, err := u.Read(buf)
	if err != nil || string(buf[:n]) != "echo:q" {
		t.Fatalf("udp answer %q, %v", buf[:n], err)
	}
	if d := <-seen; d != local {
		t.Errorf("shadow dialed udp for %v, want %v", d, local)
	}
}

func TestUDPToPodExpires(t *testing.T) {
	srv := echoUDP(t)
	p, s := newPair(t, Config{UDPIdle: 300 * time.Millisecond}, Config{})
	u, err := s.DialUDP(netip.AddrPortFrom(podAddr, srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for i := range 3 { // one flow carries every datagram of the 4-tuple
		u.SetDeadline(time.Now().Add(5 * time.Second))
		u.Write([]byte{byte('a' + i)})
		buf := make([]byte, 100)
		n, err := u.Read(buf)
		if err != nil || string(buf[:n]) != "echo:"+string(rune('a'+i)) {
			t.Fatalf("udp answer %q, %v", buf[:n], err)
		}
	}
	if st := p.Stats(); st.UDPTotal != 1 || st.UDPActive != 1 {
		t.Fatalf("pod stats %+v, want one live UDP flow", st)
	}
	polltest.True(t, "idle UDP flow to expire", 10*time.Second, func() bool { return p.Stats().UDPActive == 0 })
}

func TestMaxFlows(t *testing.T) {
	srv := echoTCP(t)
	p, s := newPair(t, Config{MaxFlows: 2}, Config{})
	dst := netip.AddrPortFrom(podAddr, srv.Port())
	var held []net.Conn
	for range 2 {
		c, err := s.DialTCP(t.Context(), dst)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	polltest.True(t, "two flows", 10*time.Second, func() bool { return p.Stats().TCPActive == 2 })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if c, err := s.DialTCP(ctx, dst); err == nil {
		c.Close()
		t.Fatal("a third flow was accepted beyond MaxFlows 2")
	}
	if st := p.Stats(); st.OverLimit != 1 {
		t.Errorf("stats %+v, want 1 over the limit", st)
	}
	for _, c := range held {
		if got := halfCloseRoundTrip(t, c, []byte("x")); string(got) != "x" {
			t.Errorf("held flow answered %q", got)
		}
	}
	polltest.True(t, "flows to end", 10*time.Second, func() bool { return p.Stats().TCPActive == 0 })
	c, err := s.DialTCP(t.Context(), dst)
	if err != nil {
		t.Fatalf("after the flows ended: %v", err)
	}
	c.Close()
}

// Close ends flows in progress and leaves no goroutine (TestMain checks).
func TestCloseEndsFlows(t *testing.T) {
	srv := echoTCP(t)
	p, s := newPair(t, Config{}, Config{})
	c, err := s.DialTCP(t.Context(), netip.AddrPortFrom(podAddr, srv.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	polltest.True(t, "the flow", 10*time.Second, func() bool { return p.Stats().TCPActive == 1 })
	p.Close()
	if st := p.Stats(); st.TCPActive != 0 {
		t.Errorf("after Close: %+v", st)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, c := range map[string]Config{
		"no address": {},
		"small mtu":  {Addresses: []netip.Addr{podAddr}, MTU: 100},
	} {
		t.Run(name, func(t *testing.T) {
			if s, err := New(c); err == nil {
				s.Close()
				t.Fatal("accepted")
			}
		})
	}
}
