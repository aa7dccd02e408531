package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

// TestMesh runs the whole mesh in namespaces: a local client reaches the offloaded pod on the
// shadow pod's IP (TCP and UDP, DNAT through the tunnel behind nginx), the offloaded pod
// reaches a local Service as the shadow pod, faults heal by themselves (each recovery time is
// logged), bad input leaves the shadow-agent running with a reason in its log, and the shadow's
// iptables are back to what they were once it exits.
func TestMesh(t *testing.T) {
	requireRoot(t, "nginx", "iptables-save")
	tp := newTopology(t)
	ng := startNginx(t, tp.ingress, ingressWAN, fmt.Sprintf("%s:%d", shadowIP, tunnelPort))
	serveHTTP(t, tp.pod, ":8080", "offloaded")
	serveUDPEcho(t, tp.pod, ":9999", "offloaded")
	serveHTTP(t, tp.svc, serviceIP+":80", "local-service")

	k := newMeshKeys(t)
	before := rules(tp.shadow)
	shadow := shadowAgent(t, tp.shadow, k, shadowIP)
	if during := rules(tp.shadow); !strings.Contains(during, "IKM-SHADOW-PREROUTING") {
		t.Fatalf("no shadow chains while the agent runs:\n%s", during)
	}
	url := "ws://" + ingressWAN + ":80"
	start := time.Now()
	mesh := meshAgent(t, tp.pod, k, url, ingressHost, "10.96.0.0/16", "10.244.0.0/24")
	polltest.True(t, "mesh-agent ready", 15*time.Second, func() bool { return meshReady(tp.pod) })
	t.Logf("mesh-agent start to ready through nginx: %v", time.Since(start).Round(time.Millisecond))

	checkBothWays := func(t *testing.T) {
		t.Helper()
		code, body, err := httpGet(tp.client, "http://"+shadowIP+":8080/", 2*time.Second)
		if err != nil || code != 200 || !strings.HasPrefix(body, "hello from offloaded") {
			t.Fatalf("client -> shadow IP tcp: %d %q %v", code, body, err)
		}
		if got, err := udpAsk(tp.client, shadowIP+":9999", "ping", 2*time.Second); err != nil || got != "offloaded: ping" {
			t.Fatalf("client -> shadow IP udp: %q %v", got, err)
		}
		code, body, err = httpGet(tp.pod, "http://"+serviceIP+"/", 2*time.Second)
		if err != nil || code != 200 || !strings.HasPrefix(body, "hello from local-service, you are "+shadowIP+":") {
			t.Fatalf("offloaded pod -> local Service: %d %q %v", code, body, err)
		}
	}
	// The first request may wait for the shadow to learn the new session's keys.
	first := polltest.True(t, "first request through the mesh", 20*time.Second, func() bool {
		code, _, err := httpGet(tp.client, "http://"+shadowIP+":8080/", 500*time.Millisecond)
		return err == nil && code == 200
	})

	t.Logf("mesh-agent ready to first request answered: %v", first.Round(time.Millisecond))
	t.Run("traffic both ways", checkBothWays)

	// recovery measures from the start of a fault (a restart included) to the first request
	// answered through the mesh again.
	recovery := func(t *testing.T, fault func()) time.Duration {
		t.Helper()
		start := time.Now()
		fault()
		polltest.True(t, "traffic through the mesh after the fault", 60*time.Second, func() bool {
			code, _, err := httpGet(tp.client, "http://"+shadowIP+":8080/", 500*time.Millisecond)
			return err == nil && code == 200
		})

		d := time.Since(start)
		checkBothWays(t)
		return d
	}
	// Restarted processes belong to the whole test (outer), not to the subtest that restarts them.
	outer := t
	t.Run("nginx restart", func(t *testing.T) {
		t.Logf("recovered %v after nginx restarted", recovery(t, func() { ng.restart(outer) }).Round(time.Millisecond))
	})
	t.Run("shadow-agent restart", func(t *testing.T) {
		t.Logf("recovered %v after shadow-agent restarted", recovery(t, func() {
			if err := shadow.stop(); err != nil {
				t.Errorf("shadow-agent exit: %v", err)
			}
			shadow = shadowAgent(outer, tp.shadow, k, shadowIP)
		}).Round(time.Millisecond))
	})
	t.Run("mesh-agent restart", func(t *testing.T) {
		t.Logf("recovered %v after mesh-agent restarted", recovery(t, func() {
			if err := mesh.stop(); err != nil {
				t.Errorf("mesh-agent exit: %v", err)
			}
			mesh = meshAgent(outer, tp.pod, k, url, ingressHost, "10.96.0.0/16", "10.244.0.0/24")
		}).Round(time.Millisecond))
	})

	badInput := []struct {
		name   string
		send   func(t *testing.T)
		reason string
	}{
		{"wrong prefix", func(t *testing.T) {
			code := upgrade(t, tp.client, "/not-the-prefix/events", tunnel.DefaultDestination.String())
			if code != http.StatusBadRequest {
				t.Errorf("upgrade with a wrong prefix: %d, want 400", code)
			}
		}, "wrong path"},
		{"wrong destination", func(t *testing.T) {
			code := upgrade(t, tp.client, "/"+k.prefix+"/events", "127.0.0.1:22")
			if code != http.StatusBadRequest {
				t.Errorf("upgrade naming another destination: %d, want 400", code)
			}
		}, "destination not allowed"},
		{"garbage", func(t *testing.T) {
			if err := tp.client.Do(func() error {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", shadowIP, tunnelPort), 2*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_, _ = c.Write([]byte("\x16\x03\x01 garbage that is no HTTP at all\r\n\r\n"))
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				_, _ = bufio.NewReader(c).ReadString('\n')
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}, "malformed"},
		{"oversized frame", func(t *testing.T) {
			sendFrame(t, tp.client, "/"+k.prefix+"/events", 70000)
		}, "datagram exceeds message size limit"},
		{"second client with the same key", func(t *testing.T) {
			intruder := netnstest.New(t)
			netnstest.Veth(tp.ingress, "wan1", intruder, "eth0")
			tp.ingress.MustExec("ip", "addr", "add", "192.168.51.1/24", "dev", "wan1")
			intruder.MustExec("ip", "addr", "add", "192.168.51.2/24", "dev", "eth0")
			replaced := strings.Count(shadow.logs.String(), "tunnel session replaced")
			second := meshAgent(t, intruder, k, "ws://192.168.51.1:80", ingressHost)
			polltest.True(t, "the shadow replaced a session", 15*time.Second, func() bool {
				return strings.Count(shadow.logs.String(), "tunnel session replaced") > replaced
			})

			if err := second.stop(); err != nil {
				t.Errorf("second mesh-agent exit: %v", err)
			}
		}, "tunnel session replaced"},
	}
	for _, bi := range badInput {
		t.Run(bi.name, func(t *testing.T) {
			bi.send(t)
			if shadow.exited() {
				t.Fatalf("shadow-agent exited: %v", shadow.err)
			}
			polltest.True(t, "the shadow-agent logs "+bi.reason, 5*time.Second, func() bool {
				return strings.Contains(shadow.logs.String(), bi.reason)
			})

			t.Logf("recovered %v after %s", recovery(t, func() {}).Round(time.Millisecond), bi.name)
		})
	}

	for _, secret := range []string{k.prefix, base64Key(k.shadow), base64Key(k.pod)} {
		if strings.Contains(shadow.logs.String(), secret) || strings.Contains(mesh.logs.String(), secret) {
			t.Errorf("a secret reached the agents' logs")
		}
	}
	if err := mesh.stop(); err != nil {
		t.Errorf("mesh-agent exit: %v", err)
	}
	if err := shadow.stop(); err != nil {
		t.Errorf("shadow-agent exit: %v", err)
	}
	if after := rules(tp.shadow); after != before {
		t.Errorf("iptables after the shadow-agent exited:\n%s\nwant as before:\n%s", after, before)
	}
}

// upgrade sends a wstunnel client's upgrade for path, claiming dst, to the shadow's tunnel port
// from ns and returns the HTTP status.
func upgrade(t *testing.T, ns *netnstest.NS, path, dst string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s:%d%s", shadowIP, tunnelPort, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Protocol", strings.Join(tunnel.BuildProtocols(token(t, dst)), ", "))
	code, _, err := httpDo(ns, req, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func token(t *testing.T, dst string) string {
	t.Helper()
	c := tunnel.UDPClaims(tunnel.DefaultDestination)
	host, port, _ := net.SplitHostPort(dst)
	c.Host = host
	fmt.Sscan(port, &c.Port)
	tok, err := tunnel.BuildToken(c, []byte("e2e"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// sendFrame opens an authenticated tunnel session from ns and sends one binary frame header
// announcing size bytes, then that many bytes.
func sendFrame(t *testing.T, ns *netnstest.NS, path string, size int) {
	t.Helper()
	err := ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d := ws.Dialer{Protocols: tunnel.BuildProtocols(token(t, tunnel.DefaultDestination.String()))}
		conn, _, _, err := d.Dial(ctx, fmt.Sprintf("ws://%s:%d%s", shadowIP, tunnelPort, path))
		if err != nil {
			return err
		}
		defer conn.Close()
		h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(size), Masked: true, Mask: ws.NewMask()}
		if err := ws.WriteHeader(conn, h); err != nil {
			return err
		}
		_, _ = conn.Write(make([]byte, size))
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, _ = conn.Read(make([]byte, 64)) // the close frame, or EOF
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rules lists the filter and nat tables of ns as iptables -S prints them.
func rules(ns *netnstest.NS) string {
	return ns.MustExec("iptables", "-t", "filter", "-S") + ns.MustExec("iptables", "-t", "nat", "-S")
}
