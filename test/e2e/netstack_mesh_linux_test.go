package e2e

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// TestNetstackMesh is TestMesh with both agents in netstack mode, each an unprivileged process
// (user 65532, no capability, no_new_privs): no TUN device, no iptables, no route. The client
// reaches the offloaded pod's TCP and UDP ports on the shadow pod's IP; the offloaded pod
// resolves local names through the mesh (DNS over UDP and TCP) and reaches the local Service by
// name through the proxy, as the shadow pod. Many flows at once end without a leak, and
// traffic comes back after either agent restarts.
func TestNetstackMesh(t *testing.T) {
	requireRoot(t, "nginx", "setpriv", "sysctl")
	tp := newTopology(t)
	startNginx(t, tp.ingress, ingressWAN, fmt.Sprintf("%s:%d", shadowIP, tunnelPort))
	serveHTTP(t, tp.pod, ":8080", "offloaded")
	serveUDPEcho(t, tp.pod, ":9999", "offloaded")
	serveLineEcho(t, tp.pod, fmt.Sprintf("127.0.0.1:%d", echoPort))
	serveHTTP(t, tp.svc, serviceIP+":80", "local-service")
	serveDNS(t, tp.svc, serviceIP+":53", map[string]string{webName: serviceIP})
	podRuntimeSysctls(tp.pod)

	k := newMeshKeys(t)
	ports := fmt.Sprintf("8080,9999/udp,%d,7001", echoPort)
	shadow := shadowNetstack(t, tp.shadow, k, shadowIP, ports)
	if rules := rules(tp.shadow); strings.Contains(rules, "IKM-SHADOW") {
		t.Fatalf("netstack shadow made iptables rules:\n%s", rules)
	}
	url := "ws://" + ingressWAN + ":80"
	dns := []string{serviceIP}
	routes := []string{"10.96.0.0/16", "10.244.0.0/24"}
	mesh := meshNetstack(t, tp.pod, k, url, ingressHost, dns, routes)
	polltest.True(t, "mesh-agent ready", 15*time.Second, func() bool { return meshReady(tp.pod) })
	if out := tp.pod.MustExec("ip", "-o", "link"); strings.Contains(out, "wg0") {
		t.Fatalf("netstack mesh-agent made a link:\n%s", out)
	}

	check := func(t *testing.T) {
		t.Helper()
		// From the local cluster to the offloaded pod: it sees the connection come from its
		// own loopback, where mesh-agent dials it.
		code, body, err := httpGet(tp.client, "http://"+shadowIP+":8080/", 2*time.Second)
		if err != nil || code != 200 || !strings.HasPrefix(body, "hello from offloaded, you are 127.0.0.1:") {
			t.Fatalf("client -> shadow IP tcp: %d %q %v", code, body, err)
		}
		if got, err := udpAsk(tp.client, shadowIP+":9999", "ping", 2*time.Second); err != nil || got != "offloaded: ping" {
			t.Fatalf("client -> shadow IP udp: %q %v", got, err)
		}
		// From the offloaded pod to the local cluster: names through the DNS forwarder.
		for _, network := range []string{"udp", "tcp"} {
			if got, err := lookupA(tp.pod, network, "127.0.0.1:53", webName); err != nil || got != serviceIP {
				t.Fatalf("offloaded pod resolves %s over %s: %q %v", webName, network, got, err)
			}
		}
		// The Service by its short name through the proxy, and by address through CONNECT:
		// the Service sees the shadow pod's IP, as with MASQUERADE.
		status, body, err := proxyGet(tp.pod, "127.0.0.1:3128", "http://web/")
		if err != nil || !strings.Contains(status, " 200 ") || !strings.HasPrefix(body, "hello from local-service, you are "+shadowIP+":") {
			t.Fatalf("offloaded pod -> local Service by name through the proxy: %q %q %v", status, body, err)
		}
		// Clients that know no proxy: the fixed relays, TCP to a name and UDP to an address.
		code, body, err = httpGet(tp.pod, "http://"+forwardHTTP+"/", 2*time.Second)
		if err != nil || code != 200 || !strings.HasPrefix(body, "hello from local-service, you are "+shadowIP+":") {
			t.Fatalf("offloaded pod -> local Service through a fixed forward: %d %q %v", code, body, err)
		}
		if got, err := lookupA(tp.pod, "udp", forwardDNS, webName); err != nil || got != serviceIP {
			t.Fatalf("udp through a fixed forward: %q %v", got, err)
		}
		status, body, err = proxyConnect(tp.pod, "127.0.0.1:3128", serviceIP+":80")
		if err != nil || !strings.Contains(status, " 200 ") || !strings.HasPrefix(body, "hello from local-service, you are "+shadowIP+":") {
			t.Fatalf("offloaded pod -> local Service through CONNECT: %q %q %v", status, body, err)
		}
	}
	polltest.True(t, "first request through the mesh", 20*time.Second, func() bool {
		code, _, err := httpGet(tp.client, "http://"+shadowIP+":8080/", 500*time.Millisecond)
		return err == nil && code == 200
	})

	t.Run("traffic both ways", check)

	t.Run("closed port is a reset", func(t *testing.T) {
		// 7001 is declared, but nothing listens on it in the pod: the pod's loopback refuses,
		// and the client's connection, which the shadow had accepted, is reset. The reset can
		// beat the dial's own check of the connect (Go reads SO_ERROR once the socket is
		// writable): then the dial itself reports it.
		err := tp.client.Do(func() error {
			c, err := net.DialTimeout("tcp", shadowIP+":7001", 2*time.Second)
			if err != nil {
				if strings.Contains(err.Error(), "connection reset") {
					return nil
				}
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(make([]byte, 1))
			if err == nil || n != 0 || !strings.Contains(err.Error(), "reset") {
				return fmt.Errorf("read %d bytes, %v; want a reset", n, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	shadowMetrics := "http://127.0.0.1:9102/metrics"
	meshMetrics := "http://127.0.0.1:9101/metrics"
	t.Run("many flows", func(t *testing.T) {
		const n = 1000 // held at once; the benchmark goes to 10,000
		baseShadow := metric(t, tp.shadow, shadowMetrics, "go_goroutines")
		baseMesh := metric(t, tp.pod, meshMetrics, "go_goroutines")
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		err := tp.client.Do(func() error {
			for i := range n {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", shadowIP, echoPort), 5*time.Second)
				if err != nil {
					return fmt.Errorf("flow %d: %w", i, err)
				}
				conns = append(conns, c)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range conns { // every flow carries data end to end
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(c, "flow %d\n", i); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range conns {
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != fmt.Sprintf("flow %d\n", i) {
				t.Fatalf("flow %d echoed %q, %v", i, line, err)
			}
		}
		if got := metric(t, tp.shadow, shadowMetrics, `shadow_agent_flows_active{direction="in",proto="tcp"}`); got != n {
			t.Errorf("shadow holds %v inbound flows, want %d", got, n)
		}
		if got := metric(t, tp.pod, meshMetrics, `mesh_agent_flows_active{proto="tcp"}`); got != n {
			t.Errorf("mesh-agent holds %v flows, want %d", got, n)
		}
		for _, c := range conns {
			c.Close()
		}
		conns = nil
		polltest.True(t, "flows to end on both agents", 30*time.Second, func() bool {
			return metric(t, tp.shadow, shadowMetrics, `shadow_agent_flows_active{direction="in",proto="tcp"}`) == 0 &&
				metric(t, tp.pod, meshMetrics, `mesh_agent_flows_active{proto="tcp"}`) == 0
		})

		// Every flow's goroutines are gone (a few come and go with the tunnel and the scrape).
		polltest.True(t, "goroutines back to where they were", 30*time.Second, func() bool {
			return metric(t, tp.shadow, shadowMetrics, "go_goroutines") <= baseShadow+5 &&
				metric(t, tp.pod, meshMetrics, "go_goroutines") <= baseMesh+5
		})

	})

	recovery := func(t *testing.T, fault func()) time.Duration {
		t.Helper()
		start := time.Now()
		fault()
		polltest.True(t, "traffic through the mesh after the fault", 60*time.Second, func() bool {
			code, _, err := httpGet(tp.client, "http://"+shadowIP+":8080/", 500*time.Millisecond)
			return err == nil && code == 200
		})

		d := time.Since(start)
		check(t)
		return d
	}
	outer := t
	t.Run("shadow-agent restart", func(t *testing.T) {
		t.Logf("recovered %v after shadow-agent restarted", recovery(t, func() {
			if err := shadow.stop(); err != nil {
				t.Errorf("shadow-agent exit: %v", err)
			}
			shadow = shadowNetstack(outer, tp.shadow, k, shadowIP, ports)
		}).Round(time.Millisecond))
	})
	t.Run("mesh-agent restart", func(t *testing.T) {
		t.Logf("recovered %v after mesh-agent restarted", recovery(t, func() {
			if err := mesh.stop(); err != nil {
				t.Errorf("mesh-agent exit: %v", err)
			}
			mesh = meshNetstack(outer, tp.pod, k, url, ingressHost, dns, routes)
		}).Round(time.Millisecond))
	})
}

// TestModeRequirements: a mode that lacks what it needs fails at start, naming it.
func TestModeRequirements(t *testing.T) {
	requireRoot(t, "setpriv")
	ns := netnstest.New(t)
	k := newMeshKeys(t)
	for _, tc := range []struct {
		name string
		run  func() *proc
		want string
	}{
		{"kernel shadow without NET_ADMIN", func() *proc {
			dir := nonrootDir(t)
			return unprivileged(t, ns, nil, binary(t, "shadow-agent"),
				"--private-key-file", writeNonroot(t, dir, "k", base64Key(k.shadow)), "--path-prefix-file", writeNonroot(t, dir, "p", k.prefix),
				"--peer-public-key", publicKey(k.pod), "--uapi-dir", filepath.Join(dir, "uapi"), "--main-interface", "lo")
		}, "missing CAP_NET_ADMIN"},
		{"kernel mesh-agent without NET_ADMIN", func() *proc {
			return meshNetstack(t, ns, k, "ws://127.0.0.1:1", "", nil, nil, "--mode=kernel")
		}, "missing CAP_NET_ADMIN"},
		{"netstack mesh-agent on port 53 without the runtime's sysctl", func() *proc {
			return meshNetstack(t, ns, k, "ws://127.0.0.1:1", "", []string{serviceIP}, []string{"10.96.0.0/16"})
		}, "net.ipv4.ip_unprivileged_port_start"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.run()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Fatal("still running")
			}
			if p.err == nil || !strings.Contains(p.logs.String(), tc.want) {
				t.Fatalf("exit %v, output lacks %q:\n%s", p.err, tc.want, p.logs.String())
			}
		})
	}
}

// TestMixedModes: the shadow's mode is the cluster's (its template), the mesh-agent's the
// pod's (its annotation), so each mode must work with the other. Kernel shadow, netstack
// mesh-agent: DNAT reaches the pod's loopback, the proxy's flows are MASQUERADEd. Netstack
// shadow, kernel mesh-agent: the relays reach the pod's address, its routed flows end in the
// shadow's stack.
func TestMixedModes(t *testing.T) {
	requireRoot(t, "nginx", "setpriv", "sysctl")
	for _, shadowMode := range []string{"kernel", "netstack"} {
		t.Run("shadow "+shadowMode, func(t *testing.T) {
			tp := newTopology(t)
			startNginx(t, tp.ingress, ingressWAN, fmt.Sprintf("%s:%d", shadowIP, tunnelPort))
			serveHTTP(t, tp.pod, ":8080", "offloaded")
			serveUDPEcho(t, tp.pod, ":9999", "offloaded")
			serveHTTP(t, tp.svc, serviceIP+":80", "local-service")
			podRuntimeSysctls(tp.pod)
			k := newMeshKeys(t)
			url := "ws://" + ingressWAN + ":80"
			routes := []string{"10.96.0.0/16", "10.244.0.0/24"}
			if shadowMode == "kernel" {
				shadowAgent(t, tp.shadow, k, shadowIP)
				meshNetstack(t, tp.pod, k, url, ingressHost, nil, routes, "--dns-listen=none")
			} else {
				shadowNetstack(t, tp.shadow, k, shadowIP, "8080,9999/udp")
				meshAgent(t, tp.pod, k, url, ingressHost, routes...)
			}
			polltest.True(t, "mesh-agent ready", 15*time.Second, func() bool { return meshReady(tp.pod) })
			polltest.True(t, "first request through the mesh", 20*time.Second, func() bool {
				code, _, err := httpGet(tp.client, "http://"+shadowIP+":8080/", 500*time.Millisecond)
				return err == nil && code == 200
			})

			code, body, err := httpGet(tp.client, "http://"+shadowIP+":8080/", 2*time.Second)
			if err != nil || code != 200 || !strings.HasPrefix(body, "hello from offloaded") {
				t.Fatalf("client -> shadow IP tcp: %d %q %v", code, body, err)
			}
			if got, err := udpAsk(tp.client, shadowIP+":9999", "ping", 2*time.Second); err != nil || got != "offloaded: ping" {
				t.Fatalf("client -> shadow IP udp: %q %v", got, err)
			}
			if shadowMode == "kernel" {
				status, body, err := proxyConnect(tp.pod, "127.0.0.1:3128", serviceIP+":80")
				if err != nil || !strings.Contains(status, " 200 ") || !strings.HasPrefix(body, "hello from local-service, you are "+shadowIP+":") {
					t.Fatalf("offloaded pod -> local Service through the proxy: %q %q %v", status, body, err)
				}
			} else {
				code, body, err := httpGet(tp.pod, "http://"+serviceIP+"/", 2*time.Second)
				if err != nil || code != 200 || !strings.HasPrefix(body, "hello from local-service, you are "+shadowIP+":") {
					t.Fatalf("offloaded pod -> local Service routed: %d %q %v", code, body, err)
				}
			}
		})
	}
}
