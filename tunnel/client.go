package tunnel

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Client defaults.
const (
	// DefaultMinBackoff is the first wait after a failed dial.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff caps the wait between dials.
	DefaultMaxBackoff = 10 * time.Second
	// DefaultDialTimeout bounds connect, TLS and upgrade of one dial.
	DefaultDialTimeout = 10 * time.Second
	// stableSession is how long a session must last for the next dial to
	// start at once instead of backing off.
	stableSession = time.Second
)

// ClientConfig configures a Client. The zero value of every optional field
// selects the documented default.
type ClientConfig struct {
	// URL is the server, "ws://host[:port]" or "wss://host[:port]". Its
	// path must be empty or "/": the request path is always
	// "/<PathPrefix>/events", as wstunnel builds it. Required.
	URL string
	// PathPrefix is the secret path segment. Required; never logged.
	PathPrefix string
	// Destination is what the JWT asks the server to reach (claims r, rp).
	// Default DefaultDestination.
	Destination netip.AddrPort
	// Host overrides the Host header (e.g. dialing an ingress by address).
	Host string
	// Proxy picks the HTTP proxy to dial the server through (CONNECT), nil for a direct dial;
	// http:// and https:// proxies, with user:password as Basic authentication. Default: no
	// proxy. ProxyFromEnvironment honours HTTPS_PROXY, HTTP_PROXY and NO_PROXY.
	Proxy func(*url.URL) (*url.URL, error)

	// CAFile holds PEM roots that verify a wss:// server besides the
	// system roots (a private CA, or cert-manager's self-signed issuer).
	// Empty: the system roots alone.
	CAFile string
	// CertFile and KeyFile, both or neither, are a client certificate.
	CertFile, KeyFile string
	// ServerName overrides the name verified in the server certificate. Default: Host's host
	// part when Host is set (an ingress dialed by address serves the host's certificate), else
	// the URL's.
	ServerName string
	// Resolver looks up the server's host and the proxy's, as absolute names (no search list),
	// nil for the system's resolver (the pod's resolv.conf). A mesh pod whose resolv.conf names
	// only the local cluster's DNS, reachable only through the tunnel, resolves the tunnel's host
	// with the remote cluster's DNS instead.
	Resolver *net.Resolver

	// Unmasked sends frames without a masking key, as wstunnel does
	// without --websocket-mask-frame. A default-flag wstunnel server needs
	// it (it does not unmask); RFC 6455 servers refuse it. Default false:
	// masked, as RFC 6455 requires.
	Unmasked bool

	// MinBackoff and MaxBackoff bound the jittered exponential wait
	// between failed dials. Defaults DefaultMinBackoff, DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds one dial. Default DefaultDialTimeout.
	DialTimeout time.Duration

	// MaxMessageSize, QueueLen, BatchSize, Backlog, PingInterval, PingMisses
	// and WriteTimeout are as in ServerConfig, with the same defaults.
	MaxMessageSize int
	BatchSize      int
	Backlog        int
	QueueLen       int
	PingInterval   time.Duration
	PingMisses     int
	WriteTimeout   time.Duration

	// OnSession, if set, is called after each session comes up, before any datagram of it is
	// read. A WireGuard device uses it to start a fresh handshake, since the server behind a new
	// session may have lost its keys (restarted, or served another client meanwhile). It runs on
	// the client's goroutine: it may send through the Bind but must not block for long.
	OnSession func()

	// Logger receives session events; nil discards them.
	Logger *slog.Logger
}

// Client keeps one WebSocket session to a wstunnel-compatible server up,
// re-dialing with jittered exponential backoff. Reconnects are invisible
// to the ClientBind reading from it: datagrams sent while no session is
// up wait in a small backlog (a second at most) or are dropped, as UDP
// would drop them.
type Client struct {
	cfg    ClientConfig
	common common
	url    string
	dialer ws.Dialer
	key    []byte // HS256 key, random per Client like wstunnel's per process
	ep     *endpoint
	inbox  *inbox
	link   *link
	stats  counters

	running atomic.Bool
}

// NewClient validates cfg and loads its TLS files.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse server url: %w", ErrConfig)
	}
	switch {
	case u.Scheme != "ws" && u.Scheme != "wss", u.Host == "":
		return nil, fmt.Errorf("server url needs ws:// or wss:// and a host: %w", ErrConfig)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.User != nil:
		return nil, fmt.Errorf("server url must not carry a path, query or user: %w", ErrConfig)
	case cfg.PathPrefix == "":
		return nil, fmt.Errorf("empty path prefix: %w", ErrConfig)
	case (cfg.CertFile == "") != (cfg.KeyFile == ""):
		return nil, fmt.Errorf("client certificate needs both cert and key file: %w", ErrConfig)
	}
	cfg.MinBackoff = orDefault(cfg.MinBackoff, DefaultMinBackoff)
	cfg.MaxBackoff = orDefault(cfg.MaxBackoff, DefaultMaxBackoff)
	cfg.DialTimeout = orDefault(cfg.DialTimeout, DefaultDialTimeout)
	if cfg.MinBackoff < 0 || cfg.MaxBackoff < cfg.MinBackoff || cfg.DialTimeout < 0 {
		return nil, fmt.Errorf("backoff or dial timeout: %w", ErrConfig)
	}
	cm, err := newCommon(cfg.Destination, cfg.PingInterval, cfg.PingMisses, cfg.MaxMessageSize, cfg.QueueLen, cfg.BatchSize, cfg.WriteTimeout, cfg.Logger)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:    cfg,
		common: cm,
		url:    u.Scheme + "://" + u.Host + "/" + url.PathEscape(cfg.PathPrefix) + "/events",
		key:    make([]byte, 32),
		ep:     newEndpoint(cm.destination),
		inbox:  newInbox(cm.queueLen, cm.batchSize),
	}
	c.link = newLink(&c.common, &c.stats, orDefault(cfg.Backlog, DefaultBacklog), false)
	_, _ = crand.Read(c.key)
	c.dialer = ws.Dialer{
		ReadBufferSize:  4096, // the upgrade answer; the session gets its own reader
		WriteBufferSize: 4096,
		Timeout:         cfg.DialTimeout,
		Host:            cfg.Host,
	}
	direct := (&net.Dialer{}).DialContext
	if cfg.Resolver != nil {
		direct = rootedDial(&net.Dialer{Resolver: cfg.Resolver})
	}
	dial, proxy, err := proxyDial(cfg.Proxy, u, direct)
	if err != nil {
		return nil, err
	}
	switch {
	case proxy != nil:
		c.dialer.NetDial = dial
		cm.log.Info("dialing the tunnel server through a proxy", "server", u.Host, "proxy", proxy.Redacted())
	case cfg.Resolver != nil:
		c.dialer.NetDial = direct
	}
	if u.Scheme == "wss" {
		if c.dialer.TLSConfig, err = clientTLS(cfg); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// rootedDial dials with d, a host name made absolute ("ingress.example." for "ingress.example"):
// d's resolver must not try the local search list of the pod's resolv.conf on its nameservers.
func rootedDial(d *net.Dialer) netDial {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err == nil && !strings.HasSuffix(host, ".") {
			if _, perr := netip.ParseAddr(host); perr != nil {
				addr = net.JoinHostPort(host+".", port)
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}

func clientTLS(cfg ClientConfig) (*tls.Config, error) {
	name := cfg.ServerName
	if name == "" && cfg.Host != "" {
		name = cfg.Host
		if h, _, err := net.SplitHostPort(cfg.Host); err == nil {
			name = h
		}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: name, NextProtos: []string{"http/1.1"}}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca file: %w", err)
		}
		// The file adds to the system roots: an ingress with a public certificate still verifies.
		if tc.RootCAs, err = x509.SystemCertPool(); err != nil {
			tc.RootCAs = x509.NewCertPool()
		}
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read ca file %s: no PEM certificate: %w", cfg.CAFile, ErrConfig)
		}
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Run keeps a session up until ctx is done, then closes it and returns nil
// once every goroutine it started has exited.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return fmt.Errorf("run client: already running")
	}
	defer c.running.Store(false)
	backoff := c.cfg.MinBackoff
	for ctx.Err() == nil {
		wc, err := c.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			c.stats.refused.Add(1)
			if why := certificateRefusal(err); why != "" {
				// Never retried over ws://: the dial waits for a certificate that verifies.
				c.stats.certRefused.Add(1)
				c.common.log.Error("tunnel server's certificate refused: the mesh dials it only over wss:// with a verified chain (system roots and the tunnel CA file)",
					"server", c.dialerHost(), "reason", why, "ca_file", c.cfg.CAFile, "retry_in", backoff)
			} else {
				c.common.log.Warn("tunnel dial failed", "err", err, "retry_in", backoff)
			}
			if !sleep(ctx, jitter(backoff)) {
				break
			}
			backoff = min(2*backoff, c.cfg.MaxBackoff)
			continue
		}
		start := time.Now()
		err = c.serve(ctx, wc)
		lasted := time.Since(start)
		c.common.log.Info("tunnel session down", "duration", lasted.Round(time.Millisecond), "reason", sessionEnd(err))
		if lasted >= stableSession {
			backoff = c.cfg.MinBackoff
			continue // redial at once: the gap is what the reader sees
		}
		if !sleep(ctx, jitter(backoff)) {
			break
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
	return nil
}

// serve runs one session until it ends or ctx is done.
func (c *Client) serve(ctx context.Context, wc *wsConn) error {
	c.stats.sessions.Add(1)
	c.common.log.Info("tunnel session up", "server", c.dialerHost())
	c.link.attach(wc)
	if c.cfg.OnSession != nil {
		c.cfg.OnSession()
	}
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		wc.shutdown(ws.StatusGoingAway)
	})
	err := wc.serve(c.common.pingInterval, c.common.pingMisses, func(wc *wsConn) error {
		return c.inbox.deliver(wc, c.ep, &c.stats.rx)
	})
	if !stop() {
		<-stopped
	}
	c.link.detach(wc)
	return err
}

func (c *Client) dial(ctx context.Context) (*wsConn, error) {
	tok, err := BuildToken(UDPClaims(c.common.destination), c.key)
	if err != nil {
		return nil, err
	}
	d := c.dialer
	d.Protocols = BuildProtocols(tok)
	conn, br, _, err := d.Dial(ctx, c.url)
	if err != nil {
		// The URL carries the secret prefix: name only the host.
		return nil, fmt.Errorf("dial tunnel server %s: %w", c.dialerHost(), err)
	}
	var r *bufio.Reader
	if br != nil {
		early, _ := br.Peek(br.Buffered())
		r = newReader(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), c.common.maxMessageSize)
		ws.PutReader(br)
	}
	return newWSConn(conn, r, !c.cfg.Unmasked, c.common.maxMessageSize, c.common.writeTimeout), nil
}

func (c *Client) dialerHost() string {
	u, _ := url.Parse(c.cfg.URL)
	return u.Host
}

// certificateRefusal says why the server's certificate was refused, or "" when err is not a
// certificate verification failure.
func certificateRefusal(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknown):
		return "signed by an unknown authority (not in the system roots or the tunnel CA file): " + unknown.Error()
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return "expired or not yet valid: " + invalid.Error()
		}
		return "invalid: " + invalid.Error()
	case errors.As(err, &hostname):
		return "issued for another name: " + hostname.Error()
	case errors.As(err, &verify):
		return verify.Error()
	}
	return ""
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return c.stats.snapshot(c.inbox.queue, c.link.active())
}

// jitter returns a wait in [d/2, d]: spread enough that many clients cut
// by the same ingress reload do not redial in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
