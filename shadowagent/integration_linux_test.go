package shadowagent

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/buildtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netfilter"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// The integration topology. Every address lives in a namespace the test creates.
//
//	client ns                      shadow ns                                  pod ns
//	c0 192.168.50.1 ---- veth ---- eth0 192.168.50.2 (the shadow's pod IP)
//	lo 10.96.0.10 (a "service")    default via 192.168.50.1
//	                               ws0 192.168.60.1:28080 ---- veth ---- p0 192.168.60.2
//	                               wg0 10.7.0.1 (shadow-agent, in-process)    wg0 10.7.0.2 (mesh-agent binary)
//	                                                                          :8080 HTTP, :8081 UDP echo
var (
	shadowPodIP = netip.MustParseAddr("192.168.50.2")
	wsAddr      = netip.MustParseAddrPort("192.168.60.1:28080") // the tunnel, as the pod dials it
	podMeshIP   = netip.MustParseAddr("10.7.0.2")
	serviceIP   = netip.MustParseAddr("10.96.0.10")
)

// newTopology builds the namespaces, links and addresses drawn above, removed when the test ends.
func newTopology(t *testing.T) (client, shadow, pod *netnstest.NS) {
	client, shadow, pod = netnstest.New(t), netnstest.New(t), netnstest.New(t)
	netnstest.Veth(client, "c0", shadow, "eth0")
	netnstest.Veth(pod, "p0", shadow, "ws0")
	client.MustExec("ip", "addr", "add", "192.168.50.1/24", "dev", "c0")
	client.MustExec("ip", "addr", "add", serviceIP.String()+"/32", "dev", "lo")
	shadow.MustExec("ip", "addr", "add", shadowPodIP.String()+"/24", "dev", "eth0")
	shadow.MustExec("ip", "route", "add", "default", "via", "192.168.50.1", "dev", "eth0")
	shadow.MustExec("ip", "route", "add", "10.96.0.0/16", "via", "192.168.50.1", "dev", "eth0")
	shadow.MustExec("ip", "addr", "add", "192.168.60.1/24", "dev", "ws0")
	pod.MustExec("ip", "addr", "add", "192.168.60.2/24", "dev", "p0")
	pod.MustExec("sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1") // servers on 10.7.0.2 before wg0 exists
	return client, shadow, pod
}

// TestShadowInNamespaces runs the Agent in a shadow namespace against the real mesh-agent binary
// in a pod namespace, and checks what the shadow pod is for: TCP and UDP to the shadow's IP
// reach the offloaded pod, the pod reaches a local service as the shadow's IP, the iptables
// state is ours only while running, bad input on the tunnel port is survived and logged, and
// nothing secret reaches the logs.
func TestShadowInNamespaces(t *testing.T) {
	netnstest.Require(t, "ip", "iptables", "iptables-save")
	if _, err := os.Stat(wgdevice.TUNPath); err != nil {
		t.Skipf("skipping: needs %s: %v", wgdevice.TUNPath, err)
	}
	meshAgent := buildtest.Binary(t, "../cmd/mesh-agent")
	client, shadow, pod := newTopology(t)

	// Foreign rules in both tables we touch: they must survive, and iptables-save has a
	// pre-state to come back to.
	shadow.MustExec("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-m", "comment", "--comment", "foreign", "-j", "RETURN")
	shadow.MustExec("iptables", "-A", "FORWARD", "-i", "lo", "-m", "comment", "--comment", "foreign", "-j", "ACCEPT")
	preSave := normSave(shadow.MustExec("iptables-save"))
	preForward := strings.TrimSpace(shadow.MustExec("cat", "/proc/sys/net/ipv4/ip_forward"))

	// The offloaded pod's servers, and a local service.
	podAddr := netip.AddrPortFrom(podMeshIP, 8080)
	serveHTTPIn(t, pod, podAddr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			_, _ = io.Copy(w, r.Body)
			return
		}
		fmt.Fprintf(w, "pod saw %s", r.RemoteAddr)
	}))
	udpEchoIn(t, pod, netip.AddrPortFrom(podMeshIP, 8081))
	serveHTTPIn(t, client, netip.AddrPortFrom(serviceIP, 80), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "service saw %s", r.RemoteAddr)
	}))

	// The shadow-agent.
	logs, log := newLogBuffer(t)
	shadowKey, podKey := genKey(t), genKey(t)
	prefix := "pfx" + randHex(t, 12)
	uapiDir := t.TempDir()
	a, err := New(Config{
		PathPrefix:       meshspec.Secret(prefix),
		PrivateKey:       shadowKey,
		PeerPublicKey:    podKey.PublicKey(),
		PodIP:            shadowPodIP,
		ExcludeUDP:       []uint16{5353},
		ReassertInterval: 500 * time.Millisecond,
		UAPIDir:          uapiDir,
		Logger:           log,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run := shadow.Start(t, a.Run)
	alive := func(t *testing.T) {
		t.Helper()
		if exited, err := run.Exited(); exited {
			t.Fatalf("the agent stopped: %v\nlogs:\n%s", err, logs)
		}
	}

	// Ready without any peer; probes reached from the client through the pod IP (9102 is never
	// forwarded).
	fromClient := nsHTTPClient(client)
	probe := func(path string) (int, string, error) {
		return fromClient.get("http://" + netip.AddrPortFrom(shadowPodIP, 9102).String() + path)
	}
	readyIn := polltest.Until(t, "/readyz 200", 20*time.Second, func() error {
		alive(t)
		if code, body, err := probe("/readyz"); err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})

	t.Logf("shadow-agent start to ready: %v", readyIn.Round(time.Millisecond))
	if code, _, err := probe("/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("/healthz = %d, %v", code, err)
	}
	running := shadow.MustExec("iptables-save")
	for _, c := range []string{netfilter.ChainForward, netfilter.ChainPostrouting, netfilter.ChainPrerouting} {
		if !strings.Contains(running, ":"+c+" ") {
			t.Errorf("iptables-save while running lacks chain %s:\n%s", c, running)
		}
	}
	if !strings.Contains(running, "--comment foreign") {
		t.Error("foreign rules are gone while running")
	}
	if !strings.Contains(logs.String(), "main_interface=eth0") {
		t.Error("the main interface was not found through the default route")
	}

	// The real mesh-agent in the pod namespace; measure until TCP through the shadow's IP works.
	meshLogs := startMeshAgent(t, pod, meshAgent, meshspec.Spec{
		PrivateKey:    podKey,
		PeerPublicKey: shadowKey.PublicKey(),
		Routes:        []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")},
		Tunnel:        meshspec.Tunnel{URL: "ws://" + wsAddr.String(), PathPrefix: meshspec.Secret(prefix)},
	})
	podURL := "http://" + netip.AddrPortFrom(shadowPodIP, 8080).String() + "/"
	checkPod := func() error {
		code, body, err := fromClient.get(podURL)
		if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "pod saw 10.7.0.1:") {
			return fmt.Errorf("GET %s = %d %q %v", podURL, code, body, err)
		}
		return nil
	}
	firstTCP := polltest.Until(t, "TCP from the client to the pod", 30*time.Second, func() error { alive(t); return checkPod() })
	t.Logf("mesh-agent start to first TCP exchange through the shadow's IP: %v (the mesh-agent logs its own handshake time)",
		firstTCP.Round(time.Millisecond))

	t.Run("tcp to the pod, 1 MiB each way", func(t *testing.T) {
		payload := bytes.Repeat([]byte("offloaded "), 100<<10)
		resp, err := fromClient.c.Post(podURL, "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(payload), len(got), err)
		}
	})
	t.Run("udp to the pod", func(t *testing.T) {
		var c *net.UDPConn
		if err := client.Do(func() (err error) {
			c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(shadowPodIP, 8081)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 2048)
		for i := range 3 {
			msg := []byte("datagram " + strconv.Itoa(i) + strings.Repeat(".", 1000))
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil || !bytes.Equal(buf[:n], msg) {
				t.Fatalf("udp echo %d: %q, %v", i, buf[:min(n, 20)], err)
			}
		}
	})
	t.Run("pod to a local service", func(t *testing.T) {
		url := "http://" + serviceIP.String() + "/"
		code, body, err := nsHTTPClient(pod).get(url)
		if err != nil || code != http.StatusOK || !strings.HasPrefix(body, "service saw "+shadowPodIP.String()+":") {
			t.Fatalf("GET %s from the pod = %d %q %v; want the service to see the shadow's IP", url, code, body, err)
		}
	})
	t.Run("uapi socket", func(t *testing.T) {
		reply := uapiGet(t, filepath.Join(uapiDir, "wg0.sock"))
		peers, err := wgdevice.ParsePeers(reply)
		if err != nil || len(peers) != 1 {
			t.Fatalf("uapi get: %v, %d peers:\n%s", err, len(peers), reply)
		}
		if p := peers[0]; p.PublicKey != podKey.PublicKey() || p.LastHandshake.IsZero() || p.RxBytes == 0 || p.Endpoint == "" {
			t.Errorf("uapi peer: key match %v, handshake %v, rx %d, endpoint %q",
				p.PublicKey == podKey.PublicKey(), p.LastHandshake, p.RxBytes, p.Endpoint)
		}
	})
	t.Run("rules repaired", func(t *testing.T) {
		execIn(t, shadow, "iptables", "-t", "nat", "-D", "PREROUTING", "1") // our jump rule is first
		if strings.Contains(execIn(t, shadow, "iptables", "-t", "nat", "-S", "PREROUTING"), netfilter.ChainPrerouting) {
			t.Fatal("the jump rule was not at position 1")
		}
		polltest.Until(t, "the jump rule back", 10*time.Second, func() error {
			if !strings.Contains(execIn(t, shadow, "iptables", "-t", "nat", "-S", "PREROUTING"), netfilter.ChainPrerouting) {
				return errors.New("missing")
			}
			return nil
		})

	})

	// Bad input on the tunnel port: each is refused with a reason in the logs, and the agent
	// goes on.
	t.Run("wrong prefix", func(t *testing.T) {
		url := "http://" + netip.AddrPortFrom(shadowPodIP, 28080).String() + "/wrong" + prefix[3:] + "/events"
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", base64.StdEncoding.EncodeToString(make([]byte, 16)))
		resp, err := fromClient.c.Do(req) // through the pod IP: 28080 is never forwarded
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || string(body) != "Invalid request" {
			t.Errorf("wrong prefix = %d %q, want 400 Invalid request", resp.StatusCode, body)
		}
		waitLog(t, logs, "refused tunnel upgrade", `reason="wrong path"`)
		alive(t)
	})
	t.Run("garbage", func(t *testing.T) {
		c := dialIn(t, pod, wsAddr)
		defer c.Close()
		if _, err := c.Write([]byte("\x00\xff\xfe garbage \r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 400") {
			t.Errorf("garbage answered %q", line)
		}
		waitLog(t, logs, "refused tunnel connection", "no valid HTTP request")
		alive(t)
	})
	t.Run("oversized frame", func(t *testing.T) {
		replaced := logs.Count("tunnel session replaced")
		c, br := rawUpgrade(t, pod, wsAddr, prefix)
		defer c.Close()
		hdr := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4} // FIN binary, masked, 64-bit length
		binary.BigEndian.PutUint64(hdr[2:10], 70000)
		if _, err := c.Write(append(hdr, make([]byte, 1000)...)); err != nil {
			t.Fatal(err)
		}
		frame := make([]byte, 4)
		if _, err := io.ReadFull(br, frame); err != nil {
			t.Fatalf("read the close frame: %v", err)
		}
		if frame[0] != 0x88 || binary.BigEndian.Uint16(frame[2:]) != 1009 {
			t.Errorf("answer to an oversized frame: % x, want a close frame with code 1009", frame)
		}
		waitLog(t, logs, "tunnel session down", "exceeds message size limit")
		if logs.Count("tunnel session replaced") <= replaced {
			t.Error("the raw session did not replace the mesh-agent's")
		}
		alive(t)
		recovered := polltest.Until(t, "TCP to the pod again", 30*time.Second, checkPod)
		t.Logf("traffic back %v after the oversized frame", recovered.Round(time.Millisecond))
	})
	t.Run("second client with the same key", func(t *testing.T) {
		replaced := logs.Count("tunnel session replaced")
		stopSecond := startSecondClient(t, pod, podKey, shadowKey.PublicKey(), prefix, log.With("side", "second-client"))
		polltest.Until(t, "the second client to replace the first", 20*time.Second, func() error {
			if logs.Count("tunnel session replaced") <= replaced {
				return errors.New("no replacement logged")
			}
			return nil
		})

		stopSecond()
		alive(t)
		recovered := polltest.Until(t, "TCP to the pod again", 60*time.Second, func() error { alive(t); return checkPod() })
		t.Logf("traffic back %v after the second client left", recovered.Round(time.Millisecond))
	})

	t.Run("metrics", func(t *testing.T) {
		_, body, err := probe("/metrics")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []struct {
			name string
			min  float64
		}{
			{"shadow_agent_ready", 1},
			{"shadow_agent_tunnel_sessions_total", 3},
			{"shadow_agent_tunnel_refused_upgrades_total", 1},
			{"shadow_agent_tunnel_malformed_requests_total", 1},
			{"shadow_agent_tunnel_session_active", 1},
			{`shadow_agent_tunnel_datagrams_total{direction="rx"}`, 100},
			{`shadow_agent_tunnel_datagrams_total{direction="tx"}`, 100},
			{`shadow_agent_peer_bytes_total{direction="rx"}`, 1 << 20},
			{`shadow_agent_peer_bytes_total{direction="tx"}`, 1 << 20},
			{"shadow_agent_peer_last_handshake_age_seconds", 0},
			{"shadow_agent_peer_last_handshake_timestamp_seconds", float64(start.Unix())},
		} {
			if v, ok := metricValue(body, m.name); !ok || v < m.min {
				t.Errorf("metric %s = %v (present %v), want at least %v", m.name, v, ok, m.min)
			}
		}
	})

	// Teardown: Run returns nil and leaves the namespace as it found it.
	if err := run.Stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel\nlogs:\n%s", err, logs)
	}
	if got := normSave(shadow.MustExec("iptables-save")); got != preSave {
		t.Errorf("iptables-save after the agent stopped differs from before it started:\nbefore:\n%s\nafter:\n%s", preSave, got)
	}
	if got := strings.TrimSpace(shadow.MustExec("cat", "/proc/sys/net/ipv4/ip_forward")); got != preForward {
		t.Errorf("ip_forward = %s after stop, was %s", got, preForward)
	}
	if out, err := shadow.Exec("ip", "link", "show", "wg0"); err == nil {
		t.Errorf("wg0 still there:\n%s", out)
	}
	if out := shadow.MustExec("ip", "route", "show", "10.7.0.2"); out != "" {
		t.Errorf("route to the peer still there: %q", out)
	}
	if _, err := os.Lstat(filepath.Join(uapiDir, "wg0.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("UAPI socket still there: %v", err)
	}
	if _, _, err := probe("/healthz"); err == nil {
		t.Error("the health server still answers after Run returned")
	}

	// Nothing secret in either agent's logs.
	for who, text := range map[string]string{"shadow-agent": logs.String(), "mesh-agent": meshLogs.String()} {
		for name, s := range map[string]string{
			"path prefix":          prefix,
			"shadow private key":   base64.StdEncoding.EncodeToString(shadowKey[:]),
			"shadow private hex":   hex.EncodeToString(shadowKey[:]),
			"pod private key":      base64.StdEncoding.EncodeToString(podKey[:]),
			"pod private hex":      hex.EncodeToString(podKey[:]),
			"pod public key":       b64(podKey.PublicKey()),
			"pod public hex":       hex.EncodeToString(func() []byte { k := podKey.PublicKey(); return k[:] }()),
			"shadow public key":    b64(shadowKey.PublicKey()),
			"path prefix, escaped": url64(prefix),
		} {
			if strings.Contains(text, s) {
				t.Errorf("the %s appears in the %s logs", name, who)
			}
		}
	}
	for _, want := range []string{"shadow up", "netfilter rules applied", "repaired netfilter rules", "netfilter rules removed", "component=wireguard"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("shadow logs lack %q", want)
		}
	}
}
