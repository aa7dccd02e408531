package tunnel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Framing errors. They end a session; the peer is told why with a close frame.
var (
	ErrProtocol      = errors.New("websocket protocol violation")
	ErrMessageTooBig = errors.New("datagram exceeds message size limit")
	ErrPingTimeout   = errors.New("pings unanswered")
	ErrPeerClosed    = errors.New("peer closed the websocket")
)

const (
	// writeBufSize sizes the per-connection write buffer: a whole batch of
	// wireguard-go (128 full-MTU datagrams) leaves in one write.
	writeBufSize = 256 << 10
	// minReadBufSize is the smallest read buffer: one read from the socket
	// brings in up to a batch of full-MTU datagrams for the Bind.
	minReadBufSize = 256 << 10
	// closeGrace bounds the best-effort close frame written on shutdown.
	closeGrace = time.Second
)

// readBufSize is the read buffer for a connection with message limit
// maxMsg: a whole frame must fit, since datagrams are copied out of it
// straight into the buffers wireguard-go hands the Bind.
func readBufSize(maxMsg int) int {
	return max(minReadBufSize, maxMsg+ws.MaxHeaderSize)
}

// errNotBuffered: the next frame is not wholly in the read buffer yet.
var errNotBuffered = errors.New("frame not buffered")

// wsConn carries datagrams over one established WebSocket: one datagram is
// one unfragmented binary message. Reading is single-owner (the session
// loop); writing is serialised by wmu, so data, pings, pongs and close
// frames never interleave inside a frame.
type wsConn struct {
	conn         net.Conn
	maskOut      bool // mask outgoing frames (RFC 6455 client)
	maxMsg       int
	writeTimeout time.Duration

	// Reader state, owned by the goroutine that reads.
	br   *bufio.Reader
	ctrl [125]byte
	pend frameHead // the data frame wholly buffered, if pend.ok

	wmu  sync.Mutex // guards the fields below
	bw   *bufio.Writer
	whdr [ws.MaxHeaderSize]byte

	// unanswered counts pings sent since the last frame received.
	unanswered atomic.Int32
	closeOnce  sync.Once
	done       chan struct{}
}

// newWSConn wraps conn. br, if given, must come from newReader (it may
// hold bytes read past the upgrade).
func newWSConn(conn net.Conn, br *bufio.Reader, maskOut bool, maxMsg int, writeTimeout time.Duration) *wsConn {
	if br == nil {
		br = newReader(conn, maxMsg)
	}
	return &wsConn{
		conn:         conn,
		maskOut:      maskOut,
		maxMsg:       maxMsg,
		writeTimeout: writeTimeout,
		br:           br,
		bw:           bufio.NewWriterSize(conn, writeBufSize),
		done:         make(chan struct{}),
	}
}

// newReader returns the read buffer of a connection with message limit
// maxMsg.
func newReader(r io.Reader, maxMsg int) *bufio.Reader {
	return bufio.NewReaderSize(r, readBufSize(maxMsg))
}

// frameHead is a parsed frame header.
type frameHead struct {
	ok     bool // parsed (for pend: a data frame is wholly buffered)
	fin    bool
	rsv    byte
	op     ws.OpCode
	masked bool
	mask   [4]byte
	hdrLen int
	length int64
}

// parseHead parses the frame header at the start of p; ok is false while
// p holds only part of it.
func parseHead(p []byte) (frameHead, error) {
	var h frameHead
	if len(p) < 2 {
		return h, nil
	}
	h.fin = p[0]&0x80 != 0
	h.rsv = (p[0] >> 4) & 7
	h.op = ws.OpCode(p[0] & 0x0f)
	h.masked = p[1]&0x80 != 0
	l7 := p[1] & 0x7f
	h.hdrLen = 2
	switch l7 {
	case 126:
		h.hdrLen += 2
	case 127:
		h.hdrLen += 8
	}
	if h.masked {
		h.hdrLen += 4
	}
	if len(p) < h.hdrLen {
		return h, nil
	}
	switch l7 {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(p[2:]))
	case 127:
		u := binary.BigEndian.Uint64(p[2:])
		if u>>63 != 0 {
			return h, fmt.Errorf("read frame: length with the high bit set: %w", ErrProtocol)
		}
		h.length = int64(u)
	default:
		h.length = int64(l7)
	}
	if h.masked {
		copy(h.mask[:], p[h.hdrLen-4:h.hdrLen])
	}
	h.ok = true
	return h, nil
}

// peek returns the next n bytes without consuming them. Without block it
// never reads from the connection and fails with errNotBuffered. A stream
// that ends inside a frame is io.ErrUnexpectedEOF.
func (c *wsConn) peek(n int, block bool) ([]byte, error) {
	if !block && c.br.Buffered() < n {
		return nil, errNotBuffered
	}
	p, err := c.br.Peek(n)
	if err != nil {
		if errors.Is(err, io.EOF) && len(p) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return p, nil
}

// nextDatagram makes the next data frame wholly buffered (c.pend) and
// reports whether it is. Control frames on the way are handled: pings are
// answered, a close frame is echoed and ends the stream with ErrPeerClosed.
// Any frame received counts as proof of life for the pinger, as in
// wstunnel. Without block it only looks at what is already buffered.
func (c *wsConn) nextDatagram(block bool) (bool, error) {
	if c.pend.ok {
		return true, nil
	}
	for {
		p, err := c.peek(2, block)
		if err == nil {
			h, _ := parseHead(p)
			p, err = c.peek(h.hdrLen, block)
		}
		if err == errNotBuffered {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		h, err := parseHead(p)
		if err != nil {
			return false, c.fail(ws.StatusProtocolError, err)
		}
		c.unanswered.Store(0)
		if err := c.check(h); err != nil {
			return false, err
		}
		total := h.hdrLen + int(h.length)
		p, err = c.peek(total, block)
		if err == errNotBuffered {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read datagram: %w", err)
		}
		if !h.op.IsControl() {
			c.pend = h
			return true, nil
		}
		body := c.ctrl[:copy(c.ctrl[:], p[h.hdrLen:])]
		if _, err := c.br.Discard(total); err != nil {
			return false, err
		}
		if h.masked {
			ws.Cipher(body, h.mask, 0)
		}
		if err := c.handleControl(h.op, body); err != nil {
			return false, err
		}
	}
}

// check refuses what a datagram stream must not carry.
func (c *wsConn) check(h frameHead) error {
	switch {
	case h.rsv != 0:
		return c.fail(ws.StatusProtocolError, fmt.Errorf("read frame: reserved bits set: %w", ErrProtocol))
	case h.op.IsControl():
		if !h.fin || h.length > int64(len(c.ctrl)) {
			return c.fail(ws.StatusProtocolError, fmt.Errorf("read control frame: %w", ErrProtocol))
		}
		if h.op != ws.OpPing && h.op != ws.OpPong && h.op != ws.OpClose {
			return c.fail(ws.StatusProtocolError, fmt.Errorf("read frame: opcode %d: %w", h.op, ErrProtocol))
		}
	case h.op != ws.OpBinary && h.op != ws.OpText:
		return c.fail(ws.StatusProtocolError, fmt.Errorf("read frame: opcode %d: %w", h.op, ErrProtocol))
	case !h.fin:
		return c.fail(ws.StatusProtocolError, fmt.Errorf("read frame: fragmented datagram: %w", ErrProtocol))
	case h.length > int64(c.maxMsg):
		return c.fail(ws.StatusMessageTooBig, fmt.Errorf("read frame of %d bytes: %w", h.length, ErrMessageTooBig))
	}
	return nil
}

// take copies the pending datagram (see nextDatagram) into dst, unmasked,
// and consumes it. It returns the datagram's size, or -1 when it does not
// fit dst (it is consumed all the same).
func (c *wsConn) take(dst []byte) int {
	h := c.pend
	c.pend.ok = false
	total := h.hdrLen + int(h.length)
	p, _ := c.br.Peek(total) // buffered: cannot fail
	n := -1
	if int(h.length) <= len(dst) {
		n = copy(dst, p[h.hdrLen:])
		if h.masked {
			ws.Cipher(dst[:n], h.mask, 0)
		}
	}
	_, _ = c.br.Discard(total)
	return n
}

// readDatagram returns the next datagram, unmasked in the read buffer:
// the slice is valid until the next read.
func (c *wsConn) readDatagram() ([]byte, error) {
	if _, err := c.nextDatagram(true); err != nil {
		return nil, err
	}
	h := c.pend
	c.pend.ok = false
	total := h.hdrLen + int(h.length)
	p, _ := c.br.Peek(total)
	p = p[h.hdrLen:]
	if h.masked {
		ws.Cipher(p, h.mask, 0)
	}
	_, _ = c.br.Discard(total)
	return p, nil
}

func (c *wsConn) handleControl(op ws.OpCode, p []byte) error {
	switch op {
	case ws.OpPing:
		if err := c.writeControl(ws.OpPong, p); err != nil {
			return fmt.Errorf("answer ping: %w", err)
		}
	case ws.OpPong:
		// Proof of life, already counted.
	case ws.OpClose:
		// Echo the status code, as RFC 6455 asks, then stop.
		var body []byte
		if len(p) >= 2 {
			body = p[:2]
		}
		_ = c.writeControl(ws.OpClose, body)
		return ErrPeerClosed
	}
	return nil
}

// fail tells the peer why the session ends, best effort, and returns err.
func (c *wsConn) fail(code ws.StatusCode, err error) error {
	var body [2]byte
	binary.BigEndian.PutUint16(body[:], uint16(code))
	if c.wmu.TryLock() {
		_ = c.conn.SetWriteDeadline(time.Now().Add(closeGrace))
		if c.writeFrameLocked(ws.OpClose, body[:]) == nil {
			_ = c.bw.Flush()
		}
		c.wmu.Unlock()
	}
	return err
}

// writeBatch writes each buffer as one binary message and flushes once.
// It returns after the bytes reached the kernel (or failed), so the caller
// may reuse bufs at once.
func (c *wsConn) writeBatch(bufs [][]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return fmt.Errorf("write datagrams: %w", err)
	}
	for _, b := range bufs {
		if err := c.writeFrameLocked(ws.OpBinary, b); err != nil {
			return fmt.Errorf("write datagrams: %w", err)
		}
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("write datagrams: %w", err)
	}
	return nil
}

func (c *wsConn) writeControl(op ws.OpCode, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return err
	}
	if err := c.writeFrameLocked(op, p); err != nil {
		return err
	}
	return c.bw.Flush()
}

// writeFrameLocked appends one final frame to bw, masking the payload into
// bw's own buffer so the caller's bytes are never modified.
func (c *wsConn) writeFrameLocked(op ws.OpCode, p []byte) error {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}
	if c.maskOut {
		h.Masked = true
		h.Mask = ws.NewMask()
	}
	if err := ws.WriteHeaderBuffer(c.bw, h, c.whdr[:]); err != nil {
		return err
	}
	if !h.Masked {
		_, err := c.bw.Write(p)
		return err
	}
	for off := 0; off < len(p); {
		if c.bw.Available() == 0 {
			if err := c.bw.Flush(); err != nil {
				return err
			}
		}
		chunk := c.bw.AvailableBuffer()
		n := min(cap(chunk), len(p)-off)
		chunk = append(chunk, p[off:off+n]...)
		ws.Cipher(chunk, h.Mask, off)
		if _, err := c.bw.Write(chunk); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// pingLoop pings every interval and closes the connection once misses
// pings in a row went unanswered. It returns when the connection closes.
func (c *wsConn) pingLoop(interval time.Duration, misses int) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return nil
		case <-t.C:
		}
		if int(c.unanswered.Load()) >= misses {
			c.fail(ws.StatusGoingAway, nil)
			c.close()
			return ErrPingTimeout
		}
		c.unanswered.Add(1)
		if err := c.writeControl(ws.OpPing, nil); err != nil {
			c.close()
			return fmt.Errorf("send ping: %w", err)
		}
	}
}

// shutdown says goodbye with code, best effort, and closes the connection.
func (c *wsConn) shutdown(code ws.StatusCode) {
	c.fail(code, nil)
	c.close()
}

// close closes the connection; it unblocks the reader and any writer.
func (c *wsConn) close() {
	c.closeOnce.Do(func() {
		close(c.done)
		_ = c.conn.Close()
	})
}

// serve waits for each datagram to be wholly buffered and calls deliver,
// which must consume it (take or readDatagram), pinging on the side, until
// the connection ends. It closes the connection and returns after both
// loops exit; the error says why the session ended.
func (c *wsConn) serve(interval time.Duration, misses int, deliver func(*wsConn) error) error {
	var (
		wg      sync.WaitGroup
		pingErr error
	)
	wg.Go(func() { pingErr = c.pingLoop(interval, misses) })
	var err error
	for {
		if _, err = c.nextDatagram(true); err != nil {
			break
		}
		if err = deliver(c); err != nil {
			break
		}
	}
	c.close()
	wg.Wait()
	if pingErr != nil {
		return pingErr
	}
	return err
}
