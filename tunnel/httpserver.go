package tunnel

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the tunnel's HTTP server. An upgrade request is a few hundred bytes.
const (
	tunnelReadHeaderTimeout = 10 * time.Second
	tunnelIdleTimeout       = 60 * time.Second
	tunnelMaxHeaderBytes    = 16 << 10
)

// tunnelHTTP is the HTTP server of a Server's own listener (ServerConfig.Addr). It hands every request to the
// tunnel's handler, and reports what net/http alone would answer with a silent 400: a
// connection that sent bytes but never a request the handler saw (garbage, a truncated or too
// slow request, an oversized header).
type tunnelHTTP struct {
	log       *slog.Logger
	malformed *atomic.Uint64

	mu    sync.Mutex
	conns map[net.Conn]*connSeen // open, not hijacked
}

// connSeen is what became of one connection: bytes arrived (active), a request reached the
// handler (handled).
type connSeen struct {
	remote          string
	active, handled atomic.Bool
}

type connSeenKey struct{}

// newTunnelHTTP serves h, counting into malformed the connections that never made a request h saw.
func newTunnelHTTP(h http.Handler, log *slog.Logger, malformed *atomic.Uint64) *http.Server {
	t := &tunnelHTTP{log: log, malformed: malformed, conns: map[net.Conn]*connSeen{}}
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if cs, ok := r.Context().Value(connSeenKey{}).(*connSeen); ok {
				cs.handled.Store(true)
			}
			h.ServeHTTP(w, r)
		}),
		ConnContext:       t.connContext,
		ConnState:         t.connState,
		ReadHeaderTimeout: tunnelReadHeaderTimeout,
		IdleTimeout:       tunnelIdleTimeout,
		MaxHeaderBytes:    tunnelMaxHeaderBytes,
		// TLS handshake failures and the like; they never quote request paths.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelInfo),
	}
}

// connContext runs before the connection's first ConnState call, on the accepting goroutine.
func (t *tunnelHTTP) connContext(ctx context.Context, c net.Conn) context.Context {
	cs := &connSeen{remote: c.RemoteAddr().String()}
	t.mu.Lock()
	t.conns[c] = cs
	t.mu.Unlock()
	return context.WithValue(ctx, connSeenKey{}, cs)
}

func (t *tunnelHTTP) connState(c net.Conn, st http.ConnState) {
	t.mu.Lock()
	cs := t.conns[c]
	if st == http.StateClosed || st == http.StateHijacked {
		delete(t.conns, c)
	}
	t.mu.Unlock()
	if cs == nil {
		return
	}
	switch st {
	case http.StateActive: // some bytes of a request arrived
		cs.active.Store(true)
	case http.StateClosed:
		if cs.active.Load() && !cs.handled.Load() {
			t.malformed.Add(1)
			t.log.Info("refused tunnel connection", "remote", cs.remote,
				"reason", "no valid HTTP request (malformed, truncated, too slow or too large)")
		}
	}
}
