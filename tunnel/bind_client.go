package tunnel

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
)

var _ conn.Bind = (*ClientBind)(nil)

// ClientBind is the conn.Bind of the WireGuard device at the client end:
// it has one peer, the server, behind one endpoint. It only attaches to
// its Client, which owns the WebSocket and outlives every Open/Close cycle
// wireguard-go puts the Bind through.
type ClientBind struct {
	c *Client
}

// NewClientBind returns a Bind over c. c.Run must run for traffic to flow;
// the Bind may be opened before or after Run starts.
func NewClientBind(c *Client) *ClientBind { return &ClientBind{c: c} }

// Open attaches to the Client and returns one ReceiveFunc. It blocks until
// datagrams arrive and fails only with net.ErrClosed, after Close. port is
// reported back unchanged: there is no socket.
func (b *ClientBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	done, err := b.c.inbox.bind.open()
	if err != nil {
		return nil, 0, err
	}
	return []conn.ReceiveFunc{b.c.inbox.receiver(done)}, port, nil
}

// Close detaches; the ReceiveFunc returns net.ErrClosed. The session stays
// up and keeps queueing datagrams for the next Open.
func (b *ClientBind) Close() error {
	b.c.inbox.bind.close()
	return nil
}

// SetMark is a no-op: the WebSocket's TCP socket is not WireGuard's.
func (b *ClientBind) SetMark(uint32) error { return nil }

// Send writes bufs to the server as one flushed batch and returns when the
// bytes left, were copied to the backlog, or were dropped: the caller may
// reuse bufs at once. Transport trouble is not an error (WireGuard
// retransmits; see ClientConfig.Backlog); ep may be any of our endpoints.
func (b *ClientBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	if _, ok := ep.(*endpoint); !ok {
		return conn.ErrWrongEndpointType
	}
	b.c.link.send(bufs)
	return nil
}

// ParseEndpoint accepts any string ("endpoint=" from UAPI) and maps it to
// the server. An ip:port is kept as the endpoint's label.
func (b *ClientBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return newEndpoint(ap), nil
	}
	return b.c.ep, nil
}

// BatchSize is the configured batch (DefaultBatchSize unless set).
func (b *ClientBind) BatchSize() int { return b.c.common.batchSize }

// TUN returns dev wrapped for the device this Bind serves, so that a
// receive waits while wireguard-go holds DefaultInFlight received datagrams
// it has not written to dev yet, and a read from dev waits while it holds
// DefaultOutFlight packets it has not sent yet: each costs it a 64 KiB
// buffer. Give the wrapped device to device.NewDevice; without it only the
// batch size and wireguard-go's queues bound what is in flight.
func (b *ClientBind) TUN(dev tun.Device) tun.Device {
	return b.c.inbox.flight.wrap(dev, b.c.link.flight)
}
