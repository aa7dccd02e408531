package tunnel

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/porttest"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/leakcheck"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

const testPrefix = "s3cr3t-pr3fix"

// TestMain fails the run when goroutines of this package, wireguard-go or
// the WebSocket library outlive the tests. Goroutines of the tests' own
// helpers (in _test.go files) are not counted.
func TestMain(m *testing.M) {
	leakcheck.Main(m, leakcheck.Config{
		Markers: []string{
			"interlink-k8s-mesh/tunnel.",
			"golang.zx2c4.com/wireguard/device.",
			"github.com/gobwas/ws",
			"net/http.(*conn).serve",
		},
		IgnoreTestFiles: true,
	})
}

// testLogger writes to the test log at debug level when -v is given.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runner runs a component's Run in the background and stops it on cleanup.
type runner struct {
	cancel context.CancelFunc
	done   chan error
}

// startServer runs s and waits until it listens.
func startServer(t testing.TB, s *Server) *runner {
	t.Helper()
	r := start(t, s.Run)
	polltest.True(t, "server to listen", 5*time.Second, func() bool { return s.ListenAddr() != nil })
	return r
}

func start(t testing.TB, run func(context.Context) error) *runner {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits (bounded) for it to return; idempotent.
func (r *runner) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return within 10s of cancel")
	}
}

// newTestServer returns a Server listening on a fresh loopback address.
func newTestServer(t testing.TB, cfg ServerConfig) (*Server, string) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = porttest.FreeLoopback(t)
	}
	cfg.PathPrefix = orDefault(cfg.PathPrefix, testPrefix)
	cfg.Logger = orDefault(cfg.Logger, testLogger(t))
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, cfg.Addr
}

func newTestClient(t testing.TB, cfg ClientConfig) *Client {
	t.Helper()
	cfg.PathPrefix = orDefault(cfg.PathPrefix, testPrefix)
	cfg.Logger = orDefault(cfg.Logger, testLogger(t))
	cfg.MinBackoff = orDefault(cfg.MinBackoff, 20*time.Millisecond)
	cfg.MaxBackoff = orDefault(cfg.MaxBackoff, 200*time.Millisecond)
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wgPair is two wireguard-go devices on in-memory netstack TUNs, joined by
// our tunnel: 10.7.0.1 behind the Server (shadow side), 10.7.0.2 behind
// the Client (offloaded pod side).
type wgPair struct {
	proxy      *proxy // between client and server, when asked for
	srv        *Server
	srvRun     *runner
	cli        *Client
	cliRun     *runner
	snet, cnet *netstack.Net
	sdev, cdev *device.Device
}

var (
	shadowIP = netip.MustParseAddr("10.7.0.1")
	podIP    = netip.MustParseAddr("10.7.0.2")
)

func newWGPair(t testing.TB, scfg ServerConfig, ccfg ClientConfig, viaProxy bool) *wgPair {
	t.Helper()
	p := &wgPair{}
	var addr string
	p.srv, addr = newTestServer(t, scfg)
	p.srvRun = startServer(t, p.srv)
	if viaProxy {
		p.proxy = newProxy(t, addr)
		addr = p.proxy.addr
	}
	ccfg.URL = "ws://" + addr
	p.cli = newTestClient(t, ccfg)
	p.cliRun = start(t, p.cli.Run)

	skey, ckey := wgKey(t), wgKey(t)
	stun, ctun := mustTUN(t, shadowIP, &p.snet), mustTUN(t, podIP, &p.cnet)
	sbind, cbind := NewServerBind(p.srv), NewClientBind(p.cli)
	p.sdev = device.NewDevice(sbind.TUN(stun), sbind, wgLogger(t, "shadow"))
	p.cdev = device.NewDevice(cbind.TUN(ctun), cbind, wgLogger(t, "pod"))
	t.Cleanup(func() {
		p.cdev.Close()
		p.sdev.Close()
	})
	mustIpc(t, p.sdev, fmt.Sprintf("private_key=%x\nlisten_port=51820\npublic_key=%x\nallowed_ip=%s/32\n",
		skey.Bytes(), ckey.PublicKey().Bytes(), podIP))
	mustIpc(t, p.cdev, fmt.Sprintf("private_key=%x\npublic_key=%x\nendpoint=127.0.0.1:51820\nallowed_ip=%s/32\npersistent_keepalive_interval=25\n",
		ckey.Bytes(), skey.PublicKey().Bytes(), shadowIP))
	for _, d := range []*device.Device{p.sdev, p.cdev} {
		if err := d.Up(); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func wgKey(t testing.TB) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustTUN(t testing.TB, ip netip.Addr, n **netstack.Net) tun.Device {
	t.Helper()
	dev, tnet, err := netstack.CreateNetTUN([]netip.Addr{ip}, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	*n = tnet
	return dev
}

func mustIpc(t testing.TB, d *device.Device, conf string) {
	t.Helper()
	if err := d.IpcSet(conf); err != nil {
		t.Fatal(err)
	}
}

func wgLogger(t testing.TB, name string) *device.Logger {
	if !testing.Verbose() {
		return &device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf}
	}
	var mu sync.Mutex
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		t.Logf(name+": "+format, args...)
	}
	return &device.Logger{Verbosef: device.DiscardLogf, Errorf: logf}
}

// proxy is a TCP relay standing in for an ingress between client and
// server: it can drop every connection (a reload), or silently stop
// forwarding on the ones it has (a dead path that sends no FIN or RST).
type proxy struct {
	t      testing.TB
	addr   string
	target string

	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	frozen []*bool
	wg     sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, addr: porttest.FreeLoopback(t), target: target}
	p.up()
	t.Cleanup(p.cut)
	return p
}

// up starts accepting on the proxy's address.
func (p *proxy) up() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			frozen := new(bool)
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.frozen = append(p.frozen, frozen)
			p.mu.Unlock()
			relay := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						dst.Close()
						return
					}
					p.mu.Lock()
					drop := *frozen
					p.mu.Unlock()
					if drop {
						continue
					}
					if _, err := dst.Write(buf[:n]); err != nil {
						src.Close()
						return
					}
				}
			}
			p.wg.Go(func() { relay(s, c) })
			p.wg.Go(func() { relay(c, s) })
		}
	})
}

// cut stops listening and closes every relayed connection.
func (p *proxy) cut() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns, p.frozen = nil, nil
	p.mu.Unlock()
	p.wg.Wait()
}

// blackhole makes the current connections swallow everything, silently.
func (p *proxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.frozen {
		*f = true
	}
}
