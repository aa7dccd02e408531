package e2e

import (
	"bufio"
	enc "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/dnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// nonroot is the user the netstack agents run as, the images' nonroot user.
const nonroot = 65532

// Netstack mode's names and ports in the mesh topology: the local cluster's DNS answers
// webName with the Service IP, the offloaded pod holds a line echo on echoPort.
const (
	webName     = "web.default.svc.cluster.local."
	echoPort    = 7000
	forwardHTTP = "127.0.0.1:8081" // -> web:80, a name
	forwardDNS  = "127.0.0.1:5300" // -> the nameserver's port 53, over UDP
)

// unprivileged starts bin in ns as nonroot with no capability at all (none effective,
// permitted, inheritable, ambient or in the bounding set) and no_new_privs, as a container under
// Pod Security "restricted" runs.
func unprivileged(t testing.TB, ns *netnstest.NS, env []string, bin string, args ...string) *proc {
	t.Helper()
	// The binaries' directory is root's 0700 temporary directory.
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	p := start(t, ns, env, "setpriv", append([]string{
		"--reuid=" + itoa(nonroot), "--regid=" + itoa(nonroot), "--clear-groups",
		"--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", bin}, args...)...)
	p.name = filepath.Base(bin)
	return p
}

// nonrootDir is a temporary directory the nonroot user owns.
func nonrootDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chown(dir, nonroot, nonroot); err != nil {
		t.Fatal(err)
	}
	// The test's own temporary directory is root's 0700: let others through, not list it.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeSecret writes a file as the kubelet writes a Secret's: owned by root, with the group and
// mode the pod asks for (the netstack shadow: fsGroup 65532, 0440; the netstack sidecar: 0444).
func writeSecret(t testing.TB, dir, name, content string, gid int, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := os.Chown(p, 0, gid); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeNonroot writes a Secret file of the netstack shadow pod.
func writeNonroot(t testing.TB, dir, name, content string) string {
	t.Helper()
	return writeSecret(t, dir, name, content, nonroot, 0o440)
}

// shadowNetstack starts shadow-agent in netstack mode, unprivileged, relaying ports.
func shadowNetstack(t testing.TB, ns *netnstest.NS, k meshKeys, podIP, ports string, extra ...string) *proc {
	t.Helper()
	dir := nonrootDir(t)
	p := unprivileged(t, ns, []string{"POD_IP=" + podIP}, binary(t, "shadow-agent"), append([]string{
		"--mode=netstack", "--ports=" + ports,
		"--private-key-file", writeNonroot(t, dir, "private-key", base64Key(k.shadow)),
		"--path-prefix-file", writeNonroot(t, dir, "prefix", k.prefix),
		"--peer-public-key", publicKey(k.pod),
		"--uapi-dir", filepath.Join(dir, "uapi"),
	}, extra...)...)
	polltest.True(t, "shadow-agent ready", 15*time.Second, func() bool {
		code, _, err := httpGet(ns, "http://127.0.0.1:9102/readyz", time.Second)
		return err == nil && code == 200
	})

	return p
}

// meshNetstack starts mesh-agent in netstack mode, unprivileged, with the mesh.json the plugin
// writes for a netstack pod.
func meshNetstack(t testing.TB, ns *netnstest.NS, k meshKeys, url, host string, nameservers, routes []string, extra ...string) *proc {
	t.Helper()
	spec := meshspec.Spec{
		Mode:          meshspec.ModeNetstack,
		PrivateKey:    k.pod,
		PeerPublicKey: k.shadow.PublicKey(),
		Tunnel:        meshspec.Tunnel{URL: url, PathPrefix: meshspec.Secret(k.prefix), Host: host},
		DNS:           meshspec.DNS{Searches: []string{"default.svc.cluster.local", "svc.cluster.local", "cluster.local"}},
	}
	for _, n := range nameservers {
		spec.DNS.Nameservers = append(spec.DNS.Nameservers, netip.MustParseAddr(n))
	}
	if len(nameservers) > 0 { // fixed relays, as the plugin writes them from the annotation
		spec.Forwards = []meshspec.Forward{
			{Listen: netip.MustParseAddrPort(forwardHTTP), To: "web:80"},
			{Protocol: "udp", Listen: netip.MustParseAddrPort(forwardDNS), To: nameservers[0] + ":53"},
		}
	}
	for _, r := range routes {
		spec.Routes = append(spec.Routes, netip.MustParsePrefix(r))
	}
	b, err := meshspec.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := nonrootDir(t)
	cfg := writeSecret(t, dir, "mesh.json", string(b), 0, 0o444) // the plugin's mode for netstack pods
	return unprivileged(t, ns, nil, binary(t, "mesh-agent"), append([]string{"--config", cfg, "--uapi-dir", filepath.Join(dir, "uapi")}, extra...)...)
}

// podRuntimeSysctls sets what containerd 2 and CRI-O set in every pod's network namespace: any
// user may bind any port (net.ipv4.ip_unprivileged_port_start=0), so the unprivileged
// mesh-agent can serve DNS on port 53.
func podRuntimeSysctls(ns *netnstest.NS) {
	ns.MustExec("sysctl", "-q", "-w", "net.ipv4.ip_unprivileged_port_start=0")
}

// serveDNS answers A queries for names in the map over UDP and TCP on addr inside ns; other
// names get NXDOMAIN.
func serveDNS(t testing.TB, ns *netnstest.NS, addr string, names map[string]string) {
	t.Helper()
	var pc net.PacketConn
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen dns %s: %v", addr, err)
	}
	dnstest.Serve(t, pc, ln, names)
}

// lookupA asks the resolver at addr inside ns for name's A record, over network ("udp" or
// "tcp"), on ns's thread.
func lookupA(ns *netnstest.NS, network, addr, name string) (string, error) {
	id := uint16(time.Now().UnixNano())
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, _ := b.Finish()
	var resp []byte
	err := ns.Do(func() error {
		c, err := net.DialTimeout(network, addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if network == "tcp" {
			q = append(enc.BigEndian.AppendUint16(nil, uint16(len(q))), q...)
		}
		if _, err := c.Write(q); err != nil {
			return err
		}
		if network == "tcp" {
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				return err
			}
			resp = make([]byte, enc.BigEndian.Uint16(l[:]))
			_, err = io.ReadFull(c, resp)
			return err
		}
		resp = make([]byte, 1500)
		n, err := c.Read(resp)
		resp = resp[:n]
		return err
	})
	if err != nil {
		return "", err
	}
	var p dnsmessage.Parser
	h, err := p.Start(resp)
	if err != nil {
		return "", err
	}
	if h.ID != id || h.RCode != dnsmessage.RCodeSuccess {
		return "", fmt.Errorf("answer id %d rcode %v", h.ID, h.RCode)
	}
	_ = p.SkipAllQuestions()
	a, err := p.AllAnswers()
	if err != nil || len(a) == 0 {
		return "", fmt.Errorf("no answer: %v", err)
	}
	r, ok := a[0].Body.(*dnsmessage.AResource)
	if !ok {
		return "", fmt.Errorf("answer %v", a[0].Body)
	}
	return netip.AddrFrom4(r.A).String(), nil
}

// proxyGet sends "GET url" to the HTTP proxy at proxy inside ns, as a client with HTTP_PROXY
// set does, and returns the status line and body.
func proxyGet(ns *netnstest.NS, proxy, url string) (string, string, error) {
	host, _, _ := strings.Cut(strings.TrimPrefix(url, "http://"), "/")
	return proxyExchange(ns, proxy, "GET "+url+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n", "")
}

// proxyConnect opens a CONNECT tunnel to target through the proxy and sends a plain HTTP GET
// through it, as an HTTPS client would send its TLS.
func proxyConnect(ns *netnstest.NS, proxy, target string) (string, string, error) {
	return proxyExchange(ns, proxy, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: "+target+"\r\nConnection: close\r\n\r\n")
}

func proxyExchange(ns *netnstest.NS, proxy, req, inner string) (status, body string, err error) {
	err = ns.Do(func() error {
		c, err := net.DialTimeout("tcp", proxy, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			return err
		}
		r := bufio.NewReader(c)
		if inner != "" {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.Contains(line, " 200 ") {
				return fmt.Errorf("CONNECT: %q", line)
			}
			for { // the rest of the CONNECT answer's header
				if l, err := r.ReadString('\n'); err != nil || l == "\r\n" {
					break
				}
			}
			if _, err := io.WriteString(c, inner); err != nil {
				return err
			}
		}
		all, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		head, b, _ := strings.Cut(string(all), "\r\n\r\n")
		status, _, _ = strings.Cut(head, "\r\n")
		body = b
		return nil
	})
	return status, body, err
}

// serveLineEcho answers every line with itself on addr inside ns, holding each connection until
// the client closes it.
func serveLineEcho(t testing.TB, ns *netnstest.NS, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			open = append(open, c)
			go func() { echoLines(c); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

// metric reads one sample of a Prometheus text exposition at url inside ns ("name{labels}").
func metric(t testing.TB, ns *netnstest.NS, url, sample string) float64 {
	t.Helper()
	code, body, err := httpGet(ns, url, 2*time.Second)
	if err != nil || code != 200 {
		t.Fatalf("metrics %s: %d %v", url, code, err)
	}
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s at %s", sample, url)
	return 0
}

// echoLines copies c back to itself through a small buffer. Not io.Copy: between two TCP sockets
// it splices through a pipe, two more descriptors per connection, which caps a process at a
// third of its open file limit in connections.
func echoLines(c net.Conn) {
	buf := make([]byte, 512)
	_, _ = io.CopyBuffer(struct{ io.Writer }{c}, struct{ io.Reader }{c}, buf)
}
