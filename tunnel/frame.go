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
	// bufSize sizes the per-connection read and write buffers: a batch of
	// full-MTU datagrams leaves in a handful of writes.
	bufSize = 64 << 10
	// closeGrace bounds the best-effort close frame written on shutdown.
	closeGrace = time.Second
)

// wsConn carries datagrams over one established WebSocket: one datagram is
// one unfragmented binary message. Reading is single-owner (the session
// loop); writing is serialised by wmu, so data, pings, pongs and close
// frames never interleave inside a frame.
type wsConn struct {
	conn         net.Conn
	maskOut      bool // mask outgoing frames (RFC 6455 client)
	maxMsg       int
	writeTimeout time.Duration

	// Reader state, owned by the goroutine that calls readDatagram.
	br   *bufio.Reader
	rhdr [ws.MaxHeaderSize]byte
	ctrl [125]byte
	rbuf []byte

	wmu  sync.Mutex // guards the fields below
	bw   *bufio.Writer
	whdr [ws.MaxHeaderSize]byte

	// unanswered counts pings sent since the last frame received.
	unanswered atomic.Int32
	closeOnce  sync.Once
	done       chan struct{}
}

func newWSConn(conn net.Conn, br *bufio.Reader, maskOut bool, maxMsg int, writeTimeout time.Duration) *wsConn {
	if br == nil {
		br = bufio.NewReaderSize(conn, bufSize)
	}
	return &wsConn{
		conn:         conn,
		maskOut:      maskOut,
		maxMsg:       maxMsg,
		writeTimeout: writeTimeout,
		br:           br,
		rbuf:         make([]byte, maxMsg),
		bw:           bufio.NewWriterSize(conn, bufSize),
		done:         make(chan struct{}),
	}
}

// readDatagram returns the next datagram. The slice is valid until the next
// call. Control frames are handled inline: pings are answered, a close frame
// is echoed and ends the stream with ErrPeerClosed. Any frame received
// counts as proof of life for the pinger, as in wstunnel.
func (c *wsConn) readDatagram() ([]byte, error) {
	for {
		h, err := ws.ReadHeaderBuffer(c.br, c.rhdr[:])
		if err != nil {
			return nil, err
		}
		c.unanswered.Store(0)
		if h.Rsv != 0 {
			return nil, c.fail(ws.StatusProtocolError, fmt.Errorf("read frame: reserved bits set: %w", ErrProtocol))
		}
		if h.OpCode.IsControl() {
			if err := c.handleControl(h); err != nil {
				return nil, err
			}
			continue
		}
		if h.OpCode != ws.OpBinary && h.OpCode != ws.OpText {
			return nil, c.fail(ws.StatusProtocolError, fmt.Errorf("read frame: opcode %d: %w", h.OpCode, ErrProtocol))
		}
		if !h.Fin {
			return nil, c.fail(ws.StatusProtocolError, fmt.Errorf("read frame: fragmented datagram: %w", ErrProtocol))
		}
		if h.Length > int64(c.maxMsg) {
			return nil, c.fail(ws.StatusMessageTooBig, fmt.Errorf("read frame of %d bytes: %w", h.Length, ErrMessageTooBig))
		}
		p := c.rbuf[:h.Length]
		if _, err := io.ReadFull(c.br, p); err != nil {
			return nil, fmt.Errorf("read datagram: %w", err)
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		return p, nil
	}
}

func (c *wsConn) handleControl(h ws.Header) error {
	if !h.Fin || h.Length > int64(len(c.ctrl)) {
		return c.fail(ws.StatusProtocolError, fmt.Errorf("read control frame: %w", ErrProtocol))
	}
	p := c.ctrl[:h.Length]
	if _, err := io.ReadFull(c.br, p); err != nil {
		return fmt.Errorf("read control frame: %w", err)
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	switch h.OpCode {
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
	default:
		return c.fail(ws.StatusProtocolError, fmt.Errorf("read frame: opcode %d: %w", h.OpCode, ErrProtocol))
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

// serve reads datagrams into deliver until the connection ends, pinging on
// the side. It closes the connection and returns after both loops exit;
// the error says why the session ended.
func (c *wsConn) serve(interval time.Duration, misses int, deliver func([]byte)) error {
	var (
		wg      sync.WaitGroup
		pingErr error
	)
	wg.Go(func() { pingErr = c.pingLoop(interval, misses) })
	var err error
	for {
		p, e := c.readDatagram()
		if e != nil {
			err = e
			break
		}
		deliver(p)
	}
	c.close()
	wg.Wait()
	if pingErr != nil {
		return pingErr
	}
	return err
}
