// Package dnstest is a DNS server for tests: A records from a map, NXDOMAIN for every other name,
// over UDP and TCP, counting the questions it was asked.
package dnstest

import (
	enc "encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// Server answers on the listeners given to Serve until the test ends.
type Server struct {
	names map[string]string // rooted name ("web.example.") → IPv4 address

	mu    sync.Mutex
	asked []string
}

// Serve answers A queries for names (rooted: "web.default.svc.cluster.local.") on pc and ln, which
// it closes when t ends; other names get NXDOMAIN, other types of a known name an empty answer.
func Serve(t testing.TB, pc net.PacketConn, ln net.Listener, names map[string]string) *Server {
	t.Helper()
	s := &Server{names: names}
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if a := s.answer(buf[:n]); a != nil {
				_, _ = pc.WriteTo(a, from)
			}
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, enc.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				a := s.answer(q)
				_, _ = c.Write(append(enc.BigEndian.AppendUint16(nil, uint16(len(a))), a...))
			}()
		}
	}()
	t.Cleanup(func() { pc.Close(); ln.Close(); <-done; <-done })
	return s
}

// Loopback serves names on a free port of 127.0.0.1 (the same port for UDP and TCP) and returns
// the server and its address.
func Loopback(t testing.TB, names map[string]string) (*Server, netip.AddrPort) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			pc.Close() // the port is taken for TCP: another one
			continue
		}
		return Serve(t, pc, ln, names), addr
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return nil, netip.AddrPort{}
}

// Asked lists the names asked so far, in order.
func (s *Server) Asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.asked...)
}

func (s *Server) answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	name := qs[0].Name.String()
	s.mu.Lock()
	s.asked = append(s.asked, name)
	s.mu.Unlock()
	ip, ok := s.names[name]
	hdr := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if !ok {
		hdr.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, hdr)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(qs[0])
	if ok && qs[0].Type == dnsmessage.TypeA {
		_ = b.StartAnswers()
		_ = b.AResource(dnsmessage.ResourceHeader{Name: qs[0].Name, Class: dnsmessage.ClassINET, TTL: 5},
			dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()})
	}
	out, _ := b.Finish()
	return out
}
