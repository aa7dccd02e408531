package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Server defaults.
const (
	// DefaultUpgradeRate is the sustained upgrade attempts per second
	// allowed from one source address.
	DefaultUpgradeRate = 2.0
	// DefaultUpgradeBurst is how many upgrade attempts one source may make
	// at once.
	DefaultUpgradeBurst = 20
)

// ServerConfig configures a Server. The zero value of every optional field
// selects the documented default.
type ServerConfig struct {
	// PathPrefix is the secret path segment: upgrades must request
	// "/<PathPrefix>/events". Required. It is compared in constant time and
	// never logged.
	PathPrefix string
	// Destination is the only destination clients may name in their JWT
	// (claims r and rp, protocol Udp). Default DefaultDestination.
	Destination netip.AddrPort

	// Addr makes Run listen on this TCP address ("host:port"), with bounded
	// headers and timeouts, logging and counting (Stats.Malformed) the
	// connections that never send a valid request. Empty: Run only manages
	// sessions and the caller mounts the Server as an http.Handler on its
	// own http.Server.
	Addr string
	// CertFile and KeyFile, both or neither, make Run serve wss:// (TLS,
	// HTTP/1.1 only). NewServer reads them.
	CertFile, KeyFile string

	// UpgradeRate is the sustained upgrade attempts per second allowed
	// per source address; negative disables the limit. Default
	// DefaultUpgradeRate.
	UpgradeRate float64
	// UpgradeBurst is the token bucket size. Default DefaultUpgradeBurst.
	UpgradeBurst int

	// MaxMessageSize bounds one datagram; bigger messages end the session
	// with close code 1009. A session's read buffer holds a whole message
	// (256 KiB, or MaxMessageSize plus a frame header if larger). Default
	// DefaultMaxMessageSize.
	MaxMessageSize int
	// QueueLen is how many datagrams received while the Bind is closed
	// (wireguard-go rebinding) wait for it to open again, the oldest
	// dropped first. Default DefaultQueueLen.
	QueueLen int
	// BatchSize is the most datagrams one receive of the Bind returns, 1 to
	// 128: memory of the receiving device against throughput. Default
	// DefaultBatchSize.
	BatchSize int
	// Backlog is how many datagrams sent while no session is up are held
	// for the next session (sent if younger than a second, oldest dropped
	// first); negative disables. Default DefaultBacklog.
	Backlog int
	// PingInterval and PingMisses: ping every PingInterval, end the
	// session after PingMisses pings without any frame in return.
	// Defaults DefaultPingInterval and DefaultPingMisses.
	PingInterval time.Duration
	PingMisses   int
	// WriteTimeout bounds one batch write. Default DefaultWriteTimeout.
	WriteTimeout time.Duration

	// Logger receives session events; nil discards them.
	Logger *slog.Logger
}

// Server accepts wstunnel-compatible WebSocket sessions and hands their
// datagrams to a ServerBind. It serves ONE WireGuard peer (the mesh has
// one remote pod per shadow): at most one session is live, and a newer
// authenticated session replaces the older one at once, so a client that
// reconnects after an ingress reload never waits for the old TCP
// connection to time out. Each session still gets its own endpoint, so
// wireguard-go sees the roam.
type Server struct {
	cfg ServerConfig
	tls *tls.Config // from CertFile and KeyFile; nil: ws://
	// readHeaderTimeout, when set (tests), replaces the own listener's header timeout.
	readHeaderTimeout time.Duration
	common            common
	pathHash          [sha256.Size]byte
	limiter           *rateLimiter
	upgrader          ws.HTTPUpgrader
	inbox             *inbox
	link              *link
	stats             counters

	current atomic.Pointer[serverSession]

	mu       sync.Mutex // guards the fields below
	running  bool
	stopping bool
	ln       net.Listener // served by Run
	pending  net.Listener // opened by Listen, not yet served
	sessions map[*serverSession]struct{}
	nextID   uint64
	handlers sync.WaitGroup // upgrade handlers; Add only under mu while running
}

type serverSession struct {
	id uint64
	c  *wsConn
	ep *endpoint
}

// NewServer validates cfg and returns a Server that refuses upgrades until
// Run is called.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.PathPrefix == "" {
		return nil, fmt.Errorf("empty path prefix: %w", ErrConfig)
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, fmt.Errorf("tls needs both cert and key file: %w", ErrConfig)
	}
	if cfg.CertFile != "" && cfg.Addr == "" {
		return nil, fmt.Errorf("tls needs a listen address: %w", ErrConfig)
	}
	cfg.UpgradeRate = orDefault(cfg.UpgradeRate, DefaultUpgradeRate)
	cfg.UpgradeBurst = orDefault(cfg.UpgradeBurst, DefaultUpgradeBurst)
	if cfg.UpgradeBurst < 0 {
		return nil, fmt.Errorf("upgrade burst %d: %w", cfg.UpgradeBurst, ErrConfig)
	}
	cm, err := newCommon(cfg.Destination, cfg.PingInterval, cfg.PingMisses, cfg.MaxMessageSize, cfg.QueueLen, cfg.BatchSize, cfg.WriteTimeout, cfg.Logger)
	if err != nil {
		return nil, err
	}
	tlsConf, err := serverTLS(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		tls:      tlsConf,
		common:   cm,
		pathHash: sha256.Sum256([]byte("/" + cfg.PathPrefix + "/events")),
		inbox:    newInbox(cm.queueLen, cm.batchSize),
		sessions: make(map[*serverSession]struct{}),
		upgrader: ws.HTTPUpgrader{
			Timeout:  cm.writeTimeout,
			Protocol: func(p string) bool { return p == Subprotocol },
		},
	}
	s.link = newLink(&s.common, &s.stats, orDefault(cfg.Backlog, DefaultBacklog), true)
	if cfg.UpgradeRate > 0 {
		s.limiter = newRateLimiter(cfg.UpgradeRate, cfg.UpgradeBurst, time.Now)
	}
	return s, nil
}

// Run serves until ctx is done, then closes every session and returns once
// all upgrade handlers have exited. It returns nil on cancellation, or the
// listener's error. Run may be called again after it returned.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("run server: already running")
	}
	s.running, s.stopping = true, false
	s.mu.Unlock()

	s.mu.Lock()
	ln := s.pending
	s.pending = nil
	s.mu.Unlock()
	var err error
	if ln == nil {
		if ln, err = s.listen(); err != nil {
			s.stop()
			return err
		}
	}
	var (
		srv     *http.Server
		serveWG sync.WaitGroup
		errc    = make(chan error, 1)
	)
	if ln != nil {
		srv = newTunnelHTTP(s, s.common.log, &s.stats.malformed)
		if s.readHeaderTimeout > 0 {
			srv.ReadHeaderTimeout = s.readHeaderTimeout
		}
		serveWG.Go(func() { errc <- srv.Serve(ln) })
		s.mu.Lock()
		s.ln = ln
		s.mu.Unlock()
		s.common.log.Info("tunnel server listening", "addr", ln.Addr().String(), "tls", s.tls != nil)
	}
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
		err = fmt.Errorf("serve tunnel: %w", err)
	}
	if srv != nil {
		_ = srv.Close() // closes the listener and connections not yet hijacked
	}
	serveWG.Wait()
	s.stop()
	return err
}

// Listen opens the own listener (ServerConfig.Addr) now, so that a taken port fails before the
// caller starts anything else; the next Run serves it. Without Listen, Run opens it. A caller
// that calls Listen must call Run, which closes the listener when it returns.
func (s *Server) Listen() error {
	if s.cfg.Addr == "" {
		return fmt.Errorf("listen: no address: %w", ErrConfig)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running || s.pending != nil {
		return errors.New("listen: already listening")
	}
	ln, err := s.listen()
	if err != nil {
		return err
	}
	s.pending = ln
	return nil
}

func (s *Server) listen() (net.Listener, error) {
	if s.cfg.Addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	if s.tls == nil {
		return ln, nil
	}
	return tls.NewListener(ln, s.tls), nil
}

// serverTLS loads the key pair of a wss:// listener, or returns nil without one.
func serverTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load tls key pair: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"}, // WebSocket upgrades need HTTP/1.1
	}, nil
}

// stop refuses new sessions, closes the live ones and waits for their
// handlers.
func (s *Server) stop() {
	s.mu.Lock()
	s.stopping = true
	live := make([]*serverSession, 0, len(s.sessions))
	for ss := range s.sessions {
		live = append(live, ss)
	}
	s.mu.Unlock()
	for _, ss := range live {
		ss.c.shutdown(ws.StatusGoingAway)
	}
	s.handlers.Wait()
	s.mu.Lock()
	s.running = false
	s.ln = nil
	s.mu.Unlock()
}

// ListenAddr returns the address Run listens on, or nil while it does not
// listen (before Run, without Addr, or after Run returned).
func (s *Server) ListenAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// reasonRateLimited is the refusal of a source past its upgrade rate.
const reasonRateLimited = "rate limited"

// ServeHTTP upgrades a wstunnel client request. Every refusal is
// "400 Invalid request", as from wstunnel, and creates no session.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src, _ := netip.ParseAddrPort(r.RemoteAddr)
	if s.limiter != nil && !s.limiter.allow(src.Addr().Unmap()) {
		s.refuse(w, src, reasonRateLimited)
		return
	}
	claims, reason := s.check(r)
	if reason != "" {
		s.refuse(w, src, reason)
		return
	}
	s.mu.Lock()
	if !s.running || s.stopping {
		s.mu.Unlock()
		s.refuse(w, src, "server not running")
		return
	}
	s.nextID++
	id := s.nextID
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	conn, rw, _, err := s.upgrader.Upgrade(r, w)
	if err != nil {
		s.stats.refused.Add(1)
		s.common.log.Info("refused tunnel upgrade", "remote", r.RemoteAddr, "reason", "handshake", "err", err)
		if conn != nil {
			conn.Close()
		}
		return
	}
	ss := &serverSession{id: id, ep: newEndpoint(sessionAddr(src, id))}
	ss.c = newWSConn(conn, carryOver(conn, rw.Reader, s.common.maxMessageSize), false, s.common.maxMessageSize, s.common.writeTimeout)
	if !s.activate(ss) {
		conn.Close()
		return
	}
	s.common.log.Info("tunnel session up", "session", id, "remote", r.RemoteAddr, "tunnel_id", claims.ID)
	start := time.Now()
	err = ss.c.serve(s.common.pingInterval, s.common.pingMisses, func(c *wsConn) error {
		return s.inbox.deliver(c, ss.ep, &s.stats.rx)
	})
	s.deactivate(ss)
	s.common.log.Info("tunnel session down", "session", id, "remote", r.RemoteAddr,
		"duration", time.Since(start).Round(time.Millisecond), "reason", sessionEnd(err))
}

// check validates an upgrade request and returns its claims, or why it is
// refused. It never echoes the path or the token.
func (s *Server) check(r *http.Request) (Claims, string) {
	pathHash := sha256.Sum256([]byte(r.URL.Path))
	switch {
	case r.Method != http.MethodGet || r.ProtoMajor != 1 || r.ProtoMinor < 1:
		return Claims{}, "not an HTTP/1.1 GET"
	case subtle.ConstantTimeCompare(pathHash[:], s.pathHash[:]) != 1:
		return Claims{}, "wrong path"
	case !headerHasToken(r.Header, "Upgrade", "websocket"),
		!headerHasToken(r.Header, "Connection", "upgrade"),
		r.Header.Get("Sec-WebSocket-Version") != "13",
		len(r.Header.Get("Sec-WebSocket-Key")) != 24:
		return Claims{}, "not a websocket upgrade"
	}
	tok, _, err := ParseProtocols(r.Header.Values("Sec-WebSocket-Protocol"))
	if err != nil {
		return Claims{}, "no bearer token"
	}
	c, err := ParseToken(tok)
	if err != nil {
		return Claims{}, "malformed token"
	}
	if c.Protocol != ProtocolUDP {
		return Claims{}, "protocol not udp"
	}
	if dst, ok := c.Destination(); !ok || dst != s.common.destination {
		return Claims{}, "destination not allowed"
	}
	return c, ""
}

func (s *Server) refuse(w http.ResponseWriter, src netip.AddrPort, reason string) {
	s.stats.refused.Add(1)
	// Refusals past the rate limit are only counted: logging each would let
	// a flood of upgrades flood the log too.
	level := slog.LevelInfo
	if reason == reasonRateLimited {
		level = slog.LevelDebug
	}
	s.common.log.Log(context.Background(), level, "refused tunnel upgrade", "remote", src.String(), "reason", reason)
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", "15")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = io.WriteString(w, "Invalid request")
}

// activate makes ss the live session and retires the one it replaces.
func (s *Server) activate(ss *serverSession) bool {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return false
	}
	s.sessions[ss] = struct{}{}
	old := s.current.Swap(ss)
	s.link.cur.Store(ss.c)
	s.mu.Unlock()
	s.link.flush(ss.c)
	s.stats.sessions.Add(1)
	if old != nil {
		s.common.log.Info("tunnel session replaced", "old", old.id, "new", ss.id)
		old.c.shutdown(ws.StatusGoingAway)
	}
	return true
}

func (s *Server) deactivate(ss *serverSession) {
	s.mu.Lock()
	delete(s.sessions, ss)
	if s.current.CompareAndSwap(ss, nil) {
		s.link.detach(ss.c)
	}
	s.mu.Unlock()
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return s.stats.snapshot(s.inbox.queue, s.current.Load() != nil)
}

// sessionAddr labels a session's endpoint with the client's address, or
// with the session id when the request came over something else than TCP.
func sessionAddr(src netip.AddrPort, id uint64) netip.AddrPort {
	if src.IsValid() {
		return netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(id))
}

// carryOver returns a reader for the session that first yields whatever
// the HTTP server had already buffered past the upgrade request.
func carryOver(conn net.Conn, br *bufio.Reader, maxMsg int) *bufio.Reader {
	if br == nil || br.Buffered() == 0 {
		return nil // newWSConn makes a fresh, larger reader
	}
	early, _ := br.Peek(br.Buffered())
	return newReader(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), maxMsg)
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func sessionEnd(err error) string {
	switch {
	case err == nil, errors.Is(err, ErrPeerClosed):
		return "closed by peer"
	case errors.Is(err, net.ErrClosed):
		return "closed locally"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection lost"
	default:
		return err.Error()
	}
}
