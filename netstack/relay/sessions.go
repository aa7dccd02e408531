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
	"time"
)

// DefaultMaxSessions bounds the sessions of one Sessions.
const DefaultMaxSessions = 1024

// Sessions turns a listening UDP socket into one datagram session per client address: the
// first datagram of a client dials its upstream (Dial), later ones follow it, and the upstream's
// answers go back to the client from the listening socket. A session ends after Idle without a
// datagram either way. Set the fields, then call Run once.
type Sessions struct {
	// Conn is the listening socket. Run closes it. Required.
	Conn net.PacketConn
	// Dial opens the upstream of a new client's session, a connected datagram connection. It
	// is called on Run's goroutine and should not block long. Required.
	Dial func(ctx context.Context, client netip.AddrPort) (net.Conn, error)
	// Idle ends a session without datagrams either way for this long. Default DefaultIdle.
	Idle time.Duration
	// MaxSessions bounds the sessions at once; the datagrams of new clients beyond it are
	// dropped (counted in Stats). Default DefaultMaxSessions.
	MaxSessions int
	// Logger receives a line per failed dial; nil discards.
	Logger *slog.Logger

	active, dropped, total atomic.Int64
}

// SessionStats counts a Sessions' work.
type SessionStats struct {
	Active, Total, Dropped int64
}

// Stats returns the sessions open now, opened in all, and the datagrams dropped because the
// table was full or the dial failed.
func (s *Sessions) Stats() SessionStats {
	return SessionStats{Active: s.active.Load(), Total: s.total.Load(), Dropped: s.dropped.Load()}
}

type session struct {
	up   net.Conn
	last atomic.Int64 // unix nanoseconds of the last datagram either way
}

// Run serves until ctx is done or the socket fails, then closes the socket and every session
// and returns once their goroutines are gone: nil after ctx was done.
func (s *Sessions) Run(ctx context.Context) error {
	if s.Conn == nil || s.Dial == nil {
		return errors.New("run udp sessions: Conn and Dial are required")
	}
	idle, max := s.Idle, s.MaxSessions
	if idle <= 0 {
		idle = DefaultIdle
	}
	if max <= 0 {
		max = DefaultMaxSessions
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var (
		mu       sync.Mutex
		sessions = map[netip.AddrPort]*session{}
		wg       sync.WaitGroup
	)
	stopped := context.AfterFunc(ctx, func() { s.Conn.Close() })
	defer func() {
		stopped()
		s.Conn.Close()
		mu.Lock()
		for _, ss := range sessions {
			ss.up.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()

	bp := datagramBufs.Get().(*[]byte)
	defer datagramBufs.Put(bp)
	buf := *bp
	for {
		n, from, err := s.Conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read udp: %w", err)
		}
		client, ok := addrPort(from)
		if !ok {
			continue
		}
		mu.Lock()
		ss := sessions[client]
		mu.Unlock()
		if ss == nil {
			if int(s.active.Load()) >= max {
				s.dropped.Add(1)
				continue
			}
			up, err := s.Dial(ctx, client)
			if err != nil {
				s.dropped.Add(1)
				log.Debug("dial udp upstream", "client", client, "err", err)
				continue
			}
			ss = &session{up: up}
			ss.last.Store(time.Now().UnixNano())
			mu.Lock()
			sessions[client] = ss
			mu.Unlock()
			s.active.Add(1)
			s.total.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.answer(ss, from, idle)
				mu.Lock()
				delete(sessions, client)
				mu.Unlock()
				s.active.Add(-1)
			}()
		}
		ss.last.Store(time.Now().UnixNano())
		if _, err := ss.up.Write(buf[:n]); err != nil {
			log.Debug("write udp upstream", "client", client, "err", err)
		}
	}
}

// answer copies the upstream's datagrams back to the client until the session is idle or
// the upstream fails, then closes the upstream.
func (s *Sessions) answer(ss *session, client net.Addr, idle time.Duration) {
	defer ss.up.Close()
	bp := datagramBufs.Get().(*[]byte)
	defer datagramBufs.Put(bp)
	buf := *bp
	for {
		if err := ss.up.SetReadDeadline(time.Unix(0, ss.last.Load()).Add(idle)); err != nil {
			return
		}
		n, err := ss.up.Read(buf)
		if err != nil {
			if isTimeout(err) && time.Since(time.Unix(0, ss.last.Load())) < idle {
				continue // the client spoke meanwhile
			}
			return
		}
		ss.last.Store(time.Now().UnixNano())
		if _, err := s.Conn.WriteTo(buf[:n], client); err != nil {
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}
