package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, leakcheck.Config{Markers: []string{"interlink-k8s-mesh/relay."}})
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c, s
}

// A client half-closes after its request; the server answers after reading EOF. Through
// Stream, both the FIN and the late answer must pass.
func TestStreamHalfClose(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	defer client.Close()
	defer server.Close()
	done := make(chan error, 1)
	go func() { _, _, err := Stream(a, b); done <- err }()

	req := bytes.Repeat([]byte("r"), 3*BufferSize+7)
	go func() {
		client.Write(req)
		client.(*net.TCPConn).CloseWrite()
	}()
	server.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(server)
	if err != nil || !bytes.Equal(got, req) {
		t.Fatalf("server read %d bytes, %v; want %d", len(got), err, len(req))
	}
	server.Write([]byte("answer after EOF"))
	server.Close()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	ans, err := io.ReadAll(client)
	if err != nil || string(ans) != "answer after EOF" {
		t.Fatalf("client read %q, %v", ans, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Stream: %v", err)
	}
}

// A reset on one side closes the other at once.
func TestStreamResetClosesBoth(t *testing.T) {
	client, a := tcpPair(t)
	b, server := tcpPair(t)
	defer client.Close()
	done := make(chan error, 1)
	go func() { _, _, err := Stream(a, b); done <- err }()
	server.(*net.TCPConn).SetLinger(0)
	server.Close() // RST
	client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(client); err != nil {
		t.Logf("client: %v", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stream did not end after a reset")
	}
}

func udpEcho(t *testing.T) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2000)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr)
}

func TestSessions(t *testing.T) {
	up := udpEcho(t)
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Sessions{
		Conn: ln,
		Dial: func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
			return net.DialUDP("udp", nil, up)
		},
		Idle:        2 * time.Second,
		MaxSessions: 2,
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()

	wait := time.Second
	ask := func(c net.Conn, msg string) (string, error) {
		c.SetDeadline(time.Now().Add(wait))
		c.Write([]byte(msg))
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		return string(buf[:n]), err
	}
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("udp", ln.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	for i, c := range clients[:2] {
		for j := range 2 {
			if got, err := ask(c, "m"); got != "m" || err != nil {
				t.Fatalf("client %d datagram %d: %q, %v", i, j, got, err)
			}
		}
	}
	wait = 200 * time.Millisecond // well inside Idle
	if got, err := ask(clients[2], "x"); err == nil {
		t.Fatalf("a third client got %q beyond MaxSessions 2", got)
	}
	if st := s.Stats(); st.Active != 2 || st.Total != 2 || st.Dropped != 1 {
		t.Fatalf("stats %+v, want 2 active, 2 in all, 1 dropped", st)
	}
	for deadline := time.Now().Add(10 * time.Second); s.Stats().Active != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("idle sessions did not expire: %+v", s.Stats())
		}
	}
	wait = time.Second
	if got, err := ask(clients[2], "y"); got != "y" || err != nil {
		t.Fatalf("after expiry: %q, %v", got, err)
	}
}

func TestDatagramsIdle(t *testing.T) {
	up := udpEcho(t)
	a1, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.DialUDP("udp", nil, a1.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.Write([]byte("hi")) // a1 learns the client, then connects to it
	buf := make([]byte, 10)
	_, from, err := a1.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	a1.Close()
	down, err := net.DialUDP("udp", a1.LocalAddr().(*net.UDPAddr), from.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	upc, err := net.DialUDP("udp", nil, up)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int64, 1)
	go func() { n, _, _ := Datagrams(down, upc, 200*time.Millisecond); done <- n }()
	client.SetDeadline(time.Now().Add(5 * time.Second))
	client.Write([]byte("ping"))
	n, err := client.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("echo %q, %v", buf[:n], err)
	}
	select {
	case got := <-done:
		if got != 1 {
			t.Errorf("%d datagrams copied down to up, want 1", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an idle session did not end")
	}
}

// Streams forwards each connection to its upstream, resets one whose upstream refuses, resets
// those beyond MaxStreams, and closes every stream when its context ends.
func TestStreams(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refuse := make(chan bool, 10)
	s := &Streams{Listener: ln, MaxStreams: 2, Dial: func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
		if <-refuse {
			return nil, io.ErrUnexpectedEOF
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", up.Addr().String())
	}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	// wantReset dials and wants a reset, while connecting (the reset can beat the handshake's
	// end on loopback) or at the first read.
	wantReset := func(what string) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "reset") {
			t.Errorf("%s: %v, want a reset", what, err)
		}
	}
	refuse <- true
	wantReset("refused upstream")

	var held []net.Conn
	for range 2 {
		refuse <- false
		c := dial()
		fmt.Fprint(c, "hi")
		if b := make([]byte, 2); func() error { _, err := io.ReadFull(c, b); return err }() != nil || string(b) != "hi" {
			t.Fatalf("echo %q", b)
		}
		held = append(held, c)
	}
	wantReset("beyond MaxStreams")
	if st := s.Stats(); st.Active != 2 || st.Total != 2 || st.Refused != 2 {
		t.Errorf("stats %+v, want 2 active, 2 in all, 2 refused", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	for _, c := range held {
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a stream outlived Run")
		}
		c.Close()
	}
}
