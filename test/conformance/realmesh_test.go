package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
)

// The environment test/conformance/run.sh adds when both clusters have a real node (root).
const (
	envRealMesh      = "IKM_CONFORMANCE_REAL_MESH"      // 1: both clusters have a real node
	envTunnelAddress = "IKM_CONFORMANCE_TUNNEL_ADDRESS" // the ingress's IP:port, where <host>.mesh.test resolves remotely
	envKubectl       = "IKM_CONFORMANCE_KUBECTL"
	envEchoImage     = "IKM_CONFORMANCE_ECHO_IMAGE"  // echo-server from make images
	envShellImage    = "IKM_CONFORMANCE_SHELL_IMAGE" // busybox from make images
	envIperfImage    = "IKM_CONFORMANCE_IPERF_IMAGE" // iperf3 from make images
	envProbeImage    = "IKM_CONFORMANCE_PROBE_IMAGE" // netprobe from make images
	envKubeProxy     = "IKM_CONFORMANCE_KUBE_PROXY"  // 1: the local real node runs kube-proxy
	envClusterDNS    = "IKM_CONFORMANCE_CLUSTER_DNS" // 1: and CoreDNS behind the kube-dns Service
)

// TestMeshRealPods proves the mesh as real pods through InterLink's unmodified VK: the shadow pod
// the VK renders from the project's template runs shadow-agent on the local cluster's real node, the
// plugin offloads the pod with its mesh-agent sidecar to the remote cluster's real node, the
// sidecar dials the tunnel through Traefik, the local cluster's ingress controller (which reads
// the shadow Ingress), and
//   - a local client pod's HTTP request to the pod's IP (the shadow pod's) is answered by the
//     offloaded echo-server;
//   - the offloaded pod reaches a local pod's IP through the mesh, seen there as the shadow pod;
//   - with kube-proxy on the local node: the client reaches the offloaded pod through a ClusterIP
//     Service (whose endpoint is the pod's IP, the shadow's), and the offloaded pod reaches a local
//     ClusterIP Service through the mesh;
//   - the offloaded pod's resolv.conf names the local cluster's DNS (mesh.dns_mode local);
//   - with CoreDNS behind the local kube-dns Service too: the offloaded pod resolves a local
//     Service's name through the mesh and reaches the Service by its short name, as at home.
func TestMeshRealPods(t *testing.T) {
	if os.Getenv(envRealMesh) != "1" {
		t.Skipf("no real-node clusters (%s unset): run `make conformance` as root", envRealMesh)
	}
	if os.Geteuid() != 0 {
		t.Skip("real pods and the ingress controller on the remote node's bridge need root")
	}
	m := startMeshRun(t, "realmesh", "", false)
	env, ctx, localNode, remoteNode := m.env, t.Context(), m.localNode, m.remoteNode
	m.wg = newWGRef(t, m.tunnel)
	m.localNamespace()

	// Local side: the target of the reverse direction and a client, on the local real node.
	target := m.localPod("target", localNode, corev1.Container{Name: "echo", Image: m.echo, ImagePullPolicy: corev1.PullNever})
	client := m.localPod("client", localNode, corev1.Container{Name: "shell", Image: m.shell, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}})

	// The offloaded pod: echo-server, and a shell to act from inside it.
	start := time.Now()
	web := m.offloadedPod(env.VKNode, nil)
	web, err := env.Local.CoreV1().Pods(m.ns).Create(ctx, web, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create the offloaded pod: %v", err)
	}

	// The VK renders the shadow from manifests/ (through make manifests); it must run for real.
	shadowNS := m.ns + "-wstunnel"
	shadow := m.waitShadow(shadowNS, shadowComponent(web), localNode, "")
	t.Logf("PROVEN the shadow pod %s/%s (shadow-agent image, the VK's rendering of the project's template) runs on a stock kubelet: Ready on %s at %s, %s after create",
		shadowNS, shadow.Name, localNode, shadow.Status.PodIP, since(start))

	// The ingress controller reads the shadow Ingress the VK applied and routes its host to the
	// shadow Service's endpoint, on the remote node's bridge (the only address the remote pods reach).
	host, backend := m.ingressBackend(shadowNS, shadowComponent(web))
	took := m.ing.waitRoute(host, backend)
	t.Logf("PROVEN Traefik (the local cluster's ingress controller) reads the VK's shadow Ingress: it routes Host %s on %s (ws://) and :443 (wss://) to %s, the shadow Service's endpoint (%s after the endpoint was ready)",
		host, m.tunnel, backend, took.Round(10*time.Millisecond))

	remote := m.waitRemote(web.UID, remoteNode)
	if len(remote.Spec.InitContainers) == 0 || remote.Spec.InitContainers[0].Name != plugin.MeshAgentContainer {
		t.Fatalf("remote pod's first init container is not %s", plugin.MeshAgentContainer)
	}
	t.Logf("PROVEN the offloaded pod %s/%s runs on %s with the mesh-agent native sidecar; its apps started after the first handshake (startup probe), %s after create",
		remote.Namespace, remote.Name, remoteNode, since(start))

	var local *corev1.Pod
	m.poll("local pod Running with the shadow pod's IP", 60*time.Second, func(ctx context.Context) (bool, string) {
		local, err = env.Local.CoreV1().Pods(m.ns).Get(ctx, web.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return local.Status.Phase == corev1.PodRunning && local.Status.PodIP == shadow.Status.PodIP, describePod(local)
	})

	// Local client → the pod's IP (the shadow's) → DNAT into WireGuard → tunnel → the offloaded pod.
	answer := m.execUntil("local client → http://"+local.Status.PodIP+":8080/", m.localKubeconfig(), m.ns, client.Name, "shell",
		regexp.MustCompile(`host=`+regexp.QuoteMeta(hostnameOf(remote))+` `), httpGet(local.Status.PodIP)...)
	t.Logf("PROVEN a local client pod's request to the pod's IP %s is answered by the offloaded echo-server on the remote node: %q (%s after create)",
		local.Status.PodIP, lastLine(answer), since(start))

	// The offloaded pod → a local pod's IP, routed into the mesh and seen as the shadow pod.
	back := m.execUntil("offloaded pod → http://"+target.Status.PodIP+":8080/", m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell",
		regexp.MustCompile(`host=target client=`+regexp.QuoteMeta(shadow.Status.PodIP)+`:`), httpGet(target.Status.PodIP)...)
	t.Logf("PROVEN the offloaded pod reaches the local pod %s through the mesh, which sees it as the shadow pod: %q", target.Status.PodIP, lastLine(back))

	m.logAgentMemory(" after the requests above", m.findAgents(shadow, remote))

	if os.Getenv(envKubeProxy) == "1" {
		webSvc := m.service("web")
		answer := m.execUntil("local client → Service web "+webSvc, m.localKubeconfig(), m.ns, client.Name, "shell",
			regexp.MustCompile(`host=`+regexp.QuoteMeta(hostnameOf(remote))+` `), httpGet(webSvc)...)
		t.Logf("PROVEN a local client pod reaches the offloaded pod through the ClusterIP Service web (%s → the shadow pod's IP → the mesh): %q", webSvc, lastLine(answer))
		targetSvc := m.service("target")
		back := m.execUntil("offloaded pod → Service target "+targetSvc, m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell",
			regexp.MustCompile(`host=target `), httpGet(targetSvc)...)
		t.Logf("PROVEN the offloaded pod reaches the local ClusterIP Service target (%s) through the mesh and the local kube-proxy: %q", targetSvc, lastLine(back))
		if os.Getenv(envClusterDNS) == "1" {
			fqdn := "target." + m.ns + ".svc.cluster.local"
			found := m.execUntil("offloaded pod resolves "+fqdn, m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell",
				regexp.MustCompile(`Address:\s+`+regexp.QuoteMeta(targetSvc)+`\b`), "nslookup", fqdn)
			t.Logf("PROVEN the offloaded pod resolves the local Service's name %s to %s through the mesh (the local CoreDNS behind %s): %q", fqdn, targetSvc, env.DNSIP, lastLine(found))
			byName := m.execUntil("offloaded pod → Service target by name", m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell",
				regexp.MustCompile(`host=target `), httpGet("target")...)
			t.Logf("PROVEN the offloaded pod reaches the local Service by its short name \"target\" (the local namespace's search list): %q", lastLine(byName))
			absent := m.exec(m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell", "sh", "-c", "nslookup absent."+m.ns+".svc.cluster.local; true")
			if !strings.Contains(absent, "NXDOMAIN") {
				t.Errorf("an absent local Service name answered %q, want NXDOMAIN from the local DNS", absent)
			}
		} else {
			t.Logf("Service names not checked: the local node runs no CoreDNS (%s unset)", envClusterDNS)
		}
	} else {
		t.Logf("Service IPs not checked: the local node runs no kube-proxy (%s unset)", envKubeProxy)
	}

	m.checkTunnelByName(remote)
	if os.Getenv(envClusterDNS) == "1" {
		m.checkDNSModes(web, env.VKNode, remoteNode, target)
	}

	resolv := m.exec(m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell", "cat", "/etc/resolv.conf")
	wantNS := "nameserver " + env.DNSIP.String()
	wantSearch := "search " + m.ns + ".svc.cluster.local"
	if !strings.Contains(resolv, wantNS) || !strings.Contains(resolv, wantSearch) {
		t.Errorf("offloaded pod's resolv.conf lacks %q or %q (mesh.dns_mode local):\n%s", wantNS, wantSearch, resolv)
	} else {
		t.Logf("PROVEN the offloaded pod's resolv.conf names the local cluster's DNS %s with the local search list", env.DNSIP)
	}

	m.throughput("kernel", localNode, shadow, remote)
	m.probeFigures("kernel", localNode, shadow, remote)

	check := crashCheck{
		shadow: shadow, remote: remote,
		out: func(what string) string {
			return m.execUntil(what, m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell", regexp.MustCompile(`host=target `), httpGet(target.Status.PodIP)...)
		},
		in: func(what string) string {
			return m.execUntil(what, m.localKubeconfig(), m.ns, client.Name, "shell", regexp.MustCompile(`host=`+regexp.QuoteMeta(hostnameOf(remote))+` `), httpGet(shadow.Status.PodIP)...)
		},
	}
	m.crashAndRecover(check)
	m.ingressFaults(remote, shadowNS, shadowComponent(web), check.out, check.in)

	// The shadow pod dies; its Deployment replaces it (a new pod, a new IP). The ingress controller
	// follows the Service's endpoint by itself, and mesh-agent re-dials by itself.
	dropped := time.Now()
	next := m.replaceShadow(shadow)
	back = m.execUntil("offloaded pod → http://"+target.Status.PodIP+":8080/ after the shadow pod's replacement", m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell",
		regexp.MustCompile(`host=target client=`+regexp.QuoteMeta(next.Status.PodIP)+`:`), httpGet(target.Status.PodIP)...)
	t.Logf("PROVEN the mesh recovers when the shadow pod is replaced: the offloaded pod reaches the local pod through the new shadow %s, %s after the delete: %q",
		next.Status.PodIP, time.Since(dropped).Round(100*time.Millisecond), lastLine(back))
	answer = m.execUntil("local client → the new shadow pod's IP "+next.Status.PodIP, m.localKubeconfig(), m.ns, client.Name, "shell",
		regexp.MustCompile(`host=`+regexp.QuoteMeta(hostnameOf(remote))+` `), httpGet(next.Status.PodIP)...)
	t.Logf("PROVEN the new shadow pod's IP %s answers with the offloaded pod, %s after the delete: %q", next.Status.PodIP, time.Since(dropped).Round(100*time.Millisecond), lastLine(answer))
	if l, err := env.Local.CoreV1().Pods(m.ns).Get(ctx, web.Name, metav1.GetOptions{}); err == nil {
		t.Logf("FOUND the local pod's IP after the replacement: %s (shadow now %s, was %s): InterLink's VK sets the pod IP once, at create",
			l.Status.PodIP, next.Status.PodIP, shadow.Status.PodIP)
		m.statusOverwrite(web.Name, next.Status.PodIP)
	}
	m.meshEventsDescribed(web.Name, shadow, next)

	// Delete: the remote pod and the shadow go.
	m.deleteOffloaded(web.Name, remote, shadowNS)
}

// meshEventsDescribed proves the plugin's mesh Events show in `kubectl describe pod` on the
// offloaded pod: lost and back when the shadow-agent crashed (crashAndRecover), lost when the shadow
// pod was deleted and back through its replacement, naming the IP the pod keeps.
func (m *meshRun) meshEventsDescribed(name string, old, next *corev1.Pod) {
	m.t.Helper()
	want := []*regexp.Regexp{
		regexp.MustCompile(`Warning\s+MeshLost\s+.*interlink-k8s-plugin\s+mesh lost: shadow pod \S+/` + regexp.QuoteMeta(old.Name) + ` is not ready`),
		regexp.MustCompile(`Normal\s+MeshReady\s+.*interlink-k8s-plugin\s+mesh back through shadow pod \S+/` + regexp.QuoteMeta(old.Name) + ` `),
		regexp.MustCompile(`Warning\s+MeshLost\s+.*interlink-k8s-plugin\s+mesh lost: shadow pod \S+/` + regexp.QuoteMeta(old.Name) + ` is being deleted`),
		regexp.MustCompile(`Normal\s+MeshReady\s+.*interlink-k8s-plugin\s+mesh back through shadow pod \S+/` + regexp.QuoteMeta(next.Name) + ` \(` + regexp.QuoteMeta(next.Status.PodIP) + `\)`),
	}
	var out string
	m.poll("MeshLost and MeshReady in kubectl describe pod "+name, 30*time.Second, func(ctx context.Context) (bool, string) {
		b, err := exec.CommandContext(ctx, m.kubectl, "--kubeconfig", m.localKubeconfig(), "-n", m.ns, "describe", "pod", name).CombinedOutput()
		if out = string(b); err != nil {
			return false, fmt.Sprintf("kubectl describe: %v: %s", err, truncate(out, 300))
		}
		for _, re := range want {
			if !re.MatchString(out) {
				return false, "no line matching " + re.String()
			}
		}
		return true, ""
	})
	_, events, _ := strings.Cut(out, "Events:")
	var lines []string
	for line := range strings.Lines(events) {
		if strings.Contains(line, "Mesh") {
			lines = append(lines, strings.Join(strings.Fields(line), " "))
		}
	}
	m.t.Logf("PROVEN kubectl describe pod %s shows the plugin's mesh Events (the shadow-agent's crash, then the shadow pod's replacement):\n\t%s", name, strings.Join(lines, "\n\t"))
}

// statusOverwrite records whether a status write by another client than the VK holds on an
// offloaded pod: the new shadow IP as the pod's IP, and a condition of this project's, as the
// plugin would write them with local credentials (issue 26). InterLink's VK keeps each pod's status
// in memory and writes it whole; this observes what that does to the other client's write.
func (m *meshRun) statusOverwrite(name, ip string) {
	m.t.Helper()
	const cond = "interlink-k8s-mesh.io/MeshReady"
	pods := m.env.Local.CoreV1().Pods(m.ns)
	// The IP by a merge patch (a strategic one would add to podIPs, which takes one IP a family),
	// the condition by a strategic one (merged by type with the VK's).
	ipPatch := fmt.Sprintf(`{"status":{"podIP":%q,"podIPs":[{"ip":%q}]}}`, ip, ip)
	condPatch := fmt.Sprintf(`{"status":{"conditions":[{"type":%q,"status":"True","reason":"StatusOverwriteProbe"}]}}`, cond)
	for _, p := range []struct {
		pt   types.PatchType
		body string
	}{{types.MergePatchType, ipPatch}, {types.StrategicMergePatchType, condPatch}} {
		if _, err := pods.Patch(m.t.Context(), name, p.pt, []byte(p.body), metav1.PatchOptions{}, "status"); err != nil {
			m.t.Logf("FOUND a status patch %s of the offloaded pod refused: %v", p.body, err)
			return
		}
	}
	start := time.Now()
	podIP, has, read := "", false, false
	for time.Since(start) < 45*time.Second {
		if p, err := pods.Get(m.t.Context(), name, metav1.GetOptions{}); err == nil {
			podIP, has, read = p.Status.PodIP, false, true
			for _, c := range p.Status.Conditions {
				has = has || string(c.Type) == cond
			}
			if podIP != ip && !has {
				m.t.Logf("FOUND InterLink's VK undoes another client's status write %s after it: the pod IP %s set to the new shadow's is back to %s, the condition %s is gone (the VK writes its own copy of the status whole)",
					time.Since(start).Round(100*time.Millisecond), ip, podIP, cond)
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !read {
		m.t.Errorf("the offloaded pod %s could not be read for 45 s after its status patch", name)
		return
	}
	m.t.Logf("FOUND 45 s after another client's status write (pod IP %s, condition %s): pod IP %s, condition there: %v", ip, cond, podIP, has)
}

// localNamespace creates the run's local namespace, deleted when the test ends, and waits for its
// default ServiceAccount (pods cannot be created before it).
func (m *meshRun) localNamespace() {
	m.t.Helper()
	ctx := m.t.Context()
	if _, err := m.env.Local.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: m.ns}}, metav1.CreateOptions{}); err != nil {
		m.t.Fatalf("create namespace: %v", err)
	}
	m.t.Cleanup(func() {
		_ = m.env.Local.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), m.ns, metav1.DeleteOptions{})
	})
	m.waitServiceAccount()
}

// waitServiceAccount waits for the local namespace's default ServiceAccount.
func (m *meshRun) waitServiceAccount() {
	m.t.Helper()
	m.poll("default ServiceAccount", 30*time.Second, func(ctx context.Context) (bool, string) {
		_, err := m.env.Local.CoreV1().ServiceAccounts(m.ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
}

// offloadedPod is the pod the mesh tests offload through the VK of vkNode: echo-server, and a shell
// to act from inside it. Locally the VK's node matches the second affinity term; remotely (the
// plugin drops the VK's hostname selector) only the real node matches.
func (m *meshRun) offloadedPod(vkNode string, annotations map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: m.ns, Labels: map[string]string{"app": "web"}, Annotations: annotations},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](2),
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": vkNode},
			Tolerations: []corev1.Toleration{
				{Key: "virtual-node.interlink/no-schedule", Operator: corev1.TolerationOpExists},
				{Key: RealNodeLabel, Operator: corev1.TolerationOpExists},
			},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{
					{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: RealNodeLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{"true"}}}},
					{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{vkNode}}}},
				},
			}}},
			Containers: []corev1.Container{
				{Name: "web", Image: m.echo, ImagePullPolicy: corev1.PullIfNotPresent, Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
				{Name: "shell", Image: m.shell, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "3600"}},
				{Name: "iperf3", Image: m.iperf, ImagePullPolicy: corev1.PullIfNotPresent, Args: []string{"-s"}, Ports: []corev1.ContainerPort{
					{ContainerPort: 5201, Protocol: corev1.ProtocolTCP}, {ContainerPort: 5201, Protocol: corev1.ProtocolUDP}}},
				{Name: "netprobe", Image: m.probe, ImagePullPolicy: corev1.PullIfNotPresent, Args: []string{"serve"}, Ports: []corev1.ContainerPort{
					{ContainerPort: probePort, Protocol: corev1.ProtocolTCP}, {ContainerPort: probePort, Protocol: corev1.ProtocolUDP}}},
			},
		},
	}
	if m.wg != nil {
		p.Spec.Containers = append(p.Spec.Containers, m.wg.container(true))
	}
	return p
}

// throughput measures with iperf3 what the mesh carries between real pods, both ways: TCP for 5 s
// (next to two local pods on the same bridge), 32 TCP flows at once, and UDP at 200 Mbit/s for 3 s.
// It fails if any run moves nothing; the figures, with the agents' peak RSS, are logged, never
// asserted (the machine's load decides them). mode names the mesh mode in the log.
func (m *meshRun) throughput(mode, node string, shadow, remote *corev1.Pod) {
	m.t.Helper()
	server := m.localPod("iperf-server", node, corev1.Container{Name: "iperf3", Image: m.iperf, ImagePullPolicy: corev1.PullNever, Args: []string{"-s"}})
	var ref []corev1.Container
	if m.wg != nil {
		ref = append(ref, m.wg.container(false))
	}
	client := m.localPod("iperf-client", node, corev1.Container{Name: "iperf3", Image: m.iperf, ImagePullPolicy: corev1.PullNever, Args: []string{"-s"}}, ref...)
	type sum struct {
		BitsPerSecond float64 `json:"bits_per_second"`
		LostPercent   float64 `json:"lost_percent"`
	}
	run := func(what, ip string, extra ...string) sum {
		args := append([]string{"iperf3", "-c", ip, "-J"}, extra...)
		out, err := m.tryExec(m.localKubeconfig(), m.ns, client.Name, "iperf3", args...)
		var r struct {
			Error string `json:"error"`
			End   struct {
				SumReceived sum `json:"sum_received"` // TCP
				Sum         sum `json:"sum"`          // UDP: the receiver's count
			} `json:"end"`
		}
		jerr := json.Unmarshal([]byte(out), &r)
		got := r.End.SumReceived
		if got.BitsPerSecond == 0 {
			got = r.End.Sum
		}
		if jerr != nil || r.Error != "" || got.BitsPerSecond == 0 || got.LostPercent >= 100 {
			m.t.Fatalf("iperf3 %s (%v): %v %s: %s", what, args, err, r.Error, truncate(out, 300))
		}
		return got
	}
	agents := m.findAgents(shadow, remote)
	direct := run("between two local pods", server.Status.PodIP, "-t", "5")
	in := run("local → offloaded", shadow.Status.PodIP, "-t", "5")
	afterIn := peaks(agents)
	out := run("offloaded → local", shadow.Status.PodIP, "-t", "5", "-R")
	m.t.Logf("FIGURE iperf3 TCP 5 s between real pods (%s mode): local pod → offloaded pod (through the shadow's IP, the tunnel, Traefik) %.2f Gbit/s, offloaded → local (-R) %.2f Gbit/s; two local pods on one bridge %.2f Gbit/s; peak RSS after the first: %s; after both: %s",
		mode, in.BitsPerSecond/1e9, out.BitsPerSecond/1e9, direct.BitsPerSecond/1e9, afterIn, peaks(agents))
	if m.wg != nil {
		// The same two pods over wireguard-go on plain UDP, through the UDP relay.
		startUDPRelay(m.t, m.wg.relay, netip.AddrPortFrom(netip.MustParseAddr(client.Status.PodIP), wgRefPort))
		m.execUntil("the wireguard-go reference's first handshake", m.localKubeconfig(), m.ns, client.Name, "wgref",
			regexp.MustCompile(`\t[1-9][0-9]+\s*$`), "wg", "show", "wgref0", "latest-handshakes")
		refIn := run("wireguard-go over UDP, local → offloaded", wgRefRemote, "-t", "5")
		refOut := run("wireguard-go over UDP, offloaded → local", wgRefRemote, "-t", "5", "-R")
		m.t.Logf("FIGURE iperf3 TCP 5 s between the same real pods (%s mode): the mesh %.2f / %.2f Gbit/s (in / out) next to wireguard-go over plain UDP (its own main package, through a UDP relay on the remote node's bridge address standing for a UDP ingress) %.2f / %.2f Gbit/s: the mesh at %.2f× / %.2f×",
			mode, in.BitsPerSecond/1e9, out.BitsPerSecond/1e9, refIn.BitsPerSecond/1e9, refOut.BitsPerSecond/1e9, in.BitsPerSecond/refIn.BitsPerSecond, out.BitsPerSecond/refOut.BitsPerSecond)
	}
	flowsIn := run("32 flows local → offloaded", shadow.Status.PodIP, "-t", "3", "-P", "32")
	flowsOut := run("32 flows offloaded → local", shadow.Status.PodIP, "-t", "3", "-P", "32", "-R")
	udpIn := run("UDP local → offloaded", shadow.Status.PodIP, "-t", "3", "-u", "-b", "200M")
	udpOut := run("UDP offloaded → local", shadow.Status.PodIP, "-t", "3", "-u", "-b", "200M", "-R")
	m.t.Logf("FIGURE iperf3 between real pods (%s mode): 32 TCP flows at once %.2f / %.2f Gbit/s (in / out); UDP at 200 Mbit/s offered: %.0f Mbit/s received, %.1f%% lost in; %.0f Mbit/s, %.1f%% lost out; peak RSS %s",
		mode, flowsIn.BitsPerSecond/1e9, flowsOut.BitsPerSecond/1e9, udpIn.BitsPerSecond/1e6, udpIn.LostPercent, udpOut.BitsPerSecond/1e6, udpOut.LostPercent, peaks(agents))
}

// shadowComponent is the app.kubernetes.io/component label of the shadow objects the VK renders for
// the local pod: its Deployment's name, <pod>-<namespace>.
func shadowComponent(local *corev1.Pod) string { return local.Name + "-" + local.Namespace }

// waitShadow waits for the one shadow pod of component in ns, other than the pod with UID not, to
// be Ready on node.
func (m *meshRun) waitShadow(ns, component, node string, not types.UID) *corev1.Pod {
	m.t.Helper()
	var shadow *corev1.Pod
	m.poll("shadow pod "+component+" Ready on the local real node", 90*time.Second, func(ctx context.Context) (bool, string) {
		l, err := m.env.Local.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: componentLabel + "=" + component})
		if err != nil || len(l.Items) != 1 || l.Items[0].UID == not {
			return false, fmt.Sprintf("%d pods, %v", len(l.Items), err)
		}
		shadow = &l.Items[0]
		return shadow.Spec.NodeName == node && podReady(shadow), describePod(shadow)
	})
	return shadow
}

// waitRemote waits for the remote pod of the local pod with uid to be Ready on node.
func (m *meshRun) waitRemote(uid types.UID, node string) *corev1.Pod {
	m.t.Helper()
	var remote *corev1.Pod
	m.poll("offloaded pod Ready on the remote real node", 3*time.Minute, func(ctx context.Context) (bool, string) {
		l, err := m.env.Remote.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "interlink.io/source.pod_uid=" + string(uid)})
		if err != nil || len(l.Items) != 1 {
			return false, fmt.Sprintf("%d remote pods, %v", len(l.Items), err)
		}
		remote = &l.Items[0]
		return remote.Spec.NodeName == node && podReady(remote), describePod(remote)
	})
	return remote
}

// replaceShadow deletes the shadow pod and waits for its Deployment's replacement to be Ready and
// for the ingress controller to route to it (it follows the Service's endpoints).
func (m *meshRun) replaceShadow(shadow *corev1.Pod) *corev1.Pod {
	m.t.Helper()
	if err := m.env.Local.CoreV1().Pods(shadow.Namespace).Delete(m.t.Context(), shadow.Name, metav1.DeleteOptions{}); err != nil {
		m.t.Fatalf("delete the shadow pod: %v", err)
	}
	component := shadow.Labels[componentLabel]
	next := m.waitShadow(shadow.Namespace, component, shadow.Spec.NodeName, shadow.UID)
	host, backend := m.ingressBackend(shadow.Namespace, component)
	took := m.ing.waitRoute(host, backend)
	m.t.Logf("PROVEN the ingress controller follows the shadow Service's endpoints: Traefik routes %s to the new shadow %s (%s after it was ready)", host, backend, took.Round(10*time.Millisecond))
	return next
}

// deleteOffloaded deletes the local pod name and waits until its remote pod and its shadow
// Deployment in shadowNS are gone.
func (m *meshRun) deleteOffloaded(name string, remote *corev1.Pod, shadowNS string) {
	m.t.Helper()
	if err := m.env.Local.CoreV1().Pods(m.ns).Delete(m.t.Context(), name, metav1.DeleteOptions{}); err != nil {
		m.t.Fatalf("delete the offloaded pod: %v", err)
	}
	deployment := name + "-" + m.ns // shadowComponent
	m.poll("remote pod and shadow Deployment gone", 90*time.Second, func(ctx context.Context) (bool, string) {
		_, rerr := m.env.Remote.CoreV1().Pods(remote.Namespace).Get(ctx, remote.Name, metav1.GetOptions{})
		_, derr := m.env.Local.AppsV1().Deployments(shadowNS).Get(ctx, deployment, metav1.GetOptions{})
		return apierrors.IsNotFound(rerr) && apierrors.IsNotFound(derr), fmt.Sprintf("remote pod: %v; shadow Deployment %s: %v", rerr, deployment, derr)
	})
}

// meshRun holds what TestMeshRealPods's helpers share.
type meshRun struct {
	t                  *testing.T
	env                *Env
	ns                 string
	kubectl            string
	echo, shell, iperf string
	probe              string // netprobe
	// wg, when set, adds the wireguard-go reference to the offloaded pod and throughput's client.
	wg *wgRef
	// restricted makes the local pods pass Pod Security "restricted" (restrictPod).
	restricted bool
	// Set by startMeshRun: the ingress's address and controller, where logs go, both real nodes.
	tunnel                netip.AddrPort
	ing                   *ingress
	logDir                string
	localNode, remoteNode string
}

// startMeshRun is where every real-pod mesh test starts: the environment run.sh describes (the
// VK's node vkNode instead of the default one, if set), a meshRun in the local namespace ns, both
// clusters' real nodes found, and only the local real node left schedulable for shadow pods.
func startMeshRun(t *testing.T, ns, vkNode string, restricted bool) *meshRun {
	t.Helper()
	env, out := setup(t)
	if vkNode != "" {
		env.VKNode = vkNode
	}
	tunnel, err := netip.ParseAddrPort(os.Getenv(envTunnelAddress))
	if err != nil {
		t.Fatalf("%s: %v", envTunnelAddress, err)
	}
	m := newMeshRun(t, env, ns, restricted)
	m.tunnel, m.logDir = tunnel, filepath.Join(out, "logs")
	m.localNode = m.realNode(env.Local, "local")
	m.remoteNode = m.realNode(env.Remote, "remote")
	t.Logf("real nodes: local %s, remote %s; the ingress on %s", m.localNode, m.remoteNode, tunnel)
	m.onlySchedulable(m.localNode)
	m.ing = startIngress(t, env, m.logDir, tunnel)
	return m
}

// newMeshRun is a meshRun in the local namespace ns, with the tools and images run.sh names.
func newMeshRun(t *testing.T, env *Env, ns string, restricted bool) *meshRun {
	m := &meshRun{t: t, env: env, ns: ns, kubectl: os.Getenv(envKubectl), restricted: restricted,
		echo: os.Getenv(envEchoImage), shell: os.Getenv(envShellImage), iperf: os.Getenv(envIperfImage), probe: os.Getenv(envProbeImage)}
	if m.kubectl == "" || m.echo == "" || m.shell == "" || m.iperf == "" || m.probe == "" {
		t.Fatalf("%s, %s, %s, %s and %s must be set (run.sh sets them)", envKubectl, envEchoImage, envShellImage, envIperfImage, envProbeImage)
	}
	return m
}

func (m *meshRun) localKubeconfig() string  { return os.Getenv(envLocal) }
func (m *meshRun) remoteKubeconfig() string { return os.Getenv(envRemote) }

// poll retries cond every 500 ms until it holds, failing the test with what was last seen.
func (m *meshRun) poll(what string, timeout time.Duration, cond func(ctx context.Context) (bool, string)) {
	m.t.Helper()
	if err := pollChain(m.t.Context(), m.env, what, timeout, cond); err != nil {
		m.t.Fatal(err)
	}
}

// pollChain retries cond every 500 ms until it holds or timeout passes, and says what was last
// seen otherwise; it gives up at once when a process of the chain died. Safe off the test's
// goroutine.
func pollChain(ctx context.Context, env *Env, what string, timeout time.Duration, cond func(ctx context.Context) (bool, string)) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, seen := cond(ctx)
		if seen != "" {
			last = seen
		}
		if !ok && env.Alive != nil {
			if err := env.Alive(); err != nil {
				return false, err
			}
		}
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("%s: not within %v (%v); last seen: %s", what, timeout, err, last)
	}
	return nil
}

// onlySchedulable makes node the only schedulable node of the local cluster (the VK's node, and
// the other VK nodes named, aside), so that the shadow pod the VK makes runs there, and restores
// every node's setting at the end.
func (m *meshRun) onlySchedulable(node string, vkNodes ...string) {
	m.t.Helper()
	nodes, err := m.env.Local.CoreV1().Nodes().List(m.t.Context(), metav1.ListOptions{})
	if err != nil {
		m.t.Fatalf("list local nodes: %v", err)
	}
	set := func(ctx context.Context, name string, unschedulable bool) error {
		patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, unschedulable)
		_, err := m.env.Local.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	}
	for _, n := range nodes.Items {
		if n.Name == m.env.VKNode || slices.Contains(vkNodes, n.Name) {
			continue
		}
		was, want := n.Spec.Unschedulable, n.Name != node
		if was == want {
			continue
		}
		if err := set(m.t.Context(), n.Name, want); err != nil {
			m.t.Fatalf("set node %s unschedulable=%t: %v", n.Name, want, err)
		}
		m.t.Cleanup(func() {
			if err := set(context.WithoutCancel(m.t.Context()), n.Name, was); err != nil {
				m.t.Errorf("restore node %s unschedulable=%t: %v", n.Name, was, err)
			}
		})
	}
}

// service creates a ClusterIP Service NAME on port 8080 selecting app=NAME in the local namespace
// and returns its cluster IP.
func (m *meshRun) service(name string) string {
	m.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: m.ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	got, err := m.env.Local.CoreV1().Services(m.ns).Create(m.t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		m.t.Fatalf("create Service %s: %v", name, err)
	}
	return got.Spec.ClusterIP
}

// realNode returns the Ready node of c labelled as node.sh's real node.
func (m *meshRun) realNode(c kubernetes.Interface, which string) string {
	m.t.Helper()
	var name string
	m.poll("a Ready real node in the "+which+" cluster", 30*time.Second, func(ctx context.Context) (bool, string) {
		l, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: RealNodeLabel + "=true"})
		if err != nil {
			return false, err.Error()
		}
		for _, n := range l.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					name = n.Name
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("%d real nodes, none Ready", len(l.Items))
	})
	return name
}

// localPod runs a pod on the local cluster's real node and waits until it is Ready.
func (m *meshRun) localPod(name, node string, c corev1.Container, more ...corev1.Container) *corev1.Pod {
	m.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: m.ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			NodeName:                      node,
			Tolerations:                   []corev1.Toleration{{Key: RealNodeLabel, Operator: corev1.TolerationOpExists}},
			Containers:                    append([]corev1.Container{c}, more...),
		},
	}
	if m.restricted {
		restrictPod(&p.Spec)
	}
	if _, err := m.env.Local.CoreV1().Pods(m.ns).Create(m.t.Context(), p, metav1.CreateOptions{}); err != nil {
		m.t.Fatalf("create local pod %s: %v", name, err)
	}
	m.poll("local pod "+name+" Ready", 60*time.Second, func(ctx context.Context) (bool, string) {
		var err error
		p, err = m.env.Local.CoreV1().Pods(m.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return podReady(p), describePod(p)
	})
	return p
}

// ingressBackend reads the shadow Ingress the VK applied: its host, and the address of the pod behind
// its Service (from the Service's EndpointSlices, as an ingress controller does).
func (m *meshRun) ingressBackend(ns, component string) (host, backend string) {
	m.t.Helper()
	m.poll("shadow Ingress "+component+" with a ready endpoint", 60*time.Second, func(ctx context.Context) (bool, string) {
		var ok bool
		var seen string
		host, backend, ok, seen = m.readyIngress(ctx, ns, component)
		return ok, seen
	})
	return host, backend
}

// readyIngress reads the shadow Ingress of component in ns once: its host and the address of a ready
// endpoint behind its Service, or what is missing.
func (m *meshRun) readyIngress(ctx context.Context, ns, component string) (host, backend string, ok bool, seen string) {
	l, err := m.env.Local.NetworkingV1().Ingresses(ns).List(ctx, metav1.ListOptions{LabelSelector: componentLabel + "=" + component})
	if err != nil || len(l.Items) != 1 || len(l.Items[0].Spec.Rules) == 0 || l.Items[0].Spec.Rules[0].HTTP == nil {
		return "", "", false, fmt.Sprintf("Ingresses: %v", err)
	}
	rule := l.Items[0].Spec.Rules[0]
	svc := rule.HTTP.Paths[0].Backend.Service
	eps, err := m.env.Local.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc.Name})
	if err != nil {
		return "", "", false, err.Error()
	}
	for _, s := range eps.Items {
		for _, e := range s.Endpoints {
			if len(e.Addresses) > 0 && (e.Conditions.Ready == nil || *e.Conditions.Ready) {
				for _, p := range s.Ports {
					if p.Port != nil && *p.Port == svc.Port.Number {
						return rule.Host, netip.AddrPortFrom(netip.MustParseAddr(e.Addresses[0]), uint16(*p.Port)).String(), true, ""
					}
				}
			}
		}
	}
	return "", "", false, fmt.Sprintf("no ready endpoint of Service %s port %d yet", svc.Name, svc.Port.Number)
}

// exec runs a command in a container through the API server and the kubelet.
func (m *meshRun) exec(kubeconfig, ns, pod, container string, cmd ...string) string {
	m.t.Helper()
	out, err := m.tryExec(kubeconfig, ns, pod, container, cmd...)
	if err != nil {
		m.t.Fatalf("exec %v in %s/%s: %v: %s", cmd, ns, pod, err, out)
	}
	return out
}

func (m *meshRun) tryExec(kubeconfig, ns, pod, container string, cmd ...string) (string, error) {
	return m.execFor(20*time.Second, kubeconfig, ns, pod, container, cmd...)
}

// execFor is tryExec with its own time limit, for commands that measure for longer.
func (m *meshRun) execFor(limit time.Duration, kubeconfig, ns, pod, container string, cmd ...string) (string, error) {
	ctx, cancel := context.WithTimeout(m.t.Context(), limit)
	defer cancel()
	args := append([]string{"--kubeconfig", kubeconfig, "-n", ns, "exec", pod, "-c", container, "--"}, cmd...)
	out, err := exec.CommandContext(ctx, m.kubectl, args...).CombinedOutput()
	return string(out), err
}

// execUntil runs cmd (bounded: 40 tries, one a second at most) until its output matches want.
func (m *meshRun) execUntil(what, kubeconfig, ns, pod, container string, want *regexp.Regexp, cmd ...string) string {
	m.t.Helper()
	var out string
	var err error
	for i := 0; i < 40; i++ {
		tryStart := time.Now()
		out, err = m.tryExec(kubeconfig, ns, pod, container, cmd...)
		if err == nil && want.MatchString(out) {
			return out
		}
		if m.t.Context().Err() != nil {
			break
		}
		time.Sleep(max(0, time.Second-time.Since(tryStart)))
	}
	m.t.Fatalf("%s: no answer matching %s after 40 tries; last: %v: %s", what, want, err, truncate(out, 500))
	return ""
}

// componentLabel labels the shadow objects of one offloaded pod (manifests/shadow-pod*.tmpl).
const componentLabel = "app.kubernetes.io/component"

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// httpGet is a shell command asking http://ip:8080/ (ip may be a name; port[0] another port) with
// busybox's nc (its static wget crashes with SIGSEGV in these images: exit 139).
func httpGet(ip string, port ...string) []string {
	p := "8080"
	if len(port) > 0 {
		p = port[0]
	}
	return []string{"sh", "-c", `printf 'GET / HTTP/1.0\r\nHost: mesh\r\n\r\n' | nc -w 3 ` + ip + ` ` + p}
}

// crashCheck is what crashAndRecover needs: the two agents' pods and a request each way that
// retries until it is answered (out: from the offloaded pod; in: from a local client).
type crashCheck struct {
	shadow, remote *corev1.Pod
	out, in        func(what string) string
}

// crashAndRecover kills each agent in turn (SIGKILL, as a crash) and proves traffic comes back both
// ways once the kubelet restarted its container in place (same pod, same IP), logging how long that
// took and the container's restart count.
func (m *meshRun) crashAndRecover(c crashCheck) {
	m.t.Helper()
	for _, a := range []struct {
		comm, container string
		pod             *corev1.Pod
		client          kubernetes.Interface
	}{{"mesh-agent", plugin.MeshAgentContainer, c.remote, m.env.Remote}, {"shadow-agent", "shadow-agent", c.shadow, m.env.Local}} {
		crashed := time.Now()
		p, err := findAgent(a.comm, a.pod)
		if err == nil {
			err = p.kill()
		}
		if err != nil {
			m.t.Fatalf("crash %s: %v", a.comm, err)
		}
		m.poll(a.comm+" restarted by the kubelet", 90*time.Second, func(ctx context.Context) (bool, string) {
			p, err := a.client.CoreV1().Pods(a.pod.Namespace).Get(ctx, a.pod.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			for _, s := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
				if s.Name == a.container {
					return s.RestartCount > 0 && s.State.Running != nil, fmt.Sprintf("%s restarts %d, %s", s.Name, s.RestartCount, describePod(p))
				}
			}
			return false, "no status of " + a.container + ": " + describePod(p)
		})
		out := c.out("offloaded pod → local pod after " + a.comm + "'s crash")
		in := c.in("local client → offloaded pod after " + a.comm + "'s crash")
		m.t.Logf("PROVEN the mesh recovers from a crash of %s (SIGKILL; the kubelet restarts the container in place): both directions answer again %s after the kill: %q, %q",
			a.comm, time.Since(crashed).Round(100*time.Millisecond), lastLine(out), lastLine(in))
	}
}

// lastLine is the last non-empty line of s: the body of echo-server's one-line answer.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// hostnameOf is the hostname a pod's containers see.
func hostnameOf(p *corev1.Pod) string {
	if p.Spec.Hostname != "" {
		return p.Spec.Hostname
	}
	return p.Name
}

// describePod is describe with the pod's name, node, IP and the reason of a waiting container.
func describePod(p *corev1.Pod) string {
	s := fmt.Sprintf("%s on node %q ip %q: %s", p.Name, p.Spec.NodeName, p.Status.PodIP, describe(p))
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Message != "" {
			s += fmt.Sprintf("; %s: %s", cs.Name, truncate(w.Message, 200))
		}
	}
	return s
}
