package dialproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, leakcheck.Config{Markers: []string{"interlink-k8s-mesh/dialproxy.", "interlink-k8s-mesh/relay."}})
}

// setup serves an HTTP backend and the proxy on loopback; the proxy's Dial knows one name,
// "web.local", and records what it was asked.
func setup(t *testing.T) (proxyAddr string, asked func() []string) {
	t.Helper()
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend %s %s", r.Method, r.URL.Path)
	}), ReadHeaderTimeout: 5 * time.Second}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(bln)
	t.Cleanup(func() { backend.Close() })

	var mu sync.Mutex
	var seen []string
	p, err := New(Config{Dial: func(ctx context.Context, address string) (net.Conn, error) {
		mu.Lock()
		seen = append(seen, address)
		mu.Unlock()
		host, _, err := HostPort(address)
		if err != nil || host != "web.local" {
			return nil, errors.New("no such host")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", bln.Addr().String())
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

func TestPlainHTTP(t *testing.T) {
	addr, asked := setup(t)
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Get("http://web.local/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "backend GET /x" {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	if got := asked(); len(got) != 1 || got[0] != "web.local:80" {
		t.Errorf("dialed %v, want web.local:80", got)
	}
	resp, err = c.Get("http://elsewhere.local/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("unknown host: %d, want 502", resp.StatusCode)
	}
}

func TestConnect(t *testing.T) {
	addr, _ := setup(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// The request and the first bytes of the tunnel in one write, as eager clients send them.
	fmt.Fprint(c, "CONNECT web.local:443 HTTP/1.1\r\nHost: web.local:443\r\n\r\nGET /tunnelled HTTP/1.1\r\nHost: web.local\r\nConnection: close\r\n\r\n")
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.Contains(line, " 200 ") {
		t.Fatalf("CONNECT answer %q, %v", line, err)
	}
	for l := ""; l != "\r\n"; {
		if l, err = r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	rest, err := io.ReadAll(r)
	if err != nil || !strings.HasSuffix(string(rest), "backend GET /tunnelled") {
		t.Fatalf("through the tunnel: %q, %v", rest, err)
	}
}

func TestRefusals(t *testing.T) {
	addr, _ := setup(t)
	for name, req := range map[string]string{
		"origin-form":     "GET /x HTTP/1.1\r\nHost: web.local\r\n\r\n",
		"connect no port": "CONNECT web.local HTTP/1.1\r\nHost: web.local\r\n\r\n",
		"connect unknown": "CONNECT other.local:443 HTTP/1.1\r\nHost: other.local:443\r\n\r\n",
		"https absolute":  "GET https://web.local/ HTTP/1.1\r\nHost: web.local\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, req)
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || strings.Contains(line, " 200 ") {
				t.Fatalf("answer %q, %v; want a refusal", line, err)
			}
		})
	}
}

// Serve's end closes the tunnels in progress: the client's end closes only after Serve
// returned, so a tunnel left open would hold Serve (and TestMain finds no goroutine left).
func TestServeEndClosesTunnels(t *testing.T) {
	var c net.Conn
	t.Cleanup(func() {
		if c != nil {
			c.Close()
		}
	})
	addr, _ := setup(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "CONNECT web.local:80 HTTP/1.1\r\nHost: web.local:80\r\n\r\n")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.Contains(line, " 200 ") {
		t.Fatalf("%q, %v", line, err)
	}
}

// TestServeListenerClosed: the owner closing the listener is a clean stop, as a cancel is (the
// mesh-agent's shutdown does both at once; a restart test once saw "use of closed network
// connection" returned as a failure).
func TestServeListenerClosed(t *testing.T) {
	p, err := New(Config{Dial: func(ctx context.Context, address string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", address)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(t.Context(), ln) }()
	time.Sleep(50 * time.Millisecond) // Serve is accepting
	ln.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after its listener closed = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its listener closed")
	}
}
