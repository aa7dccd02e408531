package netfilter

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// TestKernelTraffic proves the forwarding with real packets, with and without PodIP: the
// client reaches the backend through the shadow's IP (DNAT) and the backend sees the shadow's
// tunnel address (MASQUERADE), for TCP and UDP; excluded ports stay with the shadow; the
// backend reaches a service beyond the shadow as the shadow's IP. Before Run and after it the
// same attempts fail.
func TestKernelTraffic(t *testing.T) {
	requireKernel(t)
	forBackends(t, func(t *testing.T, b backend) {
		for _, podIP := range []netip.Addr{shadowIP, {}} {
			name := "pod IP"
			if !podIP.IsValid() {
				name = "no pod IP"
			}
			t.Run(name, func(t *testing.T) { testKernelTraffic(t, b, podIP) })
		}
	})
}

func testKernelTraffic(t *testing.T, b backend, podIP netip.Addr) {
	tp := newTopology(t, b)
	backend := func(remote string) string { return "backend saw " + remote }
	serveTCP(t, tp.backend, netip.AddrPortFrom(peerIP, 8080), backend)
	serveTCP(t, tp.backend, netip.AddrPortFrom(peerIP, 28080), backend)
	serveUDP(t, tp.backend, netip.AddrPortFrom(peerIP, 5353), backend)
	serveUDP(t, tp.backend, netip.AddrPortFrom(peerIP, 5354), backend)
	shadow := func(string) string { return "shadow itself" }
	serveTCP(t, tp.shadow, netip.AddrPortFrom(shadowIP, 28080), shadow)
	serveUDP(t, tp.shadow, netip.AddrPortFrom(shadowIP, 5354), shadow)
	serveTCP(t, tp.client, netip.AddrPortFrom(serviceIP, 80), func(remote string) string { return "service saw " + remote })

	app := netip.AddrPortFrom(shadowIP, 8080)
	svc := netip.AddrPortFrom(serviceIP, 80)
	if got, err := exchangeTCP(tp.client, app, time.Second); err == nil {
		t.Fatalf("before Run, the client reached %v: %q", app, got)
	}
	if got, err := exchangeTCP(tp.backend, svc, time.Second); err == nil {
		t.Fatalf("before Run, the backend reached %v: %q", svc, got)
	}

	var logs syncBuffer
	s, err := New(kernelConfig(t, tp, podIP, slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	stop := runShadow(t, tp, s)
	polltest.True(t, "rules applied", 5*time.Second, func() bool { return strings.Contains(logs.String(), "netfilter rules applied") })

	fromWG := "backend saw " + wgIP.String() + ":"
	checks := []struct {
		name, proto string
		from        *netnstest.NS
		to          netip.AddrPort
		wantPrefix  string
	}{
		{"tcp DNAT and MASQUERADE", "tcp", tp.client, app, fromWG},
		{"udp DNAT and MASQUERADE", "udp", tp.client, netip.AddrPortFrom(shadowIP, 5353), fromWG},
		{"excluded tcp port", "tcp", tp.client, netip.AddrPortFrom(shadowIP, 28080), "shadow itself"},
		{"excluded udp port", "udp", tp.client, netip.AddrPortFrom(shadowIP, 5354), "shadow itself"},
		{"peer egress MASQUERADE", "tcp", tp.backend, svc, "service saw " + shadowIP.String() + ":"},
	}
	for _, c := range checks {
		exchange := exchangeTCP
		if c.proto == "udp" {
			exchange = exchangeUDP
		}
		got, err := exchange(c.from, c.to, 3*time.Second)
		if err != nil || !strings.HasPrefix(got, c.wantPrefix) {
			t.Errorf("%s: %s to %v = %q, %v; want %q…", c.name, c.proto, c.to, got, err, c.wantPrefix)
		}
	}

	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got, err := exchangeTCP(tp.client, app, time.Second); err == nil {
		t.Errorf("after Run, the client still reached %v: %q", app, got)
	}
}

// serveTCP answers every connection to addr, in ns, with reply(remote address) until the test
// ends.
func serveTCP(t *testing.T, ns *netnstest.NS, addr netip.AddrPort, reply func(remote string) string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr.String()); return err }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			_, _ = io.WriteString(c, reply(c.RemoteAddr().String()))
			_ = c.Close()
		}
	})
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
}

// serveUDP answers every datagram to addr, in ns, with reply(remote address) until the test
// ends.
func serveUDP(t *testing.T, ns *netnstest.NS, addr netip.AddrPort, reply func(remote string) string) {
	t.Helper()
	var pc *net.UDPConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr)); return err }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed at cleanup
			}
			_, _ = pc.WriteToUDPAddrPort([]byte(reply(from.String())), from)
		}
	})
	t.Cleanup(func() { _ = pc.Close(); wg.Wait() })
}

// exchangeTCP connects from ns to addr and returns everything the server sends.
func exchangeTCP(ns *netnstest.NS, addr netip.AddrPort, timeout time.Duration) (string, error) {
	var got string
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr.String(), timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		b, err := io.ReadAll(c)
		got = string(b)
		return err
	})
	return got, err
}

// exchangeUDP sends one datagram from ns to addr and returns the answer. The socket is
// connected, so an answer from any other address than addr (a reply not un-NATed) is dropped.
func exchangeUDP(ns *netnstest.NS, addr netip.AddrPort, timeout time.Duration) (string, error) {
	var got string
	err := ns.Do(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("read answer from %v: %w", addr, err)
		}
		got = string(buf[:n])
		return nil
	})
	return got, err
}
