package tunnel

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
)

var _ conn.Endpoint = (*endpoint)(nil)

// endpoint is the conn.Endpoint of both Binds. Its address is only a label
// for wireguard-go (UAPI "endpoint=", mac2 cookies): where a datagram goes
// is decided by the transport, never by the address.
type endpoint struct {
	dst   netip.AddrPort
	bytes []byte // DstToBytes, computed once so the hot path never allocates
}

func newEndpoint(dst netip.AddrPort) *endpoint {
	b, _ := dst.MarshalBinary()
	return &endpoint{dst: dst, bytes: b}
}

func (*endpoint) ClearSrc()             {}
func (*endpoint) SrcToString() string   { return "" }
func (*endpoint) SrcIP() netip.Addr     { return netip.Addr{} }
func (e *endpoint) DstToString() string { return e.dst.String() }
func (e *endpoint) DstToBytes() []byte  { return e.bytes }
func (e *endpoint) DstIP() netip.Addr   { return e.dst.Addr() }
