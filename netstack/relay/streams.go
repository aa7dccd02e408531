package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Defaults of Streams.
const (
	DefaultMaxStreams = 16384
	// DefaultMaxDialing bounds the dials in progress: a burst of accepted connections waits
	// for a slot here rather than as a storm of handshakes upstream, where a full backlog
	// drops them into retransmission back-offs.
	DefaultMaxDialing = 256
)

// Streams relays every connection a listener accepts to an upstream it dials: a port forward.
// A connection whose upstream cannot be dialed is reset; one beyond MaxStreams too. Set the
// fields, then call Run once.
type Streams struct {
	// Listener accepts the connections. Run closes it. Required.
	Listener net.Listener
	// Dial opens the upstream of a connection from client; it runs on the connection's own
	// goroutine. Required.
	Dial func(ctx context.Context, client netip.AddrPort) (net.Conn, error)
	// MaxStreams bounds the streams at once. Default DefaultMaxStreams.
	MaxStreams int
	// MaxDialing bounds the upstream dials in progress; more connections wait for a slot.
	// Default DefaultMaxDialing.
	MaxDialing int
	// Logger receives a line per refused connection at debug level; nil discards.
	Logger *slog.Logger

	active, total, refused atomic.Int64
}

// StreamStats counts a Streams' work.
type StreamStats struct {
	Active, Total, Refused int64
}

// Stats returns the streams open now, relayed in all, and refused (dial failed or over the
// bound).
func (s *Streams) Stats() StreamStats {
	return StreamStats{Active: s.active.Load(), Total: s.total.Load(), Refused: s.refused.Load()}
}

// Run accepts until ctx is done or the listener fails, then closes the listener and every
// stream and returns once their goroutines are gone: nil after ctx was done.
func (s *Streams) Run(ctx context.Context) error {
	if s.Listener == nil || s.Dial == nil {
		return errors.New("run streams: Listener and Dial are required")
	}
	max := s.MaxStreams
	if max <= 0 {
		max = DefaultMaxStreams
	}
	dialing := s.MaxDialing
	if dialing <= 0 {
		dialing = DefaultMaxDialing
	}
	slots := make(chan struct{}, dialing)
	log := s.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	stopped := context.AfterFunc(ctx, func() { s.Listener.Close() })
	defer func() {
		cancel() // no conn is added after this: the loop checks ctx under mu
		stopped()
		s.Listener.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		if s.active.Load() >= int64(max) {
			s.refused.Add(1)
			reset(c)
			continue
		}
		s.active.Add(1)
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			s.active.Add(-1)
			c.Close()
			return nil
		}
		conns[c] = struct{}{}
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer wg.Done()
			defer s.active.Add(-1)
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
			client, _ := addrPort(c.RemoteAddr())
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				c.Close()
				return
			}
			up, err := s.Dial(ctx, client)
			<-slots
			if err != nil {
				s.refused.Add(1)
				log.Debug("dial stream upstream", "client", client, "err", err)
				reset(c)
				return
			}
			s.total.Add(1)
			if _, _, err := Stream(c, up); err != nil {
				log.Debug("stream ended", "client", client, "err", err)
			}
		}()
	}
}

// reset closes c with a reset when it is TCP, so its client sees the refusal at once.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
