// Package dialproxy is an HTTP forward proxy whose upstream connections come from a function:
// CONNECT tunnels (HTTPS, any TCP protocol a client can tunnel) and absolute-URI requests
// (plain HTTP), as clients that honour HTTP_PROXY and HTTPS_PROXY speak to it. The mesh-agent
// in netstack mode serves it on the pod's loopback, so that a workload reaches local Services
// by name without a route or a capability.
//
// It imports neither Kubernetes nor the agents; the Dial function decides where a host goes.
package dialproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/relay"
)

// Config configures a Proxy.
type Config struct {
	// Dial opens a TCP connection to address ("host:port", host a name or an address).
	// Required.
	Dial func(ctx context.Context, address string) (net.Conn, error)
	// DialTimeout bounds a dial. Default 10 s.
	DialTimeout time.Duration
	// Logger receives a line per failed request at debug level; nil discards.
	Logger *slog.Logger
}

// Proxy is the proxy's http.Handler. Build it with New.
type Proxy struct {
	cfg   Config
	log   *slog.Logger
	plain *httputil.ReverseProxy
	tr    *http.Transport

	mu      sync.Mutex
	tunnels map[net.Conn]struct{} // hijacked CONNECT conns, closed by Close
	wg      sync.WaitGroup
	closed  bool
}

// New validates cfg and returns the proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Dial == nil {
		return nil, errors.New("new proxy: Dial is required")
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := &Proxy{cfg: cfg, log: log, tunnels: map[net.Conn]struct{}{}}
	p.tr = &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
			defer cancel()
			return cfg.Dial(ctx, addr)
		},
		Proxy:               nil, // never a proxy of its own
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	p.plain = &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.Out.RequestURI = "" },
		Transport: p.tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Debug("proxy request", "host", r.Host, "err", err)
			http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
	return p, nil
}

// ServeHTTP answers CONNECT with a tunnel and absolute-URI requests by forwarding them; any
// other request is refused with 400.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		p.connect(w, r)
	case r.URL.IsAbs() && r.URL.Scheme == "http":
		r.Header.Del("Proxy-Connection")
		r.Header.Del("Proxy-Authorization")
		p.plain.ServeHTTP(w, r)
	default:
		http.Error(w, "proxy: want CONNECT host:port or an absolute http:// URI", http.StatusBadRequest)
	}
}

func (p *Proxy) connect(w http.ResponseWriter, r *http.Request) {
	addr := r.Host
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		http.Error(w, "proxy: CONNECT wants host:port", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.DialTimeout)
	up, err := p.cfg.Dial(ctx, addr)
	cancel()
	if err != nil {
		p.log.Debug("proxy connect", "host", addr, "err", err)
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "proxy: cannot hijack", http.StatusInternalServerError)
		return
	}
	down, rw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if !p.track(down, up) {
		down.Close()
		up.Close()
		return
	}
	defer p.untrack(down, up)
	if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		down.Close()
		up.Close()
		return
	}
	if n := rw.Reader.Buffered(); n > 0 { // bytes the client sent after its request
		b, _ := rw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			down.Close()
			up.Close()
			return
		}
	}
	relay.Stream(down, up)
}

func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.tunnels[c] = struct{}{}
	}
	p.wg.Add(1)
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	for _, c := range cs {
		delete(p.tunnels, c)
	}
	p.mu.Unlock()
	p.wg.Done()
}

// Close ends every CONNECT tunnel and idle upstream connection, and waits for the tunnels'
// handlers. Stop the http.Server first: Close does not stop new requests.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.tunnels {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.tr.CloseIdleConnections()
}

// Serve serves the proxy on ln until ctx is done or ln is closed, then closes it and its
// tunnels. Either way of stopping is clean: it returns nil.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		srv.Close() // hijacked tunnels are not the server's: Close below ends them
	})
	defer stop()
	err := srv.Serve(ln)
	srv.Close()
	p.Close()
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		// Stopped by ctx, or by its owner closing ln: on a cancel both race (the agent closes its
		// listeners while the AfterFunc above closes the server).
		return nil
	}
	return fmt.Errorf("serve proxy: %w", err)
}

// HostPort splits what a proxy client asked for, for Dial functions: an address or a name
// and the port.
func HostPort(address string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(address)
	return strings.TrimSuffix(host, "."), port, err
}
