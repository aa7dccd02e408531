package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
)

// benchDuration is how long each iperf3 run lasts, as in the anchor measurement (5 s).
const benchDuration = 5 * time.Second

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

// BenchmarkThroughput measures iperf3 TCP from the offloaded side to the shadow side, one run
// of benchDuration per sub-benchmark whatever b.N is: over the bare veth, over the upstream
// wireguard-go binary on plain UDP (the reference), over the mesh (mesh-agent dialing
// shadow-agent's WebSocket directly) and over the mesh through nginx. All at MTU 1280, the
// mesh's default. The mesh variants also report each agent's peak RSS, the round trip the mesh
// adds to the veth's and mesh-agent's time to its first handshake. Run it with -benchtime 1x.
func BenchmarkThroughput(b *testing.B) {
	requireRoot(b, "iperf3")
	results := map[string]float64{}
	run := func(name string, setup func(b *testing.B) (server, client *netnstest.NS, addr string)) {
		b.Run(name, func(b *testing.B) {
			server, client, addr := setup(b)
			var gbps float64
			for b.Loop() {
				gbps = iperf(b, server, client, addr, benchDuration)
			}
			b.ReportMetric(gbps, "Gbit/s")
			results[name] = gbps
		})
	}
	run("veth", func(b *testing.B) (*netnstest.NS, *netnstest.NS, string) {
		a, c := benchPair(b)
		return a, c, benchUnderA.String()
	})
	run("wireguard-go-udp", func(b *testing.B) (*netnstest.NS, *netnstest.NS, string) {
		a, c := benchPair(b)
		pa, pb := udpWireGuard(b, a, c, benchUnderA, benchUnderB, 1280)
		b.Cleanup(func() {
			for side, p := range map[string]*proc{"receiver": pa.proc, "sender": pb.proc} {
				if kib, err := p.status("VmHWM"); err == nil {
					b.ReportMetric(float64(kib)/1024, side+"-peak-MiB")
				}
			}
		})
		return a, c, pa.overlay.String()
	})
	for _, v := range []struct {
		name     string
		viaNginx bool
		batch    int // 0: the agents' default
	}{{"mesh", false, 0}, {"mesh-nginx", true, 0}, {"mesh-batch128", false, 128}} {
		viaNginx := v.viaNginx
		run(v.name, func(b *testing.B) (*netnstest.NS, *netnstest.NS, string) {
			if v.batch != 0 {
				b.Setenv("SHADOW_BATCH_SIZE", itoa(v.batch))
				b.Setenv("MESH_AGENT_BATCH_SIZE", itoa(v.batch))
			}
			a, c := benchPair(b)
			m := startBenchMesh(b, a, c, viaNginx)
			b.Cleanup(func() { m.report(b) })
			return a, c, "10.7.0.1"
		})
	}
	if ref := results["wireguard-go-udp"]; ref > 0 {
		for name, v := range results {
			b.Logf("%-20s %6.2f Gbit/s  %.2fx wireguard-go-udp  %.3fx veth", name, v, v/ref, v/results["veth"])
		}
	}
}

// benchMesh is shadow-agent in a (listening on benchUnderA) and mesh-agent in c.
type benchMesh struct {
	a, c          *netnstest.NS
	shadow, mesh  *proc
	handshake     time.Duration
	rttVeth, rttM time.Duration
}

func startBenchMesh(b *testing.B, a, c *netnstest.NS, viaNginx bool) *benchMesh {
	k := newMeshKeys(b)
	m := &benchMesh{a: a, c: c}
	m.shadow = shadowAgent(b, a, k, benchUnderA.String())
	url, host := fmt.Sprintf("ws://%s:%d", benchUnderA, tunnelPort), ""
	if viaNginx {
		// nginx runs on the offloaded side: on the shadow side, port 80 of its IP is the
		// offloaded pod's. The hop through it is what counts; both sides share the 2 cores.
		startNginx(b, c, "127.0.0.1", url[len("ws://"):])
		url, host = "ws://127.0.0.1:80", ingressHost
	}
	m.mesh = meshAgent(b, c, k, url, host)
	waitFor(b, "mesh-agent ready", 15*time.Second, func() bool { return meshReady(c) })
	m.handshake = firstHandshake(b, m.mesh)
	// Round trips from the shadow side, where every flow to the pod IP is forwarded: to the
	// offloaded side's veth address, then to its mesh address.
	serveUDPEcho(b, c, ":9999", "offloaded")
	var err error
	if m.rttVeth, err = rtt(a, benchUnderB.String()+":9999", 200); err != nil {
		b.Fatalf("rtt over the veth: %v", err)
	}
	if m.rttM, err = rtt(a, "10.7.0.2:9999", 200); err != nil {
		b.Fatalf("rtt over the mesh: %v", err)
	}
	return m
}

// report adds the agents' figures to the benchmark's; it runs after the iperf3 run.
func (m *benchMesh) report(b *testing.B) {
	for _, p := range []*proc{m.shadow, m.mesh} {
		if kib, err := p.status("VmHWM"); err == nil {
			b.ReportMetric(float64(kib)/1024, p.name+"-peak-MiB")
		}
	}
	b.ReportMetric(float64(m.handshake.Microseconds())/1000, "handshake-ms")
	b.ReportMetric(float64((m.rttM - m.rttVeth).Microseconds()), "added-rtt-us")
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
