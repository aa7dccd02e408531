package conformance

import (
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
)

// The names run.sh's real nodes answer besides cluster.local (IKM_NODE_DNS_SITE_ZONES): every name
// in siteZone is the node that answers it, on both sides, so an "external" name tells which site's
// DNS resolved it; the VK's WildcardDNS zone exists only in the remote site's DNS.
const (
	siteZone     = "site.test"
	wildcardZone = "mesh.test"
	envRemoteDNS = "IKM_CONFORMANCE_REMOTE_DNS" // the remote cluster's DNS, the plugin's mesh.tunnel_nameservers
)

// checkTunnelByName proves the sidecar brought the mesh up by resolving the tunnel's host name
// through the remote site's DNS, while the pod's own resolv.conf names the local DNS alone: its
// mesh.json dials <host>.mesh.test and names the remote DNS for it, and the pod is Ready (the
// startup probe waits for the first handshake through that tunnel).
func (m *meshRun) checkTunnelByName(remote *corev1.Pod) {
	m.t.Helper()
	want := os.Getenv(envRemoteDNS)
	if want == "" {
		m.t.Fatalf("%s unset (run.sh sets it)", envRemoteDNS)
	}
	spec := m.remoteMeshSpec(remote)
	u, err := url.Parse(spec.Tunnel.URL)
	if err != nil || !strings.HasSuffix(u.Hostname(), "."+wildcardZone) {
		m.t.Fatalf("mesh.json dials %q (%v), want a host under %s resolved by name", spec.Tunnel.URL, err, wildcardZone)
	}
	var ns []string
	for _, a := range spec.Tunnel.Nameservers {
		ns = append(ns, a.String())
	}
	if !slices.Equal(ns, []string{want}) {
		m.t.Fatalf("mesh.json tunnel.nameservers %v, want [%s] (the remote cluster's DNS)", ns, want)
	}
	m.t.Logf("PROVEN the sidecar resolved the tunnel's host %s through the remote site's DNS %s (mesh.tunnel_nameservers) before the mesh was up, while the pod's resolv.conf names only the local DNS %s", u.Hostname(), want, m.env.DNSIP)
}

// remoteMeshSpec reads the mesh.json the plugin wrote for the remote pod.
func (m *meshRun) remoteMeshSpec(remote *corev1.Pod) meshspec.Spec {
	m.t.Helper()
	for _, v := range remote.Spec.Volumes {
		if v.Secret == nil || v.Name != "mesh-agent-config" {
			continue
		}
		s, err := m.env.Remote.CoreV1().Secrets(remote.Namespace).Get(m.t.Context(), v.Secret.SecretName, metav1.GetOptions{})
		if err != nil {
			m.t.Fatalf("the mesh Secret %s: %v", v.Secret.SecretName, err)
		}
		spec, err := meshspec.Parse(s.Data[plugin.MeshSpecKey])
		if err != nil {
			m.t.Fatalf("the mesh Secret's %s: %v", plugin.MeshSpecKey, err)
		}
		return spec
	}
	m.t.Fatalf("remote pod %s has no mesh-agent-config Secret volume", remote.Name)
	return meshspec.Spec{}
}

// resolves waits until the pod's container resolves name to addr (nslookup), and returns the answer.
func (m *meshRun) resolves(what, kubeconfig string, p *corev1.Pod, container, name, addr string) string {
	m.t.Helper()
	return lastLine(m.execUntil(what, kubeconfig, p.Namespace, p.Name, container,
		regexp.MustCompile(`Name:\s+`+regexp.QuoteMeta(name)+`\s+Address:\s+`+regexp.QuoteMeta(addr)+`\b`), "nslookup", name))
}

// checkDNSModes proves what an offloaded pod resolves under each DNS mode, on real pods:
//   - local (the pod web, the plugin's default): the local cluster's names (the kubernetes Service
//     is the local one) and the local site's external names, through the mesh;
//   - remote and none (two more pods, by annotation mesh.interlink-k8s-mesh.io/dns): the remote
//     cluster's DNS in resolv.conf, its cluster names and the remote site's external names, while
//     the mesh still carries their traffic to local pods by address; mesh.json records the mesh
//     nameserver under remote only.
func (m *meshRun) checkDNSModes(web *corev1.Pod, vkNode, remoteNode string, target *corev1.Pod) {
	m.t.Helper()
	ctx := m.t.Context()
	localK8s, err := m.env.Local.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		m.t.Fatal(err)
	}
	remoteK8s, err := m.env.Remote.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		m.t.Fatal(err)
	}
	localSite := target.Status.HostIP
	const k8sName = "kubernetes.default.svc.cluster.local"
	external := "www." + siteZone

	remoteWeb := m.remoteOf(web)
	m.resolves("dns local: "+k8sName, m.remoteKubeconfig(), remoteWeb, "shell", k8sName, localK8s.Spec.ClusterIP)
	got := m.resolves("dns local: "+external, m.remoteKubeconfig(), remoteWeb, "shell", external, localSite)
	m.t.Logf("PROVEN dns local: the offloaded pod resolves %s to the local cluster's %s and the external name %s through the local site's DNS (%q), all through the mesh",
		k8sName, localK8s.Spec.ClusterIP, external, got)

	// The remote and none pods at once: each its own shadow, route and remote pod.
	shadowNS := m.ns + "-wstunnel"
	modes := []string{"remote", "none"}
	pods := make([]*corev1.Pod, len(modes))
	for i, mode := range modes {
		p := m.offloadedPod(vkNode, map[string]string{plugin.AnnotMeshDNS: mode})
		p.Name, p.Labels = "dns"+mode, map[string]string{"app": "dns" + mode}
		p.Spec.Containers = []corev1.Container{{Name: "shell", Image: m.shell, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "3600"}}}
		if pods[i], err = m.env.Local.CoreV1().Pods(m.ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			m.t.Fatalf("create the dns %s pod: %v", mode, err)
		}
	}
	for i, mode := range modes {
		pod := pods[i]
		m.waitShadow(shadowNS, shadowComponent(pod), target.Spec.NodeName, "")
		m.ing.waitRoute(m.ingressBackend(shadowNS, shadowComponent(pod)))
		remote := m.waitRemote(pod.UID, remoteNode)
		remoteSite := remote.Status.HostIP
		resolv := m.exec(m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell", "cat", "/etc/resolv.conf")
		if strings.Contains(resolv, m.env.DNSIP.String()) || !strings.Contains(resolv, "nameserver "+os.Getenv(envRemoteDNS)) {
			m.t.Fatalf("dns %s: resolv.conf %q, want the remote cluster's DNS %s and not the local %s", mode, resolv, os.Getenv(envRemoteDNS), m.env.DNSIP)
		}
		spec := m.remoteMeshSpec(remote)
		if recorded := len(spec.DNS.Nameservers) > 0; recorded != (mode == "remote") || len(spec.Tunnel.Nameservers) > 0 {
			m.t.Fatalf("dns %s: mesh.json dns %+v, tunnel nameservers %v: want the mesh nameserver recorded only under remote, and no tunnel nameserver (the pod's resolv.conf resolves the tunnel's host)", mode, spec.DNS, spec.Tunnel.Nameservers)
		}
		m.resolves("dns "+mode+": "+k8sName, m.remoteKubeconfig(), remote, "shell", k8sName, remoteK8s.Spec.ClusterIP)
		got := m.resolves("dns "+mode+": "+external, m.remoteKubeconfig(), remote, "shell", external, remoteSite)
		back := m.execUntil("dns "+mode+": the mesh still reaches "+target.Status.PodIP, m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell",
			regexp.MustCompile(`host=target `), httpGet(target.Status.PodIP)...)
		m.t.Logf("PROVEN dns %s (annotation %s): the offloaded pod's resolv.conf names the remote cluster's DNS (mesh.json records the mesh nameserver: %v), %s is the remote cluster's %s, the external name %s resolves through the remote site's DNS (%q), and the mesh still carries it to the local pod %s: %q",
			mode, plugin.AnnotMeshDNS, mode == "remote", k8sName, remoteK8s.Spec.ClusterIP, external, got, target.Status.PodIP, lastLine(back))
		m.deleteOffloaded(pod.Name, remote, shadowNS)
	}
}

// remoteOf is the Ready remote pod of the local pod p.
func (m *meshRun) remoteOf(p *corev1.Pod) *corev1.Pod {
	m.t.Helper()
	l, err := m.env.Remote.CoreV1().Pods("").List(m.t.Context(), metav1.ListOptions{LabelSelector: "interlink.io/source.pod_uid=" + string(p.UID)})
	if err != nil || len(l.Items) != 1 {
		m.t.Fatalf("remote pod of %s: %d found, %v", p.Name, len(l.Items), err)
	}
	return &l.Items[0]
}
