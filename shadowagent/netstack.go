package shadowagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"golang.org/x/sync/errgroup"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/relay"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/usernet"
)

// upNetstack is up for netstack mode: the WireGuard device runs on a user-space stack, the
// declared ports are ordinary listening sockets relayed to the offloaded pod through it, and
// the offloaded pod's flows end in it and are dialed from this pod's own sockets. Nothing needs
// a capability. Each step pushes its undo before it can fail half-way.
func (a *Agent) upNetstack(ctx context.Context, g *errgroup.Group, undo *[]func()) error {
	// The ports first: one that cannot be bound fails the start, naming it.
	var (
		streams  []*relay.Streams
		sessions []*relay.Sessions
	)
	closeAll := func() {
		for _, s := range streams {
			s.Listener.Close()
		}
		for _, s := range sessions {
			s.Conn.Close()
		}
	}
	host := "" // every address of the pod, unless PodIP narrows it
	if a.cfg.PodIP.IsValid() {
		host = a.cfg.PodIP.String()
	}
	for _, p := range a.cfg.TCPPorts {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(int(p))))
		if err != nil {
			closeAll()
			return fmt.Errorf("listen on tcp port %d for the offloaded pod: %w%s", p, err, lowPortHint(p))
		}
		streams = append(streams, &relay.Streams{Listener: ln, MaxStreams: a.cfg.MaxFlows,
			Logger: a.log.With("component", "relay", "port", p, "proto", "tcp")})
	}
	for _, p := range a.cfg.UDPPorts {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(int(p))))
		if err != nil {
			closeAll()
			return fmt.Errorf("listen on udp port %d for the offloaded pod: %w%s", p, err, lowPortHint(p))
		}
		sessions = append(sessions, &relay.Sessions{Conn: pc, Idle: a.cfg.UDPIdle, MaxSessions: a.cfg.MaxFlows,
			Logger: a.log.With("component", "relay", "port", p, "proto", "udp")})
	}
	*undo = append(*undo, closeAll)

	e, err := a.eng.Start(a.engineConfig(&usernet.Config{
		AnyDestination: true,
		DialTCP:        a.dialOut("tcp"),
		DialUDP:        a.dialOut("udp"),
	})) // closing it closes the stack and its flows
	if err != nil {
		return err
	}
	*undo = append(*undo, a.eng.Stop)
	g.Go(e.ServeUAPI)
	st := e.Stack()

	peer := a.cfg.PeerAddress
	for _, s := range streams {
		port := uint16(s.Listener.Addr().(*net.TCPAddr).Port)
		s.Dial = func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, usernet.DefaultDialTimeout)
			defer cancel()
			return st.DialTCP(ctx, netip.AddrPortFrom(peer, port))
		}
		g.Go(func() error { return s.Run(ctx) })
	}
	for _, s := range sessions {
		port := uint16(s.Conn.LocalAddr().(*net.UDPAddr).Port)
		s.Dial = func(context.Context, netip.AddrPort) (net.Conn, error) {
			return st.DialUDP(netip.AddrPortFrom(peer, port))
		}
		g.Go(func() error { return s.Run(ctx) })
	}
	a.inbound.Store(&inbound{streams: streams, sessions: sessions})
	a.rulesApplied.Store(true)
	*undo = append(*undo, func() { a.rulesApplied.Store(false) })
	return nil
}

// inbound are the relays of the declared ports, for the metrics.
type inbound struct {
	streams  []*relay.Streams
	sessions []*relay.Sessions
}

// errForbiddenDestination refuses flows from the offloaded pod to addresses that are the
// shadow pod's own (loopback, its mesh address) or no one's (unspecified, multicast,
// link-local, where cloud metadata services live).
var errForbiddenDestination = errors.New("destination not relayed from the mesh")

// dialOut dials a flow of the offloaded pod from this pod's own sockets: what MASQUERADE does
// in kernel mode.
func (a *Agent) dialOut(network string) func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	return func(ctx context.Context, _, dst netip.AddrPort) (net.Conn, error) {
		d := dst.Addr()
		if d.IsLoopback() || d.IsUnspecified() || d.IsMulticast() || d.IsLinkLocalUnicast() ||
			d == a.cfg.Address.Addr() || d == netip.IPv4Unspecified() || d.As4() == [4]byte{255, 255, 255, 255} {
			return nil, fmt.Errorf("%w: %v", errForbiddenDestination, dst)
		}
		var dl net.Dialer
		return dl.DialContext(ctx, network, dst.String())
	}
}

// lowPortHint explains why a port below 1024 may not be bound without root.
func lowPortHint(p uint16) string {
	if p >= 1024 {
		return ""
	}
	return " (a port below 1024 needs the pod's net.ipv4.ip_unprivileged_port_start at or below it, which containerd 2 and CRI-O set to 0, or CAP_NET_BIND_SERVICE)"
}
