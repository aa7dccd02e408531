package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

const (
	// benchDuration is how long each iperf3 run lasts, as in the anchor measurement (5 s).
	benchDuration = 5 * time.Second
	// benchRounds is how many times every path is measured, unless IKM_BENCH_ROUNDS says.
	benchRounds = 3
	// debianWireGuard is Debian's wireguard-go (package wireguard-go, v0.0.20220316 in bookworm),
	// close to the release the Python plugin's mesh script downloads.
	debianWireGuard = "/usr/bin/wireguard-go"
)

var (
	benchUnderA = netip.MustParseAddr("192.168.90.1")
	benchUnderB = netip.MustParseAddr("192.168.90.2")
)

// benchPair is two namespaces on a veth: A plays the shadow pod's side, B the offloaded pod's.
func benchPair(b *testing.B) (a, bb *netnstest.NS) {
	a, bb = netnstest.New(b), netnstest.New(b)
	netnstest.Veth(a, "eth0", bb, "eth0")
	a.MustExec("ip", "addr", "add", benchUnderA.String()+"/24", "dev", "eth0")
	bb.MustExec("ip", "addr", "add", benchUnderB.String()+"/24", "dev", "eth0")
	return a, bb
}

// benchPath is one way from the offloaded side (client) to the shadow side (server).
type benchPath struct {
	name           string
	server, client *netnstest.NS
	addr           string
	procs          []*proc // whose peak RSS is reported, receiver first
	mesh           *benchMesh
	gbps           []float64 // one per round
}

// BenchmarkThroughput measures iperf3 TCP from the offloaded side to the shadow side over the
// bare veth, over the wireguard-go binary of the version the agents embed on plain UDP (the
// reference), over Debian's older wireguard-go on plain UDP (the Python plugin's mesh), over the
// mesh (mesh-agent dialing shadow-agent's WebSocket directly), and over the mesh through nginx,
// through Traefik (ws://) and through Traefik over TLS (wss://, the chain verified), all at MTU 1280, the mesh's default. Every path is set up first, each in its own namespaces;
// then each round measures every path once for benchDuration, in a rotating order, so that the
// ratio of a path to the reference compares runs minutes apart at most, under the same load of
// the machine. It logs, per path, the Gbit/s of each round, the ratio to the reference in each
// round and the peak RSS of its processes over all rounds; the mesh paths also report the
// round trip the mesh adds to the veth's and mesh-agent's time to its first handshake. b.N is
// ignored: run it with -benchtime 1x.
func BenchmarkThroughput(b *testing.B) {
	requireRoot(b, "iperf3")
	rounds := benchRounds
	if v := os.Getenv("IKM_BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 20 {
			b.Fatalf("IKM_BENCH_ROUNDS=%q: want 1 to 20", v)
		}
		rounds = n
	}
	var paths []*benchPath
	{
		a, c := benchPair(b)
		paths = append(paths, &benchPath{name: "veth", server: a, client: c, addr: benchUnderA.String()})
	}
	udp := func(name, bin string) {
		a, c := benchPair(b)
		pa, pb := udpWireGuard(b, bin, a, c, benchUnderA, benchUnderB, 1280)
		paths = append(paths, &benchPath{name: name, server: a, client: c, addr: pa.overlay.String(), procs: []*proc{pa.proc, pb.proc}})
	}
	udp("wireguard-go-udp", binary(b, "wireguard-go"))
	if out, err := exec.Command(debianWireGuard, "--version").Output(); err == nil {
		udp("wireguard-go-debian", debianWireGuard)
		b.Logf("wireguard-go-debian: %s", strings.SplitN(string(out), "\n", 2)[0])
	} else {
		b.Logf("wireguard-go-debian: skipped, %s: %v (apt-get install wireguard-go)", debianWireGuard, err)
	}
	type meshVariant struct {
		name    string
		ingress string // "", nginx, traefik or traefik-wss
		env     []string
	}
	variants := []meshVariant{{name: "mesh"}, {name: "mesh-nginx", ingress: "nginx"},
		{name: "mesh-traefik", ingress: "traefik"}, {name: "mesh-traefik-wss", ingress: "traefik-wss"},
		{name: "mesh-inbound", ingress: "inbound"}, {name: "mesh-inbound-traefik", ingress: "inbound-traefik"}}
	// IKM_BENCH_VARIANTS adds direct mesh paths whose agents run with more environment,
	// "name:K=V,K=V;name2:K=V", e.g. "batch8:SHADOW_BATCH_SIZE=8,MESH_AGENT_BATCH_SIZE=8".
	for v := range strings.SplitSeq(os.Getenv("IKM_BENCH_VARIANTS"), ";") {
		if v == "" {
			continue
		}
		name, env, ok := strings.Cut(v, ":")
		if !ok || name == "" {
			b.Fatalf("IKM_BENCH_VARIANTS: %q is not name:K=V,...", v)
		}
		variants = append(variants, meshVariant{name: "mesh-" + name, env: strings.Split(env, ",")})
	}
	for _, v := range variants {
		a, c := benchPair(b)
		restore := setenv(b, v.env)
		m := startBenchMesh(b, a, c, v.ingress)
		restore()
		paths = append(paths, &benchPath{name: v.name, server: a, client: c, addr: "10.7.0.1", procs: append([]*proc{m.shadow, m.mesh}, m.ingress...), mesh: m})
	}

	perfDir := os.Getenv("IKM_BENCH_PERF")
	b.ResetTimer()
	for r := range rounds {
		for i := range paths {
			p := paths[(i+r)%len(paths)]
			var wait func()
			if perfDir != "" && r == 0 && p.mesh != nil {
				wait = perfRecord(b, perfDir, p)
			}
			p.gbps = append(p.gbps, iperf(b, p.server, p.client, p.addr, benchDuration))
			if wait != nil {
				wait()
			}
		}
	}
	b.StopTimer()

	ref := paths[1].gbps
	for _, p := range paths {
		ratios := make([]float64, len(p.gbps))
		for i, v := range p.gbps {
			ratios[i] = v / ref[i]
		}
		line := fmt.Sprintf("%-20s %s Gbit/s  ratio to wireguard-go-udp %s (median %.2f)", p.name, fmtList(p.gbps, "%.2f"), fmtList(ratios, "%.2f"), median(ratios))
		b.ReportMetric(median(p.gbps), p.name+"-Gbit/s")
		b.ReportMetric(median(ratios), p.name+"-x-ref")
		for _, pr := range p.procs {
			if kib, err := pr.status("VmHWM"); err == nil {
				line += fmt.Sprintf("  %s peak %.0f MiB", pr.name, float64(kib)/1024)
				if p.mesh != nil {
					b.ReportMetric(float64(kib)/1024, p.name+"-"+pr.name+"-peak-MiB")
				}
			}
		}
		if m := p.mesh; m != nil {
			line += fmt.Sprintf("  handshake %v  added rtt %v", m.handshake.Round(time.Millisecond), (m.rttM - m.rttVeth).Round(time.Microsecond))
		}
		b.Logf("ratio: %s", line)
	}
}

// perfRecord profiles the agents of p with perf(1) for most of an iperf3 run (IKM_BENCH_PERF
// names the directory of the profiles, <path>-<agent>.perf, to read with perf report). It returns
// a function that waits for perf.
func perfRecord(b *testing.B, dir string, p *benchPath) (wait func()) {
	var cmds []*exec.Cmd
	for _, pr := range p.procs {
		out := fmt.Sprintf("%s/%s-%s.perf", dir, p.name, pr.name)
		cmd := exec.Command("perf", "record", "-g", "-q", "-o", out, "-p", strconv.Itoa(pr.cmd.Process.Pid), "--", "sleep", "4")
		if err := cmd.Start(); err != nil {
			b.Fatalf("perf record: %v", err)
		}
		cmds = append(cmds, cmd)
	}
	return func() {
		for _, c := range cmds {
			if err := c.Wait(); err != nil {
				b.Logf("perf record: %v", err)
			}
		}
	}
}

// setenv sets K=V pairs in the environment the agents start with and returns a function that
// restores the former values.
func setenv(b *testing.B, kvs []string) (restore func()) {
	var undo []func()
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			b.Fatalf("environment %q is not K=V", kv)
		}
		if old, had := os.LookupEnv(k); had {
			undo = append(undo, func() { os.Setenv(k, old) })
		} else {
			undo = append(undo, func() { os.Unsetenv(k) })
		}
		os.Setenv(k, v)
	}
	return func() {
		for _, u := range undo {
			u()
		}
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtList(v []float64, format string) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, " ")
}

// benchMesh is shadow-agent in a (listening on benchUnderA) and mesh-agent in c.
type benchMesh struct {
	a, c          *netnstest.NS
	shadow, mesh  *proc
	ingress       []*proc // the ingress's process, if the path has one
	handshake     time.Duration
	rttVeth, rttM time.Duration
}

func startBenchMesh(b *testing.B, a, c *netnstest.NS, ingress string) *benchMesh {
	k := newMeshKeys(b)
	m := &benchMesh{a: a, c: c}
	if strings.HasPrefix(ingress, "inbound") {
		startInboundBenchMesh(b, m, k, ingress == "inbound-traefik")
		return m
	}
	m.shadow = shadowAgent(b, a, k, benchUnderA.String())
	upstream := fmt.Sprintf("%s:%d", benchUnderA, tunnelPort)
	tunnel := meshspec.Tunnel{URL: "ws://" + upstream}
	// The ingress runs on the offloaded side: on the shadow side, port 80 of its IP is the
	// offloaded pod's. The hop through it is what counts; both sides share the 2 cores.
	switch ingress {
	case "nginx":
		m.ingress = []*proc{startNginx(b, c, "127.0.0.1", upstream).proc}
		tunnel = meshspec.Tunnel{URL: "ws://127.0.0.1:80", Host: ingressHost}
	case "traefik", "traefik-wss":
		tr := startTraefik(b, c, upstream)
		m.ingress = []*proc{tr.proc}
		tunnel = meshspec.Tunnel{URL: "ws://127.0.0.1:80", Host: ingressHost}
		if ingress == "traefik-wss" {
			tunnel = meshspec.Tunnel{URL: "wss://127.0.0.1:443", Host: ingressHost, CAFile: tr.caFile}
		}
	}
	m.mesh = meshAgentTunnel(b, c, k, tunnel)
	m.measure(b)
	return m
}

// startInboundBenchMesh is the inbound direction: mesh-agent serves the tunnel on the offloaded
// side and shadow-agent dials it, directly or through Traefik. Traefik runs on the shadow side
// here (only the hop counts, and port 80 of the offloaded side's own address is free there).
func startInboundBenchMesh(b *testing.B, m *benchMesh, k meshKeys, traefik bool) {
	m.mesh = meshAgentTunnel(b, m.c, k, meshspec.Tunnel{Listen: fmt.Sprintf(":%d", tunnelPort)})
	upstream := fmt.Sprintf("%s:%d", benchUnderB, tunnelPort)
	args := []string{"--connect", "ws://" + upstream}
	if traefik {
		tr := startTraefik(b, m.a, upstream)
		m.ingress = []*proc{tr.proc}
		args = []string{"--connect", "ws://127.0.0.1:80", "--connect-host", ingressHost}
	}
	m.shadow = shadowAgent(b, m.a, k, benchUnderA.String(), args...)
	m.measure(b)
}

// measure waits for the mesh-agent's first handshake and takes the round trips from the shadow
// side, where every flow to the pod IP is forwarded: to the offloaded side's veth address, then to
// its mesh address.
func (m *benchMesh) measure(b *testing.B) {
	polltest.True(b, "mesh-agent ready", 15*time.Second, func() bool { return meshReady(m.c) })
	m.handshake = firstHandshake(b, m.mesh)
	serveUDPEcho(b, m.c, ":9999", "offloaded")
	var err error
	if m.rttVeth, err = rtt(m.a, benchUnderB.String()+":9999", 200); err != nil {
		b.Fatalf("rtt over the veth: %v", err)
	}
	if m.rttM, err = rtt(m.a, "10.7.0.2:9999", 200); err != nil {
		b.Fatalf("rtt over the mesh: %v", err)
	}
}

// firstHandshake reads how long mesh-agent took from start to its first handshake, as it logs it.
func firstHandshake(b *testing.B, p *proc) time.Duration {
	for line := range strings.SplitSeq(p.logs.String(), "\n") {
		if !strings.Contains(line, `msg="first handshake"`) {
			continue
		}
		_, v, ok := strings.Cut(line, "after=")
		if !ok {
			break
		}
		d, err := time.ParseDuration(strings.Fields(v)[0])
		if err != nil {
			b.Fatalf("first handshake line %q: %v", line, err)
		}
		return d
	}
	b.Fatalf("mesh-agent logged no first handshake:\n%s", p.logs.String())
	return 0
}
