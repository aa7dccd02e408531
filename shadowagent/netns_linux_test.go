package shadowagent

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/logtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// Helpers of the namespace tests: servers, clients and processes inside netnstest namespaces,
// and bounded waits.

func b64(k meshspec.Key) string { return base64.StdEncoding.EncodeToString(k[:]) }

// url64 is the prefix as a URL-escaping logger could print it.
func url64(s string) string { return strings.ReplaceAll(s, "-", "%2D") }

func genKey(t *testing.T) meshspec.Key {
	t.Helper()
	k, err := meshspec.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// execIn runs a command in ns and fails t, which may be a subtest, on error. (NS.MustExec fails
// the test that created the namespace.)
func execIn(t *testing.T, ns *netnstest.NS, args ...string) string {
	t.Helper()
	out, err := ns.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitLog waits up to 5s for a log line containing every one of subs.
func waitLog(t *testing.T, logs *logBuffer, subs ...string) {
	t.Helper()
	polltest.Until(t, fmt.Sprintf("a log line with %q", subs), 5*time.Second, func() error {
		if logs.Count(subs...) == 0 {
			return errors.New("not logged")
		}
		return nil
	})

}

// normSave drops iptables-save's comments (dates) and packet counters.
func normSave(s string) string {
	counters := regexp.MustCompile(`\[\d+:\d+\]`)
	var out []string
	for line := range strings.Lines(s) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, counters.ReplaceAllString(line, "[0:0]"))
	}
	return strings.Join(out, "")
}

// startMeshAgent runs the mesh-agent binary in ns with spec until the test ends, and returns
// its log output.
func startMeshAgent(t *testing.T, ns *netnstest.NS, bin string, spec meshspec.Spec) *logBuffer {
	t.Helper()
	logs, _ := startMeshAgentProc(t, ns, bin, spec)
	return logs
}

// startMeshAgentProc is startMeshAgent that also returns a function stopping the mesh-agent
// (SIGTERM, then its exit checked) before the test ends; calling it again does nothing.
func startMeshAgentProc(t *testing.T, ns *netnstest.NS, bin string, spec meshspec.Spec) (*logBuffer, func()) {
	t.Helper()
	data, err := meshspec.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "mesh.json")
	if err := os.WriteFile(config, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out := logtest.NewBuffer(t)
	cmd := exec.Command("ip", "netns", "exec", ns.Name, bin, "--config", config, "--uapi-dir", dir,
		"--listen", "127.0.0.1:9101", "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("mesh-agent exited with %v", err)
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Error("mesh-agent did not stop within 15s of SIGTERM")
			}
		})
	}
	t.Cleanup(stop)
	return out, stop
}

// agentProc is an agent binary started in a namespace.
type agentProc struct {
	cmd  *exec.Cmd
	done chan error
	once sync.Once
	err  error
}

// exited reports whether the process ended, and how.
func (p *agentProc) exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// stop sends SIGTERM and returns the exit (an error after 15 s without one); again, the same.
func (p *agentProc) stop() error {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case p.err = <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			p.err = errors.New("did not stop within 15s of SIGTERM")
		}
	})
	return p.err
}

// startShadowAgentProc runs the shadow-agent binary in ns, its prefix and private key in files,
// until the test ends (or stop).
func startShadowAgentProc(t *testing.T, ns *netnstest.NS, bin, prefix string, key meshspec.Key, args ...string) (*logBuffer, *agentProc) {
	t.Helper()
	dir := t.TempDir()
	for name, v := range map[string]string{"prefix": prefix, "key": b64(key)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := logtest.NewBuffer(t)
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin, "--path-prefix-file", filepath.Join(dir, "prefix"),
		"--private-key-file", filepath.Join(dir, "key"), "--uapi-dir", dir}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("shadow-agent exit: %v", err)
		}
	})
	return out, p
}

// startSecondClient joins the tunnel from ns with a second WireGuard device holding the pod's
// key, as a rescheduled pod that reuses its Secret would. It returns a function that stops it
// and waits for its goroutines.
func startSecondClient(t *testing.T, ns *netnstest.NS, key, peer meshspec.Key, prefix string, log *slog.Logger) func() {
	t.Helper()
	cl, err := tunnel.NewClient(tunnel.ClientConfig{URL: "ws://" + wsAddr.String(), PathPrefix: prefix, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), tunnel.NewClientBind(cl), wgdevice.NewLogger(log))
	// A keepalive every second: a handshake at once, and traffic that keeps claiming the session.
	if err := dev.IpcSet(fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=%s\npersistent_keepalive_interval=1\nallowed_ip=10.7.0.1/32\n",
		hex.EncodeToString(key[:]), hex.EncodeToString(peer[:]), tunnel.DefaultDestination)); err != nil {
		dev.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := ns.Go(func() error { return cl.Run(ctx) }) // Run dials on its own goroutine: from ns
	if err := dev.Up(); err != nil {
		t.Error(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			dev.Close()
			cancel()
			if err := wait(); err != nil {
				t.Errorf("second client: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// serveHTTPIn serves h on addr inside ns until the test ends.
func serveHTTPIn(t *testing.T, ns *netnstest.NS, addr netip.AddrPort, h http.Handler) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr.String()); return }); err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.Serve(ln) })
	t.Cleanup(func() { s.Close(); wg.Wait() })
}

// udpEchoIn echoes datagrams on addr inside ns until the test ends.
func udpEchoIn(t *testing.T, ns *netnstest.NS, addr netip.AddrPort) {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(func() (err error) { c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr)); return }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
		}
	})
	t.Cleanup(func() { c.Close(); wg.Wait() })
}

// dialIn opens a TCP connection from inside ns.
func dialIn(t *testing.T, ns *netnstest.NS, addr netip.AddrPort) net.Conn {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.DialTimeout("tcp", addr.String(), 5*time.Second); return }); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// rawUpgrade performs a valid wstunnel upgrade by hand, from ns, and returns the connection
// after the 101 response.
func rawUpgrade(t *testing.T, ns *netnstest.NS, addr netip.AddrPort, prefix string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialIn(t, ns, addr)
	t.Cleanup(func() { c.Close() })
	br, err := wsUpgrade(c, addr.String(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return c, br
}

// uapiGet asks a UAPI socket for the device state.
func uapiGet(t *testing.T, path string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "get=1\n\n"); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() && sc.Text() != "" {
		b.WriteString(sc.Text() + "\n")
	}
	return b.String()
}

// nsClient is an HTTP client whose connections are made inside a namespace.
type nsClient struct{ c *http.Client }

func nsHTTPClient(ns *netnstest.NS) nsClient {
	return nsClient{&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() (err error) {
				c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, addr)
				return
			})
			return c, err
		},
	}}}
}

func (h nsClient) get(url string) (int, string, error) {
	resp, err := h.c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metricValue finds "name value" in a Prometheus text exposition.
func metricValue(body, name string) (float64, bool) {
	for line := range strings.Lines(body) {
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}
