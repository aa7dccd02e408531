// Package e2e runs the product's binaries (mesh-agent, shadow-agent) in network namespaces the
// tests create: real TUN devices, real iptables, nginx as the ingress, iperf3 for figures. Every
// test here needs root and skips with the reason otherwise.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/buildtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/logtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
)

// requireRoot skips unless the test can build namespaces and finds the tools.
func requireRoot(t testing.TB, tools ...string) {
	t.Helper()
	netnstest.Require(t, append([]string{"ip", "iptables"}, tools...)...)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping: needs /dev/net/tun: %v", err)
	}
}

// binary returns the path of a binary built once per test process: "mesh-agent" and
// "shadow-agent" from cmd/, "wireguard-go" from the wireguard-go module this project embeds
// (the reference for throughput: the same WireGuard code over plain UDP).
func binary(t testing.TB, name string) string {
	t.Helper()
	pkg, ok := map[string]string{
		"mesh-agent":   "../../cmd/mesh-agent",
		"shadow-agent": "../../cmd/shadow-agent",
		"wireguard-go": "golang.zx2c4.com/wireguard",
	}[name]
	if !ok {
		t.Fatalf("no binary %q", name)
	}
	return buildtest.Binary(t, pkg)
}

// logBuffer collects a process's output for assertions while a test runs.
type logBuffer = logtest.Buffer

// proc is a binary running in a namespace. ip netns exec execs it, so the PID is the binary's.
type proc struct {
	name string
	cmd  *exec.Cmd
	logs *logBuffer
	done chan struct{}
	err  error
}

// start runs bin with args in ns and stops it (SIGTERM, then SIGKILL after 10 s) when the test
// ends. Its output goes to the returned proc's logs and, on failure, to the test log.
func start(t testing.TB, ns *netnstest.NS, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(bin), logs: &logBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// Should the test binary die (a timeout, a kill), its children die with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name, p.logs.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for the exit; it returns the exit error (nil for a clean exit).
func (p *proc) stop() error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s ignored SIGTERM for 10 s", p.name)
	}
	return p.err
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// status reads a field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
func (p *proc) status(field string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var kib int
			_, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kib)
			return kib, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, p.cmd.Process.Pid)
}

// httpGet fetches url from inside ns and returns the status code and body. The connection is
// made on ns's thread (see httpDo).
func httpGet(ns *netnstest.NS, url string, timeout time.Duration) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	return httpDo(ns, req, timeout)
}

// httpDo sends req from inside ns and returns the status code and body. The connection is made
// on ns's thread: net/http would dial from another goroutine, in another namespace.
func httpDo(ns *netnstest.NS, req *http.Request, timeout time.Duration) (int, string, error) {
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr += ":80"
	}
	var conn net.Conn
	if err := ns.Do(func() (err error) { conn, err = net.DialTimeout("tcp", addr, timeout); return err }); err != nil {
		return 0, "", err
	}
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if conn == nil {
				return nil, errors.New("one connection per request")
			}
			c := conn
			conn = nil
			return c, nil
		},
	}}
	resp, err := c.Do(req)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return 0, "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), err
}

// serveHTTP answers "hello from <name>" on addr inside ns until the test ends.
func serveHTTP(t testing.TB, ns *netnstest.NS, addr, name string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.Name, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from %s, you are %s\n", name, r.RemoteAddr)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
}

// serveUDPEcho echoes datagrams on addr inside ns, prefixed with name, until the test ends.
func serveUDPEcho(t testing.TB, ns *netnstest.NS, addr, name string) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(append([]byte(name+": "), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
}

// udpAsk sends msg to addr from inside ns and returns the first answer.
func udpAsk(ns *netnstest.NS, addr, msg string, timeout time.Duration) (string, error) {
	var answer string
	err := ns.Do(func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		answer = string(buf[:n])
		return nil
	})
	return answer, err
}

// iperf runs an iperf3 TCP test of d from client to server (an address in server's namespace)
// and returns the received throughput in Gbit/s.
func iperf(t testing.TB, server, client *netnstest.NS, addr string, d time.Duration) float64 {
	t.Helper()
	srv := start(t, server, nil, "iperf3", "-s", "-1", "-B", addr)
	defer func() { _ = srv.stop() }()
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	var out string
	for range 50 { // the server needs a moment to listen
		var err error
		out, err = client.Exec("iperf3", "-c", addr, "-t", itoa(int(d.Seconds())), "-J")
		res.Error = ""
		if jerr := json.Unmarshal([]byte(out), &res); jerr != nil {
			t.Fatalf("iperf3 to %s: %v %v\n%s", addr, err, jerr, out)
		}
		if !strings.Contains(res.Error, "refused") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if res.Error != "" || res.End.SumReceived.BitsPerSecond == 0 {
		t.Fatalf("iperf3 to %s measured nothing:\n%s", addr, out)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9
}

// rtt measures the median round trip of small UDP datagrams from client to an echo at addr.
func rtt(client *netnstest.NS, addr string, n int) (time.Duration, error) {
	var samples []time.Duration
	err := client.Do(func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 256)
		for i := range n {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			start := time.Now()
			if _, err := c.Write([]byte(fmt.Sprint(i))); err != nil {
				return err
			}
			if _, err := c.Read(buf); err != nil {
				return fmt.Errorf("echo %d: %w", i, err)
			}
			samples = append(samples, time.Since(start))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(samples) == 0 {
		return 0, errors.New("no samples")
	}
	slices.Sort(samples)
	return samples[len(samples)/2], nil
}

func itoa(i int) string { return fmt.Sprint(i) }
