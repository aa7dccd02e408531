package conformance

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/pkitest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
)

// envNetstackVK names the second virtual kubelet's node (run.sh, real nodes): its VK renders
// manifests/shadow-pod-netstack.tmpl.
const envNetstackVK = "IKM_CONFORMANCE_NETSTACK_VK_NODE"

// podSecurityRestricted labels a namespace for Pod Security admission "restricted".
var podSecurityRestricted = map[string]string{
	"pod-security.kubernetes.io/enforce":         "restricted",
	"pod-security.kubernetes.io/enforce-version": "latest",
}

// TestMeshRealPodsRestricted proves the zero-privilege mesh as real pods through InterLink's
// unmodified VK, with every namespace involved enforcing Pod Security "restricted": the local pod's,
// the shadow's (<ns>-wstunnel) and the remote one. A second VK renders the netstack shadow template;
// the pod asks for a netstack sidecar (annotation). Then:
//   - the shadow pod (shadow-agent --mode=netstack: no capability, user 65532) is admitted and Ready
//     on the local real node, and the offloaded pod with its netstack mesh-agent on the remote one;
//   - a local client pod's request to the pod's IP (the shadow's) on its declared port is answered by
//     the offloaded echo-server, which sees the sidecar's loopback relay as its client;
//   - the offloaded pod resolves a local Service's name through the sidecar's DNS forwarder (its only
//     nameserver, 127.0.0.1) and the mesh, and reaches the Service through a fixed relay the pod
//     declares (mesh.interlink-k8s-mesh.io/forwards), seen there as the shadow pod;
//   - the shadow pod deleted and replaced by its Deployment, traffic recovers both ways.
func TestMeshRealPodsRestricted(t *testing.T) {
	vkNode := os.Getenv(envNetstackVK)
	if os.Getenv(envRealMesh) != "1" || vkNode == "" {
		t.Skipf("no real-node clusters with a netstack VK (%s, %s unset): run `make conformance` as root", envRealMesh, envNetstackVK)
	}
	m := startMeshRun(t, "realns", vkNode, true)
	env, ctx, localNode, remoteNode := m.env, t.Context(), m.localNode, m.remoteNode

	// Every namespace exists, labelled, before anything lands in it: the VK and the plugin use a
	// namespace they find.
	shadowNS := m.ns + "-wstunnel"
	remoteNS := "offloading-" + m.ns
	for _, n := range []struct {
		c    kubernetes.Interface
		name string
	}{{env.Local, m.ns}, {env.Local, shadowNS}, {env.Remote, remoteNS}} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: podSecurityRestricted}}
		if _, err := n.c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace %s: %v", n.name, err)
		}
		t.Cleanup(func() {
			_ = n.c.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), n.name, metav1.DeleteOptions{})
		})
	}
	m.waitServiceAccount()
	// The namespaces refuse what kernel mode needs: the labels are in force.
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "net-admin"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: m.shell,
			SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}}}},
	}
	if _, err := env.Local.CoreV1().Pods(shadowNS).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil ||
		!strings.Contains(err.Error(), "NET_ADMIN") {
		t.Fatalf("a NET_ADMIN pod in %s: %v, want Pod Security's refusal naming NET_ADMIN", shadowNS, err)
	}

	m.localPod("target", localNode, corev1.Container{Name: "echo", Image: m.echo, ImagePullPolicy: corev1.PullNever})
	client := m.localPod("client", localNode, corev1.Container{Name: "shell", Image: m.shell, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}})
	targetSvc := m.service("target")

	start := time.Now()
	web := m.offloadedPod(vkNode, map[string]string{
		plugin.AnnotMeshMode:     "netstack",
		plugin.AnnotMeshForwards: "18080=target:8080",
	})
	restrictPod(&web.Spec)
	web, err := env.Local.CoreV1().Pods(m.ns).Create(ctx, web, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create the offloaded pod: %v", err)
	}

	shadow := m.waitShadow(shadowNS, shadowComponent(web), localNode, "")
	if caps := addedCapabilities(shadow); len(caps) > 0 {
		t.Fatalf("the netstack shadow pod adds capabilities %v", caps)
	}
	t.Logf("PROVEN the netstack shadow pod %s/%s, rendered by the VK from shadow-pod-netstack.tmpl, is admitted in a restricted namespace and Ready on a stock kubelet at %s (%s after create)",
		shadowNS, shadow.Name, shadow.Status.PodIP, since(start))

	// This VK's mesh script dials wss:// (run.sh renders mesh-script-ingress.tmpl as a VK with
	// Network.IngressTLS does): the shadow Ingress's certificate, as cert-manager would write it,
	// signed by the CA the plugin's mesh.tunnel_ca names.
	component := shadowComponent(web)
	host, backend := m.ingressBackend(shadowNS, component)
	ca := tunnelCA(t)
	good := m.tlsSecret(shadowNS, component, host, ca, pkitest.LeafSpec{})
	m.ing.waitRoute(host, backend)
	m.ing.waitCertificate(host, good.CertPEM)
	t.Logf("PROVEN Traefik routes %s on :443 with the shadow Ingress's certificate (Secret %s-tls, issued by the test's CA standing in for cert-manager)", host, component)

	remote := m.waitRemote(web.UID, remoteNode)
	if caps := addedCapabilities(remote); len(caps) > 0 {
		t.Fatalf("the offloaded pod adds capabilities %v", caps)
	}
	t.Logf("PROVEN the offloaded pod %s/%s runs on %s in a restricted namespace with the netstack mesh-agent sidecar (no capability), Ready %s after create",
		remote.Namespace, remote.Name, remoteNode, since(start))

	answer := m.execUntil("local client → http://"+shadow.Status.PodIP+":8080/", m.localKubeconfig(), m.ns, client.Name, "shell",
		regexp.MustCompile(`host=`+regexp.QuoteMeta(hostnameOf(remote))+` client=127\.0\.0\.1:`), httpGet(shadow.Status.PodIP)...)
	t.Logf("PROVEN a local client pod's request to the pod's IP %s (the shadow's sockets, no DNAT) is answered by the offloaded echo-server through the sidecar's loopback relay: %q (%s after create)",
		shadow.Status.PodIP, lastLine(answer), since(start))

	m.checkTunnelByName(remote)
	if spec := m.remoteMeshSpec(remote); !strings.HasPrefix(spec.Tunnel.URL, "wss://") || spec.Tunnel.CAFile == "" {
		t.Fatalf("mesh.json tunnel %+v: want wss:// verified with the plugin's mesh.tunnel_ca", spec.Tunnel)
	} else {
		t.Logf("PROVEN the mesh runs over wss:// through Traefik with the chain verified: mesh.json dials %s with caFile %s (the plugin's mesh.tunnel_ca, in the pod's mesh Secret)", spec.Tunnel.URL, spec.Tunnel.CAFile)
	}

	fqdn := "target." + m.ns + ".svc.cluster.local"
	found := m.execUntil("offloaded pod resolves "+fqdn, m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell",
		regexp.MustCompile(`Address:\s+`+regexp.QuoteMeta(targetSvc)+`\b`), "nslookup", fqdn)
	t.Logf("PROVEN the offloaded pod resolves %s to %s through the sidecar's DNS forwarder (127.0.0.1) and the mesh: %q", fqdn, targetSvc, lastLine(found))
	back := m.execUntil("offloaded pod → 127.0.0.1:18080 (forwards to target:8080)", m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell",
		regexp.MustCompile(`host=target `), httpGet("127.0.0.1", "18080")...)
	t.Logf("PROVEN the offloaded pod reaches the local Service target through its declared relay 127.0.0.1:18080, dialed from the shadow pod: %q", lastLine(back))

	m.logAgentMemory(" (netstack) after the requests above", m.findAgents(shadow, remote))

	webSvc := m.service("web")
	answer = m.execUntil("local client → Service web "+webSvc, m.localKubeconfig(), m.ns, client.Name, "shell",
		regexp.MustCompile(`host=`+regexp.QuoteMeta(hostnameOf(remote))+` `), httpGet(webSvc)...)
	t.Logf("PROVEN a local client pod reaches the offloaded pod through the ClusterIP Service web (%s → kube-proxy → the shadow pod's socket → the mesh): %q", webSvc, lastLine(answer))

	m.throughput("netstack", localNode, shadow, remote)
	m.probeFigures("netstack", localNode, shadow, remote)

	m.crashAndRecover(crashCheck{
		shadow: shadow, remote: remote,
		out: func(what string) string {
			return m.execUntil(what, m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell", regexp.MustCompile(`host=target `), httpGet("127.0.0.1", "18080")...)
		},
		in: func(what string) string {
			return m.execUntil(what, m.localKubeconfig(), m.ns, client.Name, "shell", regexp.MustCompile(`host=`+regexp.QuoteMeta(hostnameOf(remote))+` `), httpGet(shadow.Status.PodIP)...)
		},
	})

	in := func(what string) string {
		return m.execUntil(what, m.localKubeconfig(), m.ns, client.Name, "shell", regexp.MustCompile(`host=`+regexp.QuoteMeta(hostnameOf(remote))+` `), httpGet(shadow.Status.PodIP)...)
	}
	m.certificateRefused(remote, shadowNS, component, host, ca, good, in)

	dropped := time.Now()
	next := m.replaceShadow(shadow)
	back = m.execUntil("offloaded pod → target after the shadow pod's replacement", m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell",
		regexp.MustCompile(`host=target `), httpGet("127.0.0.1", "18080")...)
	answer = m.execUntil("local client → the new shadow pod's IP "+next.Status.PodIP, m.localKubeconfig(), m.ns, client.Name, "shell",
		regexp.MustCompile(`host=`+regexp.QuoteMeta(hostnameOf(remote))+` `), httpGet(next.Status.PodIP)...)
	t.Logf("PROVEN the netstack mesh recovers when the shadow pod is replaced: both directions answer through the new shadow %s, %s after the delete: %q, %q",
		next.Status.PodIP, time.Since(dropped).Round(100*time.Millisecond), lastLine(back), lastLine(answer))
	m.deleteOffloaded(web.Name, remote, shadowNS)
}

// restrictPod makes spec pass Pod Security "restricted": non-root (the images' nonroot user), the
// runtime's default seccomp profile, every capability dropped, no privilege escalation.
func restrictPod(spec *corev1.PodSpec) {
	spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   ptr.To(true),
		RunAsUser:      ptr.To[int64](65532),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	for i := range spec.Containers {
		spec.Containers[i].SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
	}
}

// addedCapabilities lists the capabilities any container of p adds.
func addedCapabilities(p *corev1.Pod) []corev1.Capability {
	var caps []corev1.Capability
	for _, c := range append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.SecurityContext != nil && c.SecurityContext.Capabilities != nil {
			caps = append(caps, c.SecurityContext.Capabilities.Add...)
		}
	}
	return caps
}
