package tunnel

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

var _ conn.Bind = (*ServerBind)(nil)

// ServerBind is the conn.Bind of the WireGuard device at the server end.
// Each accepted session has its own endpoint, so wireguard-go roams to the
// newest session when it authenticates a packet from it; sends to any
// endpoint go to the live session (see Server for the one-peer rule).
type ServerBind struct {
	s *Server
}

// NewServerBind returns a Bind over s. s.Run must run for sessions to be
// accepted; the Bind may be opened before or after Run starts.
func NewServerBind(s *Server) *ServerBind { return &ServerBind{s: s} }

// Open attaches to the Server and returns one ReceiveFunc. It blocks until
// datagrams arrive and fails only with net.ErrClosed, after Close. port is
// reported back unchanged: there is no socket.
func (b *ServerBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	done, err := b.s.inbox.bind.open()
	if err != nil {
		return nil, 0, err
	}
	return []conn.ReceiveFunc{b.s.inbox.receiver(done)}, port, nil
}

// Close detaches; the ReceiveFunc returns net.ErrClosed. Sessions stay up
// and keep queueing datagrams for the next Open.
func (b *ServerBind) Close() error {
	b.s.inbox.bind.close()
	return nil
}

// SetMark is a no-op: the WebSocket's TCP socket is not WireGuard's.
func (b *ServerBind) SetMark(uint32) error { return nil }

// Send writes bufs to the live session as one flushed batch and returns
// when the bytes left, were copied to the backlog, or were dropped: the
// caller may reuse bufs at once. No live session is not an error: the
// datagrams wait in the backlog for the next one (ServerConfig.Backlog).
func (b *ServerBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if _, ok := ep.(*endpoint); !ok {
		return conn.ErrWrongEndpointType
	}
	b.s.link.send(bufs)
	return nil
}

// ParseEndpoint accepts an ip:port ("endpoint=" from UAPI). The address is
// only a label: datagrams go to the live session.
func (b *ServerBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return newEndpoint(ap), nil
}

// BatchSize is the configured batch (DefaultBatchSize unless set).
func (b *ServerBind) BatchSize() int { return b.s.common.batchSize }

// TUN returns dev wrapped for the device this Bind serves, so that a
// receive waits while wireguard-go holds DefaultInFlight received datagrams
// it has not written to dev yet, and a read from dev waits while it holds
// DefaultOutFlight packets it has not sent yet: each costs it a 64 KiB
// buffer. Give the wrapped device to device.NewDevice; without it only the
// batch size and wireguard-go's queues bound what is in flight.
func (b *ServerBind) TUN(dev tun.Device) tun.Device {
	return b.s.inbox.flight.wrap(dev, b.s.link.flight)
}
