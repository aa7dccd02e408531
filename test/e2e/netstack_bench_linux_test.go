package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// benchNetstackPorts are what the netstack shadow relays in the benchmarks: iperf3, the line
// echo, the UDP echo.
const benchNetstackPorts = "5201,7000,9999/udp"

// benchModeMesh is a mesh in one mode on a benchPair, with where the shadow side reaches the
// offloaded pod's services in that mode.
type benchModeMesh struct {
	shadow, mesh *proc
	target       string // host the shadow side dials for the offloaded pod's ports
	iperfBind    string // where iperf3 listens in the offloaded pod
}

func startModeMesh(b *testing.B, mode string, a, c *netnstest.NS) *benchModeMesh {
	k := newMeshKeys(b)
	url := fmt.Sprintf("ws://%s:%d", benchUnderA, tunnelPort)
	m := &benchModeMesh{}
	switch mode {
	case "kernel":
		m.shadow = shadowAgent(b, a, k, benchUnderA.String())
		m.mesh = meshAgent(b, c, k, url, "")
		// In kernel mode the shadow pod routes the mesh address itself; DNAT serves other pods.
		m.target, m.iperfBind = "10.7.0.2", "10.7.0.2"
	case "netstack":
		m.shadow = shadowNetstack(b, a, k, benchUnderA.String(), benchNetstackPorts)
		m.mesh = meshNetstack(b, c, k, url, "", nil, nil, "--dns-listen=none", "--proxy-listen=none")
		// The shadow relays its own IP's declared ports; the workload listens on loopback.
		m.target, m.iperfBind = benchUnderA.String(), "127.0.0.1"
	default:
		b.Fatalf("mode %q", mode)
	}
	polltest.True(b, "mesh-agent ready", 15*time.Second, func() bool { return meshReady(c) })
	return m
}

// iperfTo runs an iperf3 TCP test of d from client to target, the server listening on bind in
// server's namespace, and returns the received throughput in Gbit/s.
func iperfTo(b *testing.B, server *netnstest.NS, bind string, client *netnstest.NS, target string, d time.Duration) float64 {
	b.Helper()
	srv := start(b, server, nil, "iperf3", "-s", "-1", "-B", bind)
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
	for range 50 {
		out, _ = client.Exec("iperf3", "-c", target, "-t", itoa(int(d.Seconds())), "-J")
		res.Error = ""
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			b.Fatalf("iperf3 to %s: %v\n%s", target, err, out)
		}
		if !strings.Contains(res.Error, "refused") && !strings.Contains(res.Error, "reset") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if res.Error != "" || res.End.SumReceived.BitsPerSecond == 0 {
		b.Fatalf("iperf3 to %s measured nothing:\n%s", target, out)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9
}

// flowSetup is the median time from dialing addr to the first echoed line, over n flows made
// one after the other from inside ns.
func flowSetup(ns *netnstest.NS, addr string, n int) (time.Duration, error) {
	var samples []time.Duration
	err := ns.Do(func() error {
		for i := range n {
			start := time.Now()
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return fmt.Errorf("flow %d: %w", i, err)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "%d\n", i)
			_, err = bufio.NewReader(c).ReadString('\n')
			samples = append(samples, time.Since(start))
			c.Close()
			if err != nil {
				return fmt.Errorf("flow %d echo: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	slices.Sort(samples)
	return samples[len(samples)/2], nil
}

// BenchmarkNetstack measures netstack mode against kernel mode on the same namespaces in the
// same run, from the shadow side to the offloaded pod: iperf3 TCP throughput (benchDuration),
// the round trip of small UDP datagrams the mesh adds to the veth's, the time to set up a TCP
// flow (dial to first echoed line, median of 200) and each agent's peak RSS. Run it with
// -benchtime 1x.
func BenchmarkNetstack(b *testing.B) {
	requireRoot(b, "iperf3", "setpriv")
	for _, mode := range []string{"kernel", "netstack"} {
		b.Run(mode, func(b *testing.B) {
			a, c := benchPair(b)
			serveUDPEcho(b, c, ":9999", "offloaded")
			serveLineEcho(b, c, ":7000")
			m := startModeMesh(b, mode, a, c)
			target := func(port int) string { return net.JoinHostPort(m.target, strconv.Itoa(port)) }
			// The first flows wait for the first handshake; setup is measured after it.
			polltest.True(b, "the offloaded pod's echo through the mesh", 20*time.Second, func() bool {
				_, err := udpAsk(a, target(9999), "x", 300*time.Millisecond)
				return err == nil
			})

			rttVeth, err := rtt(a, benchUnderB.String()+":9999", 200)
			if err != nil {
				b.Fatal(err)
			}
			rttMesh, err := rtt(a, target(9999), 200)
			if err != nil {
				b.Fatal(err)
			}
			setup, err := flowSetup(a, target(7000), 200)
			if err != nil {
				b.Fatal(err)
			}
			var gbps float64
			for b.Loop() {
				gbps = iperfTo(b, c, m.iperfBind, a, m.target, benchDuration)
			}
			b.ReportMetric(gbps, "Gbit/s")
			b.ReportMetric(float64((rttMesh - rttVeth).Microseconds()), "added-rtt-us")
			b.ReportMetric(float64(setup.Microseconds()), "flow-setup-us")
			for _, p := range []*proc{m.shadow, m.mesh} {
				if kib, err := p.status("VmHWM"); err == nil {
					b.ReportMetric(float64(kib)/1024, p.name+"-peak-MiB")
				}
			}
		})
	}
}

// fileLimit fails b unless this process may hold n more files (Go raises the soft limit to the
// hard one at start; raising the hard one needs CAP_SYS_RESOURCE).
func fileLimit(b *testing.B, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur < n {
		b.Fatalf("the open file limit is %d, %d flows need %d: raise it (ulimit -n) or lower IKM_FLOWS", lim.Cur, n-1024, n)
	}
}

// lineEchoProcess runs the line echo in ns as a process of its own (this test binary again, see
// TestLineEchoHelper), so that its ends of many flows do not count against this process's
// open file limit.
func lineEchoProcess(b *testing.B, ns *netnstest.NS, addr string) {
	start(b, ns, []string{"IKM_LINE_ECHO=" + addr}, os.Args[0], "-test.run=^TestLineEchoHelper$")
	polltest.True(b, "line echo listening", 10*time.Second, func() bool {
		return ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}) == nil
	})

}

// TestLineEchoHelper is the line echo of lineEchoProcess; it does nothing unless
// IKM_LINE_ECHO names the address to serve, and then serves until killed.
func TestLineEchoHelper(t *testing.T) {
	addr := os.Getenv("IKM_LINE_ECHO")
	if addr == "" {
		t.Skip("a helper process of BenchmarkNetstackFlows")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var open atomic.Int64
	for {
		c, err := ln.Accept()
		if err != nil {
			t.Logf("accept with %d connections open: %v", open.Load(), err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		open.Add(1)
		go func() { echoLines(c); c.Close(); open.Add(-1) }()
	}
}

// BenchmarkNetstackFlows holds many concurrent TCP flows through one netstack shadow (default
// 10,000; IKM_FLOWS to change it, at most 30,000): each is opened from the shadow side, carries
// a line to the offloaded pod's echo and back at once, and stays open until all are; then all
// close.
// It fails on any flow error, when either agent does not count exactly the flows held, or when
// flows or goroutines are left after they closed. It reports the time to open them, the
// agents' RSS while they are held and per flow. Run it with -benchtime 1x.
func BenchmarkNetstackFlows(b *testing.B) {
	requireRoot(b, "setpriv")
	n := 10_000
	if v := os.Getenv("IKM_FLOWS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 30_000 {
			b.Fatalf("IKM_FLOWS=%q: want 1 to 30000", v)
		}
	}
	fileLimit(b, uint64(n+1024)) // the client's ends, in this process
	a, c := benchPair(b)
	lineEchoProcess(b, c, "127.0.0.1:7000")
	m := startModeMesh(b, "netstack", a, c)
	shadowMetrics, meshMetrics := "http://127.0.0.1:9102/metrics", "http://127.0.0.1:9101/metrics"
	inFlows := `shadow_agent_flows_active{direction="in",proto="tcp"}`
	podFlows := `mesh_agent_flows_active{proto="tcp"}`
	addr := net.JoinHostPort(m.target, "7000")
	if _, err := flowSetup(a, addr, 1); err != nil { // the first handshake
		b.Fatal(err)
	}
	baseShadow := metric(b, a, shadowMetrics, "go_goroutines")
	baseMesh := metric(b, c, meshMetrics, "go_goroutines")
	rssBefore := [2]int{}
	for i, p := range []*proc{m.shadow, m.mesh} {
		rssBefore[i], _ = p.status("VmRSS")
	}

	for b.Loop() {
		conns := make([]net.Conn, 0, n)
		closeAll := func() {
			for _, c := range conns {
				c.Close()
			}
		}
		// Each flow carries a line there and back as it opens; the earlier ones stay open.
		start := time.Now()
		err := a.Do(func() error {
			for i := range n {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					return fmt.Errorf("flow %d: %w", i, err)
				}
				conns = append(conns, c)
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := fmt.Fprintf(c, "flow %d\n", i); err != nil {
					return fmt.Errorf("flow %d write: %w", i, err)
				}
				if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != fmt.Sprintf("flow %d\n", i) {
					return fmt.Errorf("flow %d echoed %q, %v", i, line, err)
				}
			}
			return nil
		})
		if err != nil {
			for _, x := range []struct {
				ns  *netnstest.NS
				url string
			}{{a, shadowMetrics}, {c, meshMetrics}} {
				_, body, _ := httpGet(x.ns, x.url, 5*time.Second)
				for line := range strings.SplitSeq(body, "\n") {
					if strings.Contains(line, "flows") || strings.Contains(line, "dropped") || strings.Contains(line, "go_goroutines") {
						if !strings.HasPrefix(line, "#") {
							b.Log(line)
						}
					}
				}
			}
			closeAll()
			b.Fatal(err)
		}
		opened := time.Since(start)
		gotIn, gotPod := metric(b, a, shadowMetrics, inFlows), metric(b, c, meshMetrics, podFlows)
		rss := [2]int{}
		for i, p := range []*proc{m.shadow, m.mesh} {
			rss[i], _ = p.status("VmRSS")
		}
		closeAll()
		if gotIn != float64(n) || gotPod != float64(n) {
			b.Fatalf("flows counted while %d were held: shadow %v, mesh-agent %v", n, gotIn, gotPod)
		}
		polltest.True(b, "every flow to end on both agents", 60*time.Second, func() bool {
			return metric(b, a, shadowMetrics, inFlows) == 0 && metric(b, c, meshMetrics, podFlows) == 0
		})

		polltest.True(b, "goroutines back to where they were", 60*time.Second, func() bool {
			return metric(b, a, shadowMetrics, "go_goroutines") <= baseShadow+5 &&
				metric(b, c, meshMetrics, "go_goroutines") <= baseMesh+5
		})

		b.ReportMetric(float64(n), "flows")
		b.ReportMetric(opened.Seconds(), "open-s")
		b.ReportMetric(float64(n)/opened.Seconds(), "flows/s")
		for i, name := range []string{"shadow", "mesh"} {
			b.ReportMetric(float64(rss[i])/1024, name+"-MiB")
			b.ReportMetric(float64(rss[i]-rssBefore[i])/float64(n), name+"-KiB/flow")
		}
	}
}
