package shadowagent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

// wgMessage returns a WireGuard-shaped datagram of the given type and size.
func wgMessage(typ uint32, size int) []byte {
	p := make([]byte, size)
	binary.LittleEndian.PutUint32(p, typ)
	_, _ = rand.Read(p[4:])
	return p
}

func TestIsInitiation(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"initiation", wgMessage(1, 148), true},
		{"response", wgMessage(2, 92), false},
		{"cookie", wgMessage(3, 64), false},
		{"data of the initiation's size", wgMessage(4, 148), false},
		{"type 1, wrong size", wgMessage(1, 149), false},
		{"empty", nil, false},
	} {
		if got := isInitiation(tc.p); got != tc.want {
			t.Errorf("%s: isInitiation = %v", tc.name, got)
		}
	}
}

// TestFreshInitiations sends through the filter to a real tunnel server on loopback: while no
// session is up, the initiation is dropped and the data packet kept for the next session; once
// a session is up, initiations pass.
func TestFreshInitiations(t *testing.T) {
	srv, addr := startTunnelServer(t)
	b := freshInitiations{tunnel.NewServerBind(srv), srv}
	ep, err := b.ParseEndpoint("127.0.0.1:51820")
	if err != nil {
		t.Fatal(err)
	}
	init1, data := wgMessage(1, 148), wgMessage(4, 96)
	bufs := [][]byte{init1, data}
	if err := b.Send(bufs, ep); err != nil {
		t.Fatal(err)
	}
	if len(bufs) != 2 || !bytes.Equal(bufs[0], init1) || !bytes.Equal(bufs[1], data) {
		t.Error("Send modified the caller's batch")
	}
	if err := b.Send([][]byte{wgMessage(1, 148)}, ep); err != nil { // only initiations: nothing to send
		t.Fatal(err)
	}

	br := openSession(t, srv, addr)
	if got := readBinary(t, br); !bytes.Equal(got, data) {
		t.Fatalf("first datagram of the session: %d bytes of type %d, want the backlogged data packet", len(got), got[0])
	}
	init2 := wgMessage(1, 148)
	if err := b.Send([][]byte{init2}, ep); err != nil {
		t.Fatal(err)
	}
	if got := readBinary(t, br); !bytes.Equal(got, init2) {
		t.Fatalf("with a session up: %d bytes, want the initiation", len(got))
	}
}

// BenchmarkSend compares the tunnel's ServerBind with the filter in front of it, sending
// batches of 64 data packets of 1280 bytes to a live session on loopback.
func BenchmarkSend(b *testing.B) {
	srv, addr := startTunnelServer(b)
	var drained sync.WaitGroup
	b.Cleanup(drained.Wait) // after the session's connection is closed: cleanups run last first
	br := openSession(b, srv, addr)
	drained.Go(func() { _, _ = io.Copy(io.Discard, br) })
	batch := make([][]byte, 64)
	for i := range batch {
		batch[i] = wgMessage(4, 1280)
	}
	sb := tunnel.NewServerBind(srv)
	for _, bc := range []struct {
		name string
		bind conn.Bind
	}{{"ServerBind", sb}, {"freshInitiations", freshInitiations{sb, srv}}} {
		b.Run(bc.name, func(b *testing.B) {
			ep, err := bc.bind.ParseEndpoint("127.0.0.1:51820")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(batch) * 1280))
			for b.Loop() {
				if err := bc.bind.Send(batch, ep); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// startTunnelServer serves a tunnel server on a loopback port until the test ends.
func startTunnelServer(tb testing.TB) (*tunnel.Server, string) {
	tb.Helper()
	srv, err := tunnel.NewServer(tunnel.ServerConfig{PathPrefix: testPrefix})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	wg.Go(func() { _ = hs.Serve(ln) })
	tb.Cleanup(func() { cancel(); hs.Close(); wg.Wait() })
	return srv, ln.Addr().String()
}

// openSession upgrades a loopback connection to a session of srv, closed when the test ends,
// and waits until the server counts it as active.
func openSession(tb testing.TB, srv *tunnel.Server, addr string) *bufio.Reader {
	tb.Helper()
	var br *bufio.Reader
	for i := 0; br == nil; i++ { // refused until srv.Run has started
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
		if br, err = wsUpgrade(c, addr, testPrefix); err != nil && i == 100 {
			tb.Fatal(err)
		}
		if br == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i := 0; srv.Stats().Active == 0; i++ { // activation is visible to Stats just after the 101
		if i == 5000 {
			tb.Fatal("no active session 5s after the 101")
		}
		time.Sleep(time.Millisecond)
	}
	return br
}

// wsUpgrade performs a valid wstunnel upgrade by hand on c and returns the reader positioned
// after the 101 response.
func wsUpgrade(c net.Conn, host, prefix string) (*bufio.Reader, error) {
	tok, err := tunnel.BuildToken(tunnel.UDPClaims(tunnel.DefaultDestination), []byte("any key"))
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	fmt.Fprintf(c, "GET /%s/events HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Protocol: %s\r\n\r\n",
		prefix, host, base64.StdEncoding.EncodeToString(key), strings.Join(tunnel.BuildProtocols(tok), ", "))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("upgrade = %s, want 101", resp.Status)
	}
	return br, nil
}

// readBinary reads one unmasked binary frame of under 64 KiB, as the server sends them.
func readBinary(t *testing.T, br *bufio.Reader) []byte {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		t.Fatalf("read frame header: %v", err)
	}
	if h[0] != 0x82 || h[1]&0x80 != 0 {
		t.Fatalf("frame header % x: want an unmasked final binary frame", h)
	}
	n := int(h[1])
	if n == 126 {
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		t.Fatal(err)
	}
	return p
}
