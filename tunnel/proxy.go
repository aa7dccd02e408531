package tunnel

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// ErrProxy marks a failure of the HTTP proxy the tunnel is dialled through.
var ErrProxy = errors.New("proxy")

// ProxyFromEnvironment picks the proxy for a tunnel server URL (ws:// or wss://) from
// HTTPS_PROXY, HTTP_PROXY and NO_PROXY (or their lower-case forms), read when called: wss:// uses
// HTTPS_PROXY, ws:// HTTP_PROXY. It returns nil for a direct dial, always for loopback addresses
// and localhost.
func ProxyFromEnvironment() func(*url.URL) (*url.URL, error) {
	f := httpproxy.FromEnvironment().ProxyFunc()
	return func(u *url.URL) (*url.URL, error) {
		target := *u
		switch u.Scheme {
		case "wss":
			target.Scheme = "https"
		case "ws":
			target.Scheme = "http"
		}
		return f(&target)
	}
}

// netDial is how a dialer opens its TCP connection.
type netDial = func(ctx context.Context, network, addr string) (net.Conn, error)

// proxyDial returns the NetDial of a dialer that reaches the tunnel server through the proxy the
// function picks for server, and that proxy; nil and nil when it picks none. direct opens the TCP
// connection to the proxy.
func proxyDial(pick func(*url.URL) (*url.URL, error), server *url.URL, direct netDial) (netDial, *url.URL, error) {
	if pick == nil {
		return nil, nil, nil
	}
	proxy, err := pick(server)
	if err != nil {
		return nil, nil, fmt.Errorf("pick proxy for %s: %w", server.Host, err)
	}
	if proxy == nil {
		return nil, nil, nil
	}
	switch proxy.Scheme {
	case "http", "https":
	default:
		return nil, nil, fmt.Errorf("proxy %s: scheme %q not supported (http or https): %w", proxy.Redacted(), proxy.Scheme, ErrConfig)
	}
	proxyAddr := proxy.Host
	if proxy.Port() == "" {
		port := "80"
		if proxy.Scheme == "https" {
			port = "443"
		}
		proxyAddr = net.JoinHostPort(proxy.Hostname(), port)
	}
	var auth string
	if proxy.User != nil {
		pass, _ := proxy.User.Password()
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(proxy.User.Username()+":"+pass))
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := direct(ctx, network, proxyAddr)
		if err != nil {
			return nil, fmt.Errorf("dial %w %s: %w", ErrProxy, proxy.Redacted(), err)
		}
		if proxy.Scheme == "https" {
			// An https:// proxy is verified with the system roots.
			tlsConn := tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS12, ServerName: proxy.Hostname()})
			if err := tlsConn.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, fmt.Errorf("tls to %w %s: %w", ErrProxy, proxy.Redacted(), err)
			}
			c = tlsConn
		}
		if err := connect(ctx, c, addr, auth); err != nil {
			c.Close()
			return nil, fmt.Errorf("%w %s: %w", ErrProxy, proxy.Redacted(), err)
		}
		return c, nil
	}, proxy, nil
}

// connect asks the proxy on c for a tunnel to addr (HTTP CONNECT) and reads its answer. Nothing
// after the answer's header is read: the WebSocket handshake follows on c.
func connect(ctx context.Context, c net.Conn, addr, auth string) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
		defer func() { _ = c.SetDeadline(time.Time{}) }()
	}
	req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		return fmt.Errorf("send connect: %w", err)
	}
	// One byte at a time: a buffered reader could swallow the server's first bytes.
	resp, err := http.ReadResponse(bufio.NewReaderSize(oneByteReader{c}, 16), &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("read connect answer: %w", err)
	}
	// The body is not closed: for a CONNECT it is the tunnel, and closing would drain it.
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("connect %s: %s", addr, resp.Status)
	}
	return nil
}

// oneByteReader reads at most one byte per call.
type oneByteReader struct{ r net.Conn }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}
