package conformance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/porttest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/pkitest"
)

// The environment run.sh adds for the ingress controller and the tunnel's certificates.
const (
	envTraefik     = "IKM_CONFORMANCE_TRAEFIK"       // the traefik binary build-binaries.sh built
	envTunnelCA    = "IKM_CONFORMANCE_TUNNEL_CA"     // the CA (PEM) the plugin's mesh.tunnel_ca names
	envTunnelCAKey = "IKM_CONFORMANCE_TUNNEL_CA_KEY" // its key (PEM), to issue the shadow Ingresses' certificates
)

// The IngressClass of the local cluster's ingress controller and its ServiceAccount in kube-system
// (test/testcluster/traefik.yaml).
const (
	ingressClass   = "traefik"
	traefikAccount = "ikm-traefik"
)

// ingress is Traefik, the local cluster's ingress controller: its Kubernetes Ingress provider
// watches the local cluster's Ingress objects of class traefik (the shadow Ingresses the VK
// applies), their Services' EndpointSlices and TLS Secrets, and routes the tunnel on the tunnel
// address: ws:// on port 80 (entrypoint web), wss:// on 443 (websecure, the Ingress's certificate
// by SNI). It runs on the local real node's host; the remote pods reach it on the remote node's
// bridge address, as a site's public ingress address.
type ingress struct {
	t       *testing.T
	bin     string
	args    []string
	env     []string
	log     string
	api     string // Traefik's API and /ping, on loopback
	addr    netip.AddrPort
	cmd     *exec.Cmd
	done    chan error
	started time.Time
}

// startIngress starts Traefik on addr (port 80) and addr's port 443 against the local cluster,
// until the test ends.
func startIngress(t *testing.T, env *Env, logDir string, addr netip.AddrPort) *ingress {
	t.Helper()
	return startIngressFor(t, env.Local, os.Getenv(envLocal), "ingress-traefik.log", logDir, addr)
}

// startIngressFor starts Traefik on addr and addr's port 443 against the cluster of client c and
// kubeconfig (its own ServiceAccount is made there), logging into logDir/logName, until the test
// ends.
func startIngressFor(t *testing.T, c kubernetes.Interface, kubeconfig, logName, logDir string, addr netip.AddrPort) *ingress {
	t.Helper()
	bin := os.Getenv(envTraefik)
	if bin == "" {
		t.Fatalf("%s must name the traefik binary (run.sh sets it)", envTraefik)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	access := traefikAccess(t, c, kubeconfig, dir)
	secure := netip.AddrPortFrom(addr.Addr(), 443)
	api := porttest.FreeLoopback(t)
	in := &ingress{t: t, bin: bin, addr: addr, api: "http://" + api, log: filepath.Join(logDir, logName),
		// KUBECONFIG alone: no in-cluster variable may make the provider look elsewhere.
		env: append(withoutEnv(os.Environ(), "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"), "KUBECONFIG="+access),
		args: []string{
			// Never call home from a test.
			"--global.checknewversion=false", "--global.sendanonymoususage=false",
			"--log.level=INFO", "--log.nocolor=true",
			"--entrypoints.web.address=" + addr.String(),
			"--entrypoints.websecure.address=" + secure.String(),
			// As Traefik's Helm chart sets it: every router on websecure serves TLS.
			"--entrypoints.websecure.http.tls=true",
			"--entrypoints.traefik.address=" + api,
			"--ping=true", "--api=true", "--api.insecure=true", "--api.dashboard=false",
			"--providers.kubernetesingress=true",
			"--providers.kubernetesingress.ingressclass=" + ingressClass,
		}}
	for _, a := range []netip.AddrPort{addr, secure} {
		if ln, err := net.Listen("tcp", a.String()); err != nil {
			t.Fatalf("the ingress's address %s is taken (a controller left by an interrupted run?): %v", a, err)
		} else {
			ln.Close()
		}
	}
	in.start()
	t.Cleanup(in.stop)
	return in
}

// start runs Traefik and waits for its /ping.
func (in *ingress) start() {
	in.t.Helper()
	logf, err := os.OpenFile(in.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		in.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(in.bin, in.args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = in.env, logf, logf
	// If the suite dies without its cleanups (a signal), Traefik stops with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		in.t.Fatalf("start traefik (the ingress controller): %v", err)
	}
	in.cmd, in.done, in.started = cmd, make(chan error, 1), time.Now()
	go func() { in.done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-in.done:
			in.t.Fatalf("traefik (the ingress controller) exited at start: %v; see %s", err, in.log)
		default:
		}
		if body, err := in.get("/ping"); err == nil && strings.TrimSpace(body) == "OK" {
			return
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("traefik's /ping on %s did not answer within 30 s; see %s", in.api, in.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends Traefik (SIGTERM, then SIGKILL after 10 s).
func (in *ingress) stop() {
	if in.cmd == nil {
		return
	}
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
	case <-time.After(10 * time.Second):
		_ = in.cmd.Process.Kill()
		<-in.done
	}
	in.cmd = nil
}

// restart stops and starts the controller, as a rollout or a crash of its pod does: every
// WebSocket through it is cut.
func (in *ingress) restart() {
	in.t.Helper()
	in.stop()
	in.start()
}

func (in *ingress) get(path string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(in.api + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", path, resp.Status)
	}
	return string(b), err
}

// waitRoute waits until Traefik routes host, on both entrypoints, to backend (the shadow pod's
// address, from the Service's EndpointSlices): the controller read the VK's Ingress and follows
// the endpoints by itself.
func (in *ingress) waitRoute(host, backend string) time.Duration {
	in.t.Helper()
	start := time.Now()
	var seen string
	for time.Since(start) < 90*time.Second {
		var ok bool
		ok, seen = in.routes(host, backend)
		if ok {
			return time.Since(start)
		}
		if in.t.Context().Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	in.t.Fatalf("traefik does not route %s to %s within 90 s: %s; see %s", host, backend, seen, in.log)
	return 0
}

// routes tells whether Traefik's routers for host, on web and websecure, lead to a service whose
// only server is backend.
func (in *ingress) routes(host, backend string) (bool, string) {
	var routers []struct {
		Name, Rule, Service, Status string
		EntryPoints                 []string
	}
	var services []struct {
		Name         string
		LoadBalancer struct {
			Servers []struct{ URL string }
		}
	}
	for path, into := range map[string]any{"/api/http/routers": &routers, "/api/http/services": &services} {
		body, err := in.get(path)
		if err == nil {
			err = json.Unmarshal([]byte(body), into)
		}
		if err != nil {
			return false, err.Error()
		}
	}
	entrypoints := map[string]bool{}
	var seen []string
	for _, r := range routers {
		if !strings.Contains(r.Rule, `Host("`+host+`")`) && !strings.Contains(r.Rule, "Host(`"+host+"`)") {
			continue
		}
		for _, s := range services {
			if s.Name != r.Service && !strings.HasPrefix(s.Name, r.Service+"@") {
				continue
			}
			var urls []string
			for _, srv := range s.LoadBalancer.Servers {
				urls = append(urls, srv.URL)
			}
			seen = append(seen, fmt.Sprintf("router %s (%v, %s) → %v", r.Name, r.EntryPoints, r.Status, urls))
			if r.Status == "enabled" && len(urls) == 1 && urls[0] == "http://"+backend {
				for _, e := range r.EntryPoints {
					entrypoints[e] = true
				}
			}
		}
	}
	if len(seen) == 0 {
		return false, "no router for the host yet"
	}
	return entrypoints["web"] && entrypoints["websecure"], strings.Join(seen, "; ")
}

// traefikAccess makes what Traefik's Kubernetes Ingress provider needs in the local cluster, as
// its chart installs it (test/testcluster/traefik.yaml: the IngressClass, a ServiceAccount bound
// to a ClusterRole of exactly the kinds it watches), and writes a kubeconfig with that account's
// token into dir.
func traefikAccess(t *testing.T, c kubernetes.Interface, localKubeconfig, dir string) string {
	t.Helper()
	ctx := t.Context()
	decode := serializer.NewCodecFactory(scheme.Scheme).UniversalDeserializer().Decode
	for doc := range strings.SplitSeq(string(testcluster.TraefikManifest), "\n---\n") {
		obj, _, err := decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("test/testcluster/traefik.yaml: %v", err)
		}
		switch o := obj.(type) {
		case *networkingv1.IngressClass:
			_, err = c.NetworkingV1().IngressClasses().Create(ctx, o, metav1.CreateOptions{})
		case *corev1.ServiceAccount:
			_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = c.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("test/testcluster/traefik.yaml: a %T, which this harness does not create", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create %T for traefik: %v", obj, err)
		}
	}
	tok, err := c.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, traefikAccount,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](4 * 3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for traefik: %v", err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", localKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	ca := rc.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(rc.CAFile); err != nil {
			t.Fatalf("the local apiserver's CA: %v", err)
		}
	}
	caFile := pkitest.Write(t, dir, "ca.crt", ca)
	tokenFile := pkitest.Write(t, dir, "token", []byte(tok.Status.Token))
	return pkitest.Write(t, dir, "kubeconfig", fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: traefik, user: {tokenFile: %q}}]
contexts: [{name: traefik, context: {cluster: local, user: traefik}}]
current-context: traefik
`, rc.Host, caFile, tokenFile))
}

// tunnelCA is the CA run.sh made for the tunnel's certificates: the plugin's mesh.tunnel_ca
// names it, so the sidecars trust what it signs.
func tunnelCA(t *testing.T) *pkitest.CA {
	t.Helper()
	certPEM, err := os.ReadFile(os.Getenv(envTunnelCA))
	if err != nil {
		t.Fatalf("%s: %v (run.sh makes it)", envTunnelCA, err)
	}
	keyPEM, err := os.ReadFile(os.Getenv(envTunnelCAKey))
	if err != nil {
		t.Fatalf("%s: %v", envTunnelCAKey, err)
	}
	ca, err := pkitest.LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("the tunnel CA: %v", err)
	}
	return ca
}

// tlsSecret writes the shadow Ingress's certificate Secret (<component>-tls, what cert-manager
// would issue for the Ingress's tls section) with a certificate for host signed by ca.
func (m *meshRun) tlsSecret(ns, component, host string, ca *pkitest.CA, spec pkitest.LeafSpec) pkitest.Leaf {
	m.t.Helper()
	spec.Name, spec.DNS = host, []string{host}
	leaf := ca.Issue(m.t, spec)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: component + "-tls", Namespace: ns}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: leaf.CertPEM, corev1.TLSPrivateKeyKey: leaf.KeyPEM}}
	ctx := m.t.Context()
	_, err := m.env.Local.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = m.env.Local.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
	}
	if err != nil {
		m.t.Fatalf("write the TLS Secret %s/%s: %v", ns, s.Name, err)
	}
	return leaf
}

// servedCertificate is the certificate Traefik serves for host on its TLS entrypoint (by SNI).
func (in *ingress) servedCertificate(host string) (*x509.Certificate, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(in.t.Context(), "tcp", netip.AddrPortFrom(in.addr.Addr(), 443).String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	// Only to read what is served: whether it verifies is the sidecar's business.
	tc := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true}) //nolint:gosec
	if err := tc.HandshakeContext(in.t.Context()); err != nil {
		return nil, err
	}
	return tc.ConnectionState().PeerCertificates[0], nil
}

// waitCertificate waits until Traefik serves want for host (it reads the Secret by its watch).
func (in *ingress) waitCertificate(host string, want []byte) {
	in.t.Helper()
	b, _ := pem.Decode(want)
	var last string
	for start := time.Now(); time.Since(start) < 60*time.Second; time.Sleep(250 * time.Millisecond) {
		got, err := in.servedCertificate(host)
		if err == nil && b != nil && string(got.Raw) == string(b.Bytes) {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("serves %q issued by %q", got.Subject.CommonName, got.Issuer.CommonName)
		}
	}
	in.t.Fatalf("traefik does not serve the Secret's certificate for %s within 60 s: %s; see %s", host, last, in.log)
}

// withoutEnv is environ without the variables names.
func withoutEnv(environ []string, names ...string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			keep = keep && name != n
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// certificateRefused proves a wss:// sidecar refuses a certificate that does not verify, says why
// and never falls back: the shadow Ingress's Secret is replaced by one from a CA nobody trusts and
// the controller restarted (which cuts the WebSocket, so the sidecar re-dials); the sidecar's log
// and metric name the refusal and its session stays down; then the good certificate comes back and
// so does traffic (in: a request answered through the mesh).
func (m *meshRun) certificateRefused(remote *corev1.Pod, ns, component, host string, ca *pkitest.CA, good pkitest.Leaf, in func(what string) string) {
	m.t.Helper()
	before := metricValue(m.agentMetrics(remote), "mesh_agent_tunnel_certificate_refusals_total")
	impostor := m.tlsSecret(ns, component, host, pkitest.NewCA(m.t, "impostor ca"), pkitest.LeafSpec{})
	m.ing.waitCertificate(host, impostor.CertPEM)
	sinceTime := time.Now().UTC().Format(time.RFC3339)
	m.ing.restart()
	// Until Traefik has read the Secret again it serves its own default certificate, which is
	// refused too (another name); the impostor's is refused as signed by an unknown authority.
	var line string
	m.poll("the sidecar refuses the impostor's certificate and says why", 60*time.Second, func(ctx context.Context) (bool, string) {
		logs, err := exec.CommandContext(ctx, m.kubectl, "--kubeconfig", m.remoteKubeconfig(), "-n", remote.Namespace,
			"logs", remote.Name, "-c", "mesh-agent", "--since-time="+sinceTime).CombinedOutput()
		if err != nil {
			return false, fmt.Sprintf("kubectl logs: %v: %s", err, truncate(string(logs), 200))
		}
		for l := range strings.Lines(string(logs)) {
			if strings.Contains(l, "tunnel server's certificate refused") && strings.Contains(l, "unknown authority") {
				line = strings.TrimSpace(l)
				return true, ""
			}
		}
		return false, truncate(string(logs), 600)
	})
	metrics := m.agentMetrics(remote)
	after := metricValue(metrics, "mesh_agent_tunnel_certificate_refusals_total")
	if after <= before || metricValue(metrics, "mesh_agent_tunnel_session_active") != 0 {
		m.t.Fatalf("the sidecar's metrics: certificate refusals %v → %v, session active %v: want more refusals and no session (no fallback)",
			before, after, metricValue(metrics, "mesh_agent_tunnel_session_active"))
	}
	m.t.Logf("PROVEN a certificate from an unknown CA is refused and explained, with no fallback to ws:// (session down; mesh_agent_tunnel_certificate_refusals_total %v → %v): %s",
		before, after, truncate(line, 500))

	restored := time.Now()
	m.tlsSecret(ns, component, host, ca, pkitest.LeafSpec{})
	answer := in("local client → the offloaded pod after the good certificate is back")
	m.t.Logf("PROVEN the mesh comes back %s after the good certificate's Secret is written again: %q", since(restored), lastLine(answer))
}

// metricValue is the value of the sample name in the Prometheus text out, -1 when absent.
func metricValue(out, name string) float64 {
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == name {
			var v float64
			if _, err := fmt.Sscan(f[1], &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// firstMatch is the first line of out that starts with name, or "".
func firstMatch(out, name string) string {
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, name) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// ingressFaults proves the tunnel survives what happens to a real controller, each fault timed
// until both directions answer again (out, in: requests that retry until answered): the
// controller restarted, and the shadow Ingress deleted and re-created (as an operator or a GitOps
// tool might) while the tunnel has to re-dial.
func (m *meshRun) ingressFaults(remote *corev1.Pod, ns, component string, out, in func(what string) string) {
	m.t.Helper()
	cut := time.Now()
	m.ing.restart()
	back, answer := out("offloaded → local after the ingress controller's restart"), in("local → offloaded after the ingress controller's restart")
	m.t.Logf("PROVEN the mesh recovers from an ingress controller restart in %s (both ways): %q, %q", since(cut), lastLine(back), lastLine(answer))

	ctx := m.t.Context()
	ing, err := m.env.Local.NetworkingV1().Ingresses(ns).Get(ctx, component, metav1.GetOptions{})
	if err != nil {
		m.t.Fatalf("the shadow Ingress: %v", err)
	}
	if err := m.env.Local.NetworkingV1().Ingresses(ns).Delete(ctx, component, metav1.DeleteOptions{}); err != nil {
		m.t.Fatalf("delete the shadow Ingress: %v", err)
	}
	host := ing.Spec.Rules[0].Host
	m.poll("traefik drops the deleted Ingress's route", 60*time.Second, func(context.Context) (bool, string) {
		_, seen := m.ing.routes(host, "")
		return seen == "no router for the host yet", seen
	})
	// A deleted route leaves established WebSockets alone; a restart cuts them, and the sidecar's
	// re-dials now find no route.
	m.ing.restart()
	m.poll("the tunnel down without its Ingress", 60*time.Second, func(context.Context) (bool, string) {
		out := m.agentMetrics(remote)
		return metricValue(out, "mesh_agent_tunnel_session_active") == 0, firstMatch(out, "mesh_agent_tunnel_session_active")
	})
	ing.ObjectMeta = metav1.ObjectMeta{Name: ing.Name, Namespace: ing.Namespace, Labels: ing.Labels, Annotations: ing.Annotations}
	recreated := time.Now()
	if _, err := m.env.Local.NetworkingV1().Ingresses(ns).Create(ctx, ing, metav1.CreateOptions{}); err != nil {
		m.t.Fatalf("re-create the shadow Ingress: %v", err)
	}
	back, answer = out("offloaded → local after the Ingress is re-created"), in("local → offloaded after the Ingress is re-created")
	m.t.Logf("PROVEN the mesh recovers when the shadow Ingress is deleted and re-created (the tunnel cut meanwhile): both ways answer %s after the re-create: %q, %q",
		since(recreated), lastLine(back), lastLine(answer))
}

// agentMetrics is the offloaded pod's mesh-agent's /metrics, read from its shell container (the
// pod's loopback), or "" when it does not answer.
func (m *meshRun) agentMetrics(remote *corev1.Pod) string {
	out, err := m.tryExec(m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell", "sh", "-c",
		`printf 'GET /metrics HTTP/1.0\r\n\r\n' | nc -w 3 127.0.0.1 9101`)
	if err != nil {
		return ""
	}
	return out
}
