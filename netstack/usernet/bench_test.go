package usernet

import (
	"io"
	"net"
	"net/netip"
	"testing"
)

// BenchmarkStream moves bytes from the shadow's stack through the pod's to a loopback sink:
// the two stacks and the relay, without WireGuard.
func BenchmarkStream(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	_, s := newPair(b, Config{}, Config{})
	c, err := s.DialTCP(b.Context(), netip.AddrPortFrom(podAddr, netip.MustParseAddrPort(ln.Addr().String()).Port()))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}
