package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

const (
	// probePort is where netprobe echoes TCP and UDP, in the offloaded pod and in local pods.
	probePort = 7000
	// probeFlows is the concurrent-flow target through one shadow (IKM_CONFORMANCE_FLOWS for another).
	probeFlows = 10000
	// fdSlack is how many descriptors above its level before an agent may keep after the flows
	// closed (a metrics scrape, a probe in flight): a leak of the held flows is thousands.
	fdSlack = 32
)

// latency is netprobe's distribution, in microseconds.
type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_us"`
	P95 float64 `json:"p95_us"`
	P99 float64 `json:"p99_us"`
}

// holdResult is what `netprobe hold` prints.
type holdResult struct {
	Flows      int     `json:"flows"`
	Opened     int     `json:"opened"`
	Verified   int     `json:"verified"`
	Failed     int     `json:"failed"`
	OpenSec    float64 `json:"open_s"`
	FlowsPerS  float64 `json:"flows_per_s"`
	FirstError string  `json:"first_error"`
}

// probeFigures measures inside the pods, with netprobe (a kubectl exec per request adds about
// 100 ms), what the mesh adds between real pods: round trips over TCP and UDP and TCP flow setup
// from a local client pod to the offloaded pod through the pod's IP (the shadow's), next to the
// same between two local pods on the node's bridge. Then it holds probeFlows concurrent TCP flows
// through the shadow: each must open (its first byte echoed by the offloaded pod), echo again after
// the hold and close, and afterwards both agents' descriptors return to their level before. The
// figures are logged, never asserted; a failed flow or a leak fails the test.
func (m *meshRun) probeFigures(mode, node string, shadow, remote *corev1.Pod) {
	m.t.Helper()
	c := corev1.Container{Name: "netprobe", Image: m.probe, ImagePullPolicy: corev1.PullNever, Args: []string{"serve"}}
	server := m.localPod("probe-server", node, c)
	client := m.localPod("probe-client", node, c)
	direct := net.JoinHostPort(server.Status.PodIP, strconv.Itoa(probePort))
	mesh := net.JoinHostPort(shadow.Status.PodIP, strconv.Itoa(probePort))

	probe := func(limit time.Duration, v any, args ...string) error {
		out, err := m.execFor(limit, m.localKubeconfig(), m.ns, client.Name, "netprobe", append([]string{"netprobe"}, args...)...)
		line := out[max(0, strings.Index(out, "{")):]
		if jerr := json.Unmarshal([]byte(strings.SplitN(line, "\n", 2)[0]), v); jerr != nil {
			return fmt.Errorf("netprobe %v: %v (%v): %s", args, err, jerr, truncate(out, 300))
		}
		if err != nil {
			return fmt.Errorf("netprobe %v: %v: %s", args, err, truncate(out, 300))
		}
		return nil
	}
	type pair struct{ direct, mesh latency }
	measure := func(what string, args ...string) pair {
		var p pair
		for _, to := range []struct {
			addr string
			into *latency
		}{{direct, &p.direct}, {mesh, &p.mesh}} {
			// A retry or two: the first flows after iperf3's runs may meet a full queue.
			var err error
			for try := 0; try < 3; try++ {
				if err = probe(2*time.Minute, to.into, append(args, "-to", to.addr)...); err == nil {
					break
				}
			}
			if err != nil {
				m.t.Fatalf("%s to %s: %v", what, to.addr, err)
			}
		}
		return p
	}
	tcp := measure("TCP round trips", "rtt", "-n", "1000")
	udp := measure("UDP round trips", "rtt", "-n", "1000", "-udp")
	setup := measure("TCP flow setup", "setup", "-n", "200")
	added := func(p pair) string {
		return fmt.Sprintf("%.0f / %.0f µs (between two local pods %.0f / %.0f µs: the mesh adds %.0f µs at the median)",
			p.mesh.P50, p.mesh.P95, p.direct.P50, p.direct.P95, p.mesh.P50-p.direct.P50)
	}
	m.t.Logf("FIGURE in-pod latency between real pods (%s mode, netprobe from a local client pod to the offloaded pod through the shadow's IP, p50 / p95): TCP round trip (64 B, 1,000 on one flow) %s; UDP round trip %s; TCP flow setup (dial to the first echoed byte, 200 in a row) %s",
		mode, added(tcp), added(udp), added(setup))

	flows := probeFlows
	if v, err := strconv.Atoi(os.Getenv("IKM_CONFORMANCE_FLOWS")); err == nil && v > 0 {
		flows = v
	}
	agents := m.findAgents(shadow, remote)
	before := make([]int, len(agents))
	for i, a := range agents {
		n, err := a.fds()
		if err != nil {
			m.t.Fatalf("descriptors of %s: %v", a.comm, err)
		}
		before[i] = n
	}
	peak := newAgentSampler(agents)
	var held holdResult
	err := probe(5*time.Minute, &held, "hold", "-to", mesh, "-flows", strconv.Itoa(flows), "-parallel", "64", "-hold", "5s", "-timeout", "4m")
	peaks := peak.stop()
	if err != nil || held.Verified != flows {
		m.t.Fatalf("%d concurrent flows through the %s shadow: %v (%+v)", flows, mode, err, held)
	}
	var after []int
	m.poll("agents' descriptors back to their level before the flows", 60*time.Second, func(context.Context) (bool, string) {
		after = after[:0]
		for i, a := range agents {
			n, err := a.fds()
			if err != nil {
				return false, err.Error()
			}
			after = append(after, n)
			if n > before[i]+fdSlack {
				return false, fmt.Sprintf("%s has %d descriptors, %d before the flows", a.comm, n, before[i])
			}
		}
		return true, ""
	})
	m.t.Logf("PROVEN %d concurrent TCP flows through one %s shadow to the offloaded pod: all opened in %.1f s (%.0f flows/s, each a round trip through the mesh), held 5 s, each echoed again, closed, none left: descriptors shadow-agent %d → %d, mesh-agent %d → %d; peak while held: %s",
		flows, mode, held.OpenSec, held.FlowsPerS, before[0], after[0], before[1], after[1], peaks)
}

// agentSampler records, every 500 ms until stopped, each agent's highest RSS, memory cgroup use
// and descriptor count.
type agentSampler struct {
	agents []agentProc
	done   chan struct{}
	wg     sync.WaitGroup
	rss    []float64
	cg     []float64
	fd     []int
}

func newAgentSampler(agents []agentProc) *agentSampler {
	s := &agentSampler{agents: agents, done: make(chan struct{}),
		rss: make([]float64, len(agents)), cg: make([]float64, len(agents)), fd: make([]int, len(agents))}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *agentSampler) sample() {
	for i, a := range s.agents {
		if rss, cg, err := a.memory(); err == nil {
			s.rss[i], s.cg[i] = max(s.rss[i], rss), max(s.cg[i], cg)
		}
		if n, err := a.fds(); err == nil {
			s.fd[i] = max(s.fd[i], n)
		}
	}
}

// stop ends the sampling and describes the peaks.
func (s *agentSampler) stop() string {
	close(s.done)
	s.wg.Wait()
	var b []string
	for i, a := range s.agents {
		b = append(b, fmt.Sprintf("%s RSS %.0f MiB, memory cgroup %.0f MiB, %d descriptors", a.comm, s.rss[i], s.cg[i], s.fd[i]))
	}
	return strings.Join(b, "; ")
}
