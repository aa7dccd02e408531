package usernet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/relay"
)

// Defaults of Config.
const (
	DefaultMTU        = 1280
	DefaultMaxFlows   = 16384
	DefaultMaxPending = 4096
	DefaultBatchSize  = 8
	// DefaultDialTimeout bounds the dial of a TCP flow's upstream; the peer's SYN waits meanwhile.
	DefaultDialTimeout = 10 * time.Second
)

// FlowBuffer is the send and the receive buffer of every TCP flow the stack holds (gVisor's
// default is 1 MiB each); an application may raise its own to 4× with SO_SNDBUF/SO_RCVBUF.
const FlowBuffer = 256 << 10

// queueLen is how many outbound packets the stack may queue for wireguard-go.
const queueLen = 1024

const nicID tcpip.NICID = 1

// Config configures a Stack. The zero value of every optional field selects its default.
type Config struct {
	// Addresses are the stack's own addresses on the mesh (the first one is the source of
	// Stack.DialTCP and Stack.DialUDP). At least one is required.
	Addresses []netip.Addr
	// MTU of the device. Default DefaultMTU.
	MTU int
	// AnyDestination terminates flows to every destination, not only to Addresses: the
	// shadow's end, through which the offloaded pod reaches any local address.
	AnyDestination bool
	// DialTCP opens the upstream of a TCP flow the peer opened from src to dst, before the
	// handshake completes; an error resets the flow. Called on a goroutine of its own; ctx ends
	// after DefaultDialTimeout or when the Stack closes. Nil refuses every flow.
	DialTCP func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error)
	// DialUDP opens the upstream of a UDP flow, a connected datagram connection; an error
	// drops the datagram. Nil drops every UDP flow.
	DialUDP func(ctx context.Context, src, dst netip.AddrPort) (net.Conn, error)
	// MaxFlows bounds the TCP and UDP flows relayed at once. Default DefaultMaxFlows.
	MaxFlows int
	// MaxPending bounds the TCP handshakes waiting for their upstream. Default
	// DefaultMaxPending.
	MaxPending int
	// UDPIdle ends a UDP flow without a datagram either way for this long. Default
	// relay.DefaultIdle.
	UDPIdle time.Duration
	// BatchSize is how many packets Read hands wireguard-go at once. Default DefaultBatchSize.
	BatchSize int
	// Logger receives a line per refused or failed flow at debug level; nil discards.
	Logger *slog.Logger
}

// Stack is a gVisor network stack behind a tun.Device. Build it with New; wireguard-go closes
// it when its device closes.
type Stack struct {
	cfg    Config
	log    *slog.Logger
	ep     *channel.Endpoint
	st     *stack.Stack
	events chan tun.Event
	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool                   // guarded by mu
	conns  map[io.Closer]struct{} // open flow ends, guarded by mu
	wg     sync.WaitGroup         // flow goroutines
	once   sync.Once

	tcpActive, udpActive, tcpTotal, udpTotal, refused, overLimit atomic.Int64
}

var _ tun.Device = (*Stack)(nil)

// New builds the stack with its addresses and a default route to wireguard-go.
func New(cfg Config) (*Stack, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("new user-space stack: no address")
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 576 || cfg.MTU > 65535 {
		return nil, fmt.Errorf("new user-space stack: mtu %d is outside 576..65535", cfg.MTU)
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.UDPIdle <= 0 {
		cfg.UDPIdle = relay.DefaultIdle
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		// Not HandleLocal: with promiscuous mode every address is local, and the stack would
		// answer its own dials to the peer instead of sending them.
		HandleLocal: false,
	})
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stack{
		cfg: cfg, log: log, st: st,
		ep:     channel.New(queueLen, uint32(cfg.MTU), ""),
		events: make(chan tun.Event, 1),
		ctx:    ctx, cancel: cancel,
		conns: map[io.Closer]struct{}{},
	}
	fail := func(what string, terr tcpip.Error) (*Stack, error) {
		cancel()
		st.Close()
		return nil, fmt.Errorf("new user-space stack: %s: %s", what, terr)
	}
	sack := tcpip.TCPSACKEnabled(true)
	if terr := st.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); terr != nil {
		return fail("enable tcp sack", terr)
	}
	// Each flow's buffers: gVisor's defaults are 1 MiB each way, which a busy flow fills whenever
	// one side of the relay is slower than the other (32 busy flows took each agent past 100 MiB).
	// The mesh's round trip is well under a millisecond, so FlowBuffer still covers a flow's
	// bandwidth-delay product at 1 Gbit/s with 2 ms of queueing.
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: FlowBuffer, Max: 4 * FlowBuffer}
	if terr := st.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); terr != nil {
		return fail("set tcp receive buffer", terr)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: FlowBuffer, Max: 4 * FlowBuffer}
	if terr := st.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); terr != nil {
		return fail("set tcp send buffer", terr)
	}
	if terr := st.CreateNIC(nicID, s.ep); terr != nil {
		return fail("create nic", terr)
	}
	var v4, v6 bool
	for _, a := range cfg.Addresses {
		a = a.Unmap()
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto, v6 = ipv6.ProtocolNumber, true
		} else {
			v4 = true
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix()}
		if terr := st.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); terr != nil {
			return fail("add address "+a.String(), terr)
		}
	}
	if v4 {
		st.AddRoute(tcpip.Route{Destination: header.IPv4EmptySubnet, NIC: nicID})
	}
	if v6 {
		st.AddRoute(tcpip.Route{Destination: header.IPv6EmptySubnet, NIC: nicID})
	}
	if cfg.AnyDestination {
		// Accept packets for any address and answer from it: every flow ends here.
		if terr := st.SetPromiscuousMode(nicID, true); terr != nil {
			return fail("promiscuous mode", terr)
		}
		if terr := st.SetSpoofing(nicID, true); terr != nil {
			return fail("spoofing", terr)
		}
	}
	st.SetTransportProtocolHandler(tcp.ProtocolNumber, tcp.NewForwarder(st, 0, cfg.MaxPending, s.forwardTCP).HandlePacket)
	st.SetTransportProtocolHandler(udp.ProtocolNumber, udp.NewForwarder(st, s.forwardUDP).HandlePacket)
	s.events <- tun.EventUp
	return s, nil
}

// Stats counts the stack's flows.
type Stats struct {
	// TCPActive and UDPActive are the flows relayed now; TCPTotal and UDPTotal all that were.
	TCPActive, UDPActive, TCPTotal, UDPTotal int64
	// Refused are flows whose upstream could not be dialed; OverLimit those beyond MaxFlows.
	Refused, OverLimit int64
}

// Stats returns the flow counters.
func (s *Stack) Stats() Stats {
	return Stats{
		TCPActive: s.tcpActive.Load(), UDPActive: s.udpActive.Load(),
		TCPTotal: s.tcpTotal.Load(), UDPTotal: s.udpTotal.Load(),
		Refused: s.refused.Load(), OverLimit: s.overLimit.Load(),
	}
}

// Name is the device's name as wireguard-go logs it.
func (s *Stack) Name() (string, error) { return "usernet", nil }

// File returns nil: there is no file descriptor behind the device.
func (s *Stack) File() *os.File { return nil }

// Events delivers EventUp once, and is closed by Close.
func (s *Stack) Events() <-chan tun.Event { return s.events }

// MTU returns Config.MTU.
func (s *Stack) MTU() (int, error) { return s.cfg.MTU, nil }

// BatchSize returns Config.BatchSize.
func (s *Stack) BatchSize() int { return s.cfg.BatchSize }

// Read blocks until the stack sends a packet, then returns it and as many more as are queued,
// up to len(bufs), each at bufs[i][offset:]. After Close it returns os.ErrClosed.
func (s *Stack) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	pkt := s.ep.ReadContext(s.ctx)
	if pkt == nil {
		return 0, os.ErrClosed
	}
	n := 0
	for pkt != nil {
		view := pkt.ToView()
		sizes[n], _ = view.Read(bufs[n][offset:])
		view.Release()
		pkt.DecRef()
		n++
		if n == len(bufs) {
			break
		}
		pkt = s.ep.Read()
	}
	return n, nil
}

// Write hands wireguard-go's decrypted packets, each at bufs[i][offset:], to the stack, which
// copies them.
func (s *Stack) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		p := b[offset:]
		if len(p) == 0 {
			continue
		}
		var proto tcpip.NetworkProtocolNumber
		switch p[0] >> 4 {
		case 4:
			proto = header.IPv4ProtocolNumber
		case 6:
			proto = header.IPv6ProtocolNumber
		default:
			continue // not IP: dropped, as a TUN device would
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(p)})
		s.ep.InjectInbound(proto, pkt)
	}
	return len(bufs), nil
}

// Close ends every flow, closes the stack and returns once the flows' goroutines are gone. It
// may be called more than once.
func (s *Stack) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
		s.ep.Close()
		s.st.Close()
		s.st.Wait()
		close(s.events)
	})
	return nil
}

// DialTCP opens a TCP connection from the stack's first address to dst, through the mesh.
func (s *Stack) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	fa, proto := fullAddr(dst)
	// Bound to the first address: a promiscuous stack would not find the connection's
	// answers otherwise.
	c, err := gonet.DialTCPWithBind(ctx, s.st, s.localFor(dst), fa, proto)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialUDP opens a UDP socket of the stack connected to dst, through the mesh.
func (s *Stack) DialUDP(dst netip.AddrPort) (net.Conn, error) {
	fa, proto := fullAddr(dst)
	la := s.localFor(dst)
	c, err := gonet.DialUDP(s.st, &la, &fa, proto)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// localFor is the stack's first address of dst's family, port 0 (any).
func (s *Stack) localFor(dst netip.AddrPort) tcpip.FullAddress {
	for _, a := range s.cfg.Addresses {
		if a.Unmap().Is4() == dst.Addr().Unmap().Is4() {
			la, _ := fullAddr(netip.AddrPortFrom(a, 0))
			return la
		}
	}
	return tcpip.FullAddress{NIC: nicID}
}

func fullAddr(ap netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	a := ap.Addr().Unmap()
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(a.AsSlice()), Port: ap.Port()}, proto
}

func idAddrs(id stack.TransportEndpointID) (src, dst netip.AddrPort) {
	sa, _ := netip.AddrFromSlice(id.RemoteAddress.AsSlice())
	da, _ := netip.AddrFromSlice(id.LocalAddress.AsSlice())
	return netip.AddrPortFrom(sa, id.RemotePort), netip.AddrPortFrom(da, id.LocalPort)
}

// track registers a flow's goroutine and its ends, so Close can end it; false once closed.
func (s *Stack) track(ends ...io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	for _, c := range ends {
		if c != nil {
			s.conns[c] = struct{}{}
		}
	}
	return true
}

func (s *Stack) untrack(ends ...io.Closer) {
	s.mu.Lock()
	for _, c := range ends {
		delete(s.conns, c)
	}
	s.mu.Unlock()
}

// admit counts a new flow against MaxFlows.
func (s *Stack) admit(active *atomic.Int64) bool {
	if s.tcpActive.Load()+s.udpActive.Load() >= int64(s.cfg.MaxFlows) {
		s.overLimit.Add(1)
		return false
	}
	active.Add(1)
	return true
}
