package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/porttest"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/dnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/echotest"
)

// connectProxy is an HTTP proxy on loopback that serves CONNECT only, as egress proxies of
// clusters do. With auth set it answers 407 to requests without that Proxy-Authorization.
type connectProxy struct {
	addr string
	auth string

	mu       sync.Mutex
	connects []string // the targets asked for
}

func newConnectProxy(t testing.TB, auth string) *connectProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{addr: ln.Addr().String(), auth: auth}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Go(func() { p.serve(c, track) })
		}
	})
	return p
}

func (p *connectProxy) serve(c net.Conn, track func(net.Conn)) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if req.Method != http.MethodConnect {
		io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
		return
	}
	p.mu.Lock()
	p.connects = append(p.connects, req.Host)
	p.mu.Unlock()
	if p.auth != "" && req.Header.Get("Proxy-Authorization") != p.auth {
		io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
		return
	}
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
		return
	}
	track(up)
	defer up.Close()
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, br) // what the client sent right after the CONNECT is in br
		up.Close()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}

func (p *connectProxy) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.connects...)
}

func via(proxy string) func(*url.URL) (*url.URL, error) {
	u, err := url.Parse(proxy)
	return func(*url.URL) (*url.URL, error) { return u, err }
}

// TestDevicesThroughConnectProxy runs WireGuard traffic over a tunnel dialled through an HTTP
// proxy that needs Basic authentication.
func TestDevicesThroughConnectProxy(t *testing.T) {
	px := newConnectProxy(t, "Basic bWVzaDpzM2NyM3Q=") // mesh:s3cr3t
	p := newWGPair(t, ServerConfig{}, ClientConfig{Proxy: via("http://mesh:s3cr3t@" + px.addr)}, false)

	ln, err := p.snet.ListenTCPAddrPort(netip.AddrPortFrom(shadowIP, 7000))
	if err != nil {
		t.Fatal(err)
	}
	echotest.TCP(t, ln)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := p.cnet.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(shadowIP, 7000))
	if err != nil {
		t.Fatalf("dial through the mesh: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	payload := bytes.Repeat([]byte("via proxy "), 10000)
	go c.Write(payload)
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo through the proxied tunnel: %v", err)
	}
	server := strings.TrimPrefix(p.cli.cfg.URL, "ws://")
	if asked := px.asked(); len(asked) == 0 || asked[0] != server {
		t.Errorf("proxy was asked for %v, want %s", asked, server)
	}
}

// TestProxyRefusals: what a proxy refuses is an error naming the proxy (without its password)
// and its answer; a proxy of a scheme the client cannot speak is a configuration error.
func TestProxyRefusals(t *testing.T) {
	srv, addr := newTestServer(t, ServerConfig{})
	startServer(t, srv)
	px := newConnectProxy(t, "Basic bWVzaDpzM2NyM3Q=")
	for _, tc := range []struct {
		name, proxy, want string
	}{
		{"no credentials", "http://" + px.addr, "407 Proxy Authentication Required"},
		{"wrong password", "http://mesh:wrong@" + px.addr, "407"},
		{"nothing listening", "http://" + porttest.FreeLoopback(t), "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestClient(t, ClientConfig{URL: "ws://" + addr, Proxy: via(tc.proxy)})
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			wc, err := c.dial(ctx)
			if err == nil {
				wc.close()
				t.Fatal("dial through a refusing proxy succeeded")
			}
			if !errors.Is(err, ErrProxy) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrProxy and %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Errorf("err %v shows the proxy password", err)
			}
		})
	}
	if _, err := NewClient(ClientConfig{URL: "ws://" + addr, PathPrefix: testPrefix, Proxy: via("socks5://127.0.0.1:1080")}); !errors.Is(err, ErrConfig) {
		t.Errorf("socks5 proxy: err = %v, want ErrConfig", err)
	}
}

func TestProxyFromEnvironment(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://egress.example:3128")
	t.Setenv("HTTP_PROXY", "http://plain.example:8080")
	t.Setenv("NO_PROXY", "ingress.internal,.cluster.local")
	for _, k := range []string{"https_proxy", "http_proxy", "no_proxy"} {
		t.Setenv(k, "")
	}
	pick := ProxyFromEnvironment()
	for _, tc := range []struct{ server, want string }{
		{"wss://mesh.example.org", "http://egress.example:3128"},
		{"ws://mesh.example.org", "http://plain.example:8080"},
		{"wss://ingress.internal", ""},
		{"ws://shadow.ns.svc.cluster.local:8080", ""},
		{"ws://127.0.0.1:8080", ""},
	} {
		u, _ := url.Parse(tc.server)
		got, err := pick(u)
		if err != nil {
			t.Fatalf("%s: %v", tc.server, err)
		}
		gs := ""
		if got != nil {
			gs = got.String()
		}
		if gs != tc.want {
			t.Errorf("%s: proxy %q, want %q", tc.server, gs, tc.want)
		}
	}
}

// TestResolver: with a Resolver, the server's host and the proxy's are looked up there, as
// absolute names (the pod's search list is the local cluster's), never through the system's.
func TestResolver(t *testing.T) {
	srv, addr := newTestServer(t, ServerConfig{})
	startServer(t, srv)
	_, port, _ := net.SplitHostPort(addr)
	px := newConnectProxy(t, "")
	_, pxPort, _ := net.SplitHostPort(px.addr)
	dns, dnsAddr := dnstest.Loopback(t, map[string]string{"tunnel.mesh.test.": "127.0.0.1", "proxy.mesh.test.": "127.0.0.1"})
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, dnsAddr.String())
	}}
	dial := func(cfg ClientConfig) error {
		cfg.Resolver = res
		c := newTestClient(t, cfg)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		wc, err := c.dial(ctx)
		if err == nil {
			wc.close()
		}
		return err
	}
	if err := dial(ClientConfig{URL: "ws://tunnel.mesh.test:" + port}); err != nil {
		t.Fatalf("server by name: %v", err)
	}
	if err := dial(ClientConfig{URL: "ws://" + addr, Proxy: via("http://proxy.mesh.test:" + pxPort)}); err != nil {
		t.Fatalf("proxy by name: %v", err)
	}
	if asked := px.asked(); len(asked) != 1 || asked[0] != addr {
		t.Errorf("proxy asked for %v, want [%s]", asked, addr)
	}
	err := dial(ClientConfig{URL: "ws://absent.mesh.test:" + port})
	if err == nil || !strings.Contains(err.Error(), "absent.mesh.test") {
		t.Errorf("an unknown host: err = %v, want a lookup error naming it", err)
	}
	for _, name := range dns.Asked() {
		if !slices.Contains([]string{"tunnel.mesh.test.", "proxy.mesh.test.", "absent.mesh.test."}, name) {
			t.Errorf("the resolver was asked %q: names must be looked up as given, without a search list", name)
		}
	}
	if len(dns.Asked()) < 3 {
		t.Errorf("the resolver was asked only %v", dns.Asked())
	}
}
