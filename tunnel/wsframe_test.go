package tunnel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Hand-written RFC 6455 framing, for tests only: it plays the stock
// wstunnel peer, independently of the library the tunnel uses.

const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// rawFrame is one decoded frame as seen on the wire.
type rawFrame struct {
	Fin     bool
	Rsv     byte
	Op      byte
	Masked  bool
	Payload []byte // unmasked
	Wire    []byte // payload as it travelled (still masked if Masked)
}

// encodeFrame builds one frame. A nil mask sends it unmasked.
func encodeFrame(fin bool, rsv, op byte, mask []byte, payload []byte) []byte {
	var b bytes.Buffer
	b0 := rsv<<4 | op
	if fin {
		b0 |= 0x80
	}
	b.WriteByte(b0)
	var m byte
	if mask != nil {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b.WriteByte(m | byte(n))
	case n <= 0xffff:
		b.WriteByte(m | 126)
		binary.Write(&b, binary.BigEndian, uint16(n))
	default:
		b.WriteByte(m | 127)
		binary.Write(&b, binary.BigEndian, uint64(n))
	}
	if mask == nil {
		b.Write(payload)
		return b.Bytes()
	}
	b.Write(mask[:4])
	for i, c := range payload {
		b.WriteByte(c ^ mask[i%4])
	}
	return b.Bytes()
}

// binFrame is a final binary frame, masked with key when key is not nil.
func binFrame(key []byte, p []byte) []byte { return encodeFrame(true, 0, opBinary, key, p) }

// readRawFrame decodes one frame from r.
func readRawFrame(r io.Reader) (rawFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return rawFrame{}, err
	}
	f := rawFrame{Fin: h[0]&0x80 != 0, Rsv: h[0] >> 4 & 7, Op: h[0] & 0xf, Masked: h[1]&0x80 != 0}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x uint16
		if err := binary.Read(r, binary.BigEndian, &x); err != nil {
			return f, err
		}
		n = uint64(x)
	case 127:
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			return f, err
		}
	}
	if n > 1<<24 {
		return f, errors.New("frame too big for a test")
	}
	var key [4]byte
	if f.Masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return f, err
		}
	}
	f.Wire = make([]byte, n)
	if _, err := io.ReadFull(r, f.Wire); err != nil {
		return f, err
	}
	f.Payload = bytes.Clone(f.Wire)
	if f.Masked {
		for i := range f.Payload {
			f.Payload[i] ^= key[i%4]
		}
	}
	return f, nil
}

// readAllFrames decodes every frame in b.
func readAllFrames(b []byte) ([]rawFrame, error) {
	r := bytes.NewReader(b)
	var out []rawFrame
	for r.Len() > 0 {
		f, err := readRawFrame(r)
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
	return out, nil
}

// readDataFrame returns the next data frame from r, skipping pings and
// pongs, within d.
func readDataFrame(c net.Conn, r *bufio.Reader, d time.Duration) (rawFrame, error) {
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	for {
		f, err := readRawFrame(r)
		if err != nil {
			return f, err
		}
		if f.Op == opPing || f.Op == opPong {
			continue
		}
		return f, nil
	}
}

// memConn is a net.Conn over an input buffer and an output buffer, enough
// to drive wsConn without a network.
type memConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func newMemConn(in []byte) *memConn                 { return &memConn{in: bytes.NewReader(in)} }
func (c *memConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

func (f rawFrame) String() string {
	return fmt.Sprintf("{fin=%v op=%d masked=%v len=%d}", f.Fin, f.Op, f.Masked, len(f.Payload))
}
