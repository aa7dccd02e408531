package meshagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/dialproxy"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/relay"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/usernet"
)

// loopback is where flows from the mesh reach the workload: the pod's own loopback, which
// every container of the pod shares.
var loopback = netip.MustParseAddr("127.0.0.1")

// upNetstack is up for netstack mode: the WireGuard device runs on a user-space stack whose
// flows go to the workload on the pod's loopback, and the workload reaches the local cluster
// through a DNS forwarder and an HTTP proxy on loopback, both dialing through the stack. No
// capability, no route, no TUN device. Each step pushes its undo before it can fail half-way.
func (a *Agent) upNetstack(ctx context.Context, g *errgroup.Group, undo *[]func()) error {
	// The listeners first: one that cannot be bound fails the start, naming it.
	var (
		dnsTCP   *relay.Streams
		dnsUDP   *relay.Sessions
		proxyLn  net.Listener
		closeAll = func() {}
	)
	nameserver, hasDNS := a.nameserver()
	if hasDNS && a.cfg.DNSListen != "" {
		ln, err := net.Listen("tcp", a.cfg.DNSListen)
		if err != nil {
			return fmt.Errorf("listen for dns on tcp %s: %w%s", a.cfg.DNSListen, err, lowPortHint(a.cfg.DNSListen))
		}
		pc, err := net.ListenPacket("udp", a.cfg.DNSListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen for dns on udp %s: %w%s", a.cfg.DNSListen, err, lowPortHint(a.cfg.DNSListen))
		}
		dnsTCP = &relay.Streams{Listener: ln, MaxStreams: 256, Logger: a.log.With("component", "dns")}
		dnsUDP = &relay.Sessions{Conn: pc, MaxSessions: 1024, Idle: dnsIdle, Logger: a.log.With("component", "dns")}
		closeAll = func() { ln.Close(); pc.Close() }
	}
	*undo = append(*undo, func() { closeAll() })
	if a.cfg.ProxyListen != "" {
		ln, err := net.Listen("tcp", a.cfg.ProxyListen)
		if err != nil {
			return fmt.Errorf("listen for the proxy on %s: %w%s", a.cfg.ProxyListen, err, lowPortHint(a.cfg.ProxyListen))
		}
		proxyLn = ln
		*undo = append(*undo, func() { ln.Close() })
	}

	fwdStreams, fwdSessions, err := a.listenForwards()
	if err != nil {
		return err
	}
	*undo = append(*undo, func() {
		for _, f := range fwdStreams {
			f.s.Listener.Close()
		}
		for _, f := range fwdSessions {
			f.s.Conn.Close()
		}
	})

	e, err := a.eng.Start(a.engineConfig(&usernet.Config{
		DialTCP: toLoopback("tcp"),
		DialUDP: toLoopback("udp"),
	})) // closing it closes the stack and its flows
	if err != nil {
		return err
	}
	*undo = append(*undo, a.eng.Stop)
	g.Go(e.ServeUAPI)
	st := e.Stack()

	if dnsTCP != nil {
		ns := netip.AddrPortFrom(nameserver, 53)
		dnsTCP.Dial = func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, usernet.DefaultDialTimeout)
			defer cancel()
			return st.DialTCP(ctx, ns)
		}
		dnsUDP.Dial = func(context.Context, netip.AddrPort) (net.Conn, error) { return st.DialUDP(ns) }
		g.Go(func() error { return dnsTCP.Run(ctx) })
		g.Go(func() error { return dnsUDP.Run(ctx) })
	}
	dialTo := a.dialForward(st)
	for _, f := range fwdStreams {
		f.s.Dial = func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, usernet.DefaultDialTimeout)
			defer cancel()
			return dialTo(ctx, "tcp", f.to)
		}
		g.Go(func() error { return f.s.Run(ctx) })
	}
	for _, f := range fwdSessions {
		f.s.Dial = func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, usernet.DefaultDialTimeout)
			defer cancel()
			return dialTo(ctx, "udp", f.to)
		}
		g.Go(func() error { return f.s.Run(ctx) })
	}
	if proxyLn != nil {
		p, err := dialproxy.New(dialproxy.Config{Dial: a.dialFromPod(st), Logger: a.log.With("component", "proxy")})
		if err != nil {
			return err
		}
		g.Go(func() error { return p.Serve(ctx, proxyLn) })
	}
	return nil
}

// dnsIdle ends a DNS forwarding session: an answer comes within seconds or not at all.
const dnsIdle = 10 * time.Second

// toLoopback sends a flow from the mesh to the same port on the pod's loopback.
func toLoopback(network string) func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error) {
	return func(ctx context.Context, _, dst netip.AddrPort) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, netip.AddrPortFrom(loopback, dst.Port()).String())
	}
}

// nameserver is the first mesh nameserver the mesh reaches, if any.
func (a *Agent) nameserver() (netip.Addr, bool) {
	for _, ns := range a.spec.DNS.Nameservers {
		if a.throughMesh(ns) {
			return ns, true
		}
	}
	return netip.Addr{}, false
}

// throughMesh says whether an address is reached through the mesh: the peer or a route.
func (a *Agent) throughMesh(addr netip.Addr) bool {
	addr = addr.Unmap()
	if addr == a.spec.PeerAddress {
		return true
	}
	for _, r := range a.spec.Routes {
		if r.Contains(addr) {
			return true
		}
	}
	return false
}

// dialFromPod is the proxy's dialer: an address or a name the mesh DNS resolves into the
// routes goes through the stack; anything else is dialed from the pod's own network, as the
// workload would without the proxy.
func (a *Agent) dialFromPod(st *usernet.Stack) func(ctx context.Context, address string) (net.Conn, error) {
	res := a.meshResolver(st)
	return func(ctx context.Context, address string) (net.Conn, error) {
		host, p, err := splitPort(address)
		if err != nil {
			return nil, err
		}
		addr, err := a.meshAddr(ctx, res, host)
		if err == nil && a.throughMesh(addr) {
			return st.DialTCP(ctx, netip.AddrPortFrom(addr, p))
		}
		var d net.Dialer
		if err == nil {
			return d.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, uint16(p)).String())
		}
		return d.DialContext(ctx, "tcp", address) // a name only the pod's own DNS knows
	}
}

// splitPort splits "host:port" with a numeric port.
func splitPort(address string) (string, uint16, error) {
	host, port, err := dialproxy.HostPort(address)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", port, err)
	}
	return host, uint16(p), nil
}

// meshAddr is host as an address, or as the mesh DNS (res, nil for none) resolves it.
func (a *Agent) meshAddr(ctx context.Context, res *net.Resolver, host string) (netip.Addr, error) {
	if addr, err := netip.ParseAddr(host); err == nil {
		return addr, nil
	}
	if res == nil {
		return netip.Addr{}, fmt.Errorf("resolve %s: no mesh nameserver", host)
	}
	return a.resolve(ctx, res, host)
}

// meshResolver asks the mesh nameserver through the stack; nil without one.
func (a *Agent) meshResolver(st *usernet.Stack) *net.Resolver {
	ns, ok := a.nameserver()
	if !ok {
		return nil
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		dst := netip.AddrPortFrom(ns, 53)
		if strings.HasPrefix(network, "tcp") {
			return st.DialTCP(ctx, dst)
		}
		return st.DialUDP(dst)
	}}
}

// ndots is the pod's resolver option that a name with fewer dots is tried with the search
// domains first, as in a Kubernetes pod.
const ndots = 5

// errNotFound: no candidate name resolved in the mesh DNS.
var errNotFound = errors.New("not found in the mesh DNS")

// resolve looks host up in the mesh DNS as a pod's resolver would: with the search domains
// first when it has fewer than ndots dots, then as it is. IPv4 only, like the mesh.
func (a *Agent) resolve(ctx context.Context, res *net.Resolver, host string) (netip.Addr, error) {
	var names []string
	if strings.HasSuffix(host, ".") || strings.Count(host, ".") >= ndots {
		names = append(names, strings.TrimSuffix(host, ".")+".")
	}
	if !strings.HasSuffix(host, ".") {
		for _, s := range a.spec.DNS.Searches {
			names = append(names, host+"."+s+".")
		}
		if strings.Count(host, ".") < ndots {
			names = append(names, host+".")
		}
	}
	for _, n := range names {
		addrs, err := res.LookupNetIP(ctx, "ip4", n)
		if err == nil && len(addrs) > 0 {
			return addrs[0].Unmap(), nil
		}
		if ctx.Err() != nil {
			return netip.Addr{}, ctx.Err()
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: %w", host, errNotFound)
}

// lowPortHint explains why a port below 1024 may not be bound without root.
func lowPortHint(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || p >= 1024 {
		return ""
	}
	return " (a port below 1024 needs the pod's net.ipv4.ip_unprivileged_port_start at or below it, which containerd 2 and CRI-O set to 0, or CAP_NET_BIND_SERVICE)"
}

// forwardStreams and forwardSessions are the spec's fixed relays, with where they go.
type (
	forwardStreams struct {
		s  *relay.Streams
		to string
	}
	forwardSessions struct {
		s  *relay.Sessions
		to string
	}
)

// listenForwards opens the listeners of the spec's forwards; on failure it closes what it
// opened and names the forward.
func (a *Agent) listenForwards() ([]forwardStreams, []forwardSessions, error) {
	var (
		streams  []forwardStreams
		sessions []forwardSessions
	)
	fail := func(err error) ([]forwardStreams, []forwardSessions, error) {
		for _, f := range streams {
			f.s.Listener.Close()
		}
		for _, f := range sessions {
			f.s.Conn.Close()
		}
		return nil, nil, err
	}
	for _, f := range a.spec.Forwards {
		log := a.log.With("component", "forward", "listen", f.Listen, "to", f.To)
		if f.Protocol == "udp" {
			pc, err := net.ListenPacket("udp", f.Listen.String())
			if err != nil {
				return fail(fmt.Errorf("listen for the forward to %s on udp %v: %w%s", f.To, f.Listen, err, lowPortHint(f.Listen.String())))
			}
			sessions = append(sessions, forwardSessions{&relay.Sessions{Conn: pc, Idle: a.cfg.UDPIdle, Logger: log}, f.To})
			continue
		}
		ln, err := net.Listen("tcp", f.Listen.String())
		if err != nil {
			return fail(fmt.Errorf("listen for the forward to %s on tcp %v: %w%s", f.To, f.Listen, err, lowPortHint(f.Listen.String())))
		}
		streams = append(streams, forwardStreams{&relay.Streams{Listener: ln, Logger: log}, f.To})
	}
	return streams, sessions, nil
}

// dialForward dials a forward's "host:port" through the mesh, whatever the routes say (a
// forward is for the local cluster), resolving a name in the mesh DNS at every dial.
func (a *Agent) dialForward(st *usernet.Stack) func(ctx context.Context, network, to string) (net.Conn, error) {
	res := a.meshResolver(st)
	return func(ctx context.Context, network, to string) (net.Conn, error) {
		host, p, err := splitPort(to)
		if err != nil {
			return nil, err
		}
		addr, err := a.meshAddr(ctx, res, host)
		if err != nil {
			return nil, err
		}
		dst := netip.AddrPortFrom(addr, p)
		if network == "udp" {
			return st.DialUDP(dst)
		}
		return st.DialTCP(ctx, dst)
	}
}
