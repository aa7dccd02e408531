package conformance

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
)

// The environment run.sh adds for the inbound direction.
const (
	envInboundVK      = "IKM_CONFORMANCE_INBOUND_VK_NODE"          // the VK whose shadow template is shadow-pod-inbound.tmpl
	envInboundNSVK    = "IKM_CONFORMANCE_INBOUND_NETSTACK_VK_NODE" // the VK of shadow-pod-inbound-netstack.tmpl
	envInboundIngress = "IKM_CONFORMANCE_INBOUND_INGRESS"          // the remote ingress's IP:port, where <host>.mesh.test resolves locally
)

// TestMeshRealPodsInbound proves the inbound direction as real pods through InterLink's unmodified
// VK: no ingress controller runs for the local cluster and nothing in it listens for the remote
// site. The plugin publishes the offloaded pod's mesh-agent with a Service and an Ingress in the
// remote cluster, Traefik as the remote cluster's ingress controller routes it, and the shadow
// pod (the VK's rendering of shadow-pod-inbound.tmpl) dials it by name through the local DNS.
// Then the mesh does what it does outbound: a local client reaches the offloaded pod on the pod's
// IP, the offloaded pod reaches a local pod as the shadow; it comes back after the remote ingress
// controller restarts; and deleting the pod removes the remote Service and Ingress.
func TestMeshRealPodsInbound(t *testing.T) {
	if os.Getenv(envRealMesh) != "1" {
		t.Skipf("no real-node clusters (%s unset): run `make conformance` as root", envRealMesh)
	}
	if os.Getenv(envInboundVK) == "" {
		t.Skipf("%s unset: run.sh starts no VK with the inbound shadow template", envInboundVK)
	}
	addr, err := netip.ParseAddrPort(os.Getenv(envInboundIngress))
	if err != nil {
		t.Fatalf("%s: %v", envInboundIngress, err)
	}
	env, out := setup(t)
	base := newMeshRun(t, env, "realinbound", false)
	base.tunnel, base.logDir = addr, filepath.Join(out, "logs")
	base.localNode = base.realNode(env.Local, "local")
	base.remoteNode = base.realNode(env.Remote, "remote")
	base.onlySchedulable(base.localNode, os.Getenv(envInboundVK), os.Getenv(envInboundNSVK))
	// The remote cluster's ingress controller, on the address the local site's DNS gives the
	// tunnel hosts (*.mesh.test): what the local nodes reach of the remote site.
	base.ing = startIngressFor(t, env.Remote, base.remoteKubeconfig(), "ingress-traefik-remote.log", base.logDir, addr)
	for _, mode := range []struct {
		name, vk, ns string
		annotations  map[string]string
	}{
		{"kernel", os.Getenv(envInboundVK), "realinbound", nil},
		{"netstack", os.Getenv(envInboundNSVK), "realinbound-ns", map[string]string{plugin.AnnotMeshMode: "netstack"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.vk == "" {
				t.Skip("run.sh starts no VK with this mode's inbound shadow template")
			}
			m := *base
			m.t, m.ns = t, mode.ns
			prev := base.ing.t // the controller fails the test that uses it
			base.ing.t = t
			defer func() { base.ing.t = prev }()
			runInbound(t, &m, mode.vk, mode.annotations, mode.name == "kernel")
		})
	}
}

// runInbound offloads one inbound pod through vkNode and proves the mesh both ways; restart
// also restarts the remote ingress controller.
func runInbound(t *testing.T, m *meshRun, vkNode string, annotations map[string]string, restart bool) {
	env, ctx := m.env, t.Context()
	var err error
	m.localNamespace()
	target := m.localPod("target", m.localNode, corev1.Container{Name: "echo", Image: m.echo, ImagePullPolicy: corev1.PullNever})
	client := m.localPod("client", m.localNode, corev1.Container{Name: "shell", Image: m.shell, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}})
	addr := m.tunnel
	ann := map[string]string{plugin.AnnotMeshDirection: string(plugin.DirectionInbound)}
	for k, v := range annotations {
		ann[k] = v
	}
	netstack := annotations[plugin.AnnotMeshMode] == "netstack"
	if netstack {
		// A netstack sidecar routes nothing into the mesh: the pod reaches the local pod through a
		// relay it declares.
		ann[plugin.AnnotMeshForwards] = fmt.Sprintf("18080=%s:8080", target.Status.PodIP)
	}

	start := time.Now()
	web := m.offloadedPod(vkNode, ann)
	web, err = env.Local.CoreV1().Pods(m.ns).Create(ctx, web, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create the offloaded pod: %v", err)
	}
	shadowNS := m.ns + "-wstunnel"
	shadow := m.waitShadow(shadowNS, shadowComponent(web), m.localNode, "")
	if netstack {
		if caps := addedCapabilities(shadow); len(caps) > 0 {
			t.Fatalf("the netstack inbound shadow pod adds capabilities %v", caps)
		}
	}
	ings, err := env.Local.NetworkingV1().Ingresses(shadowNS).List(ctx, metav1.ListOptions{})
	if err != nil || len(ings.Items) != 0 {
		t.Fatalf("Ingresses in the shadow namespace: %v, %v; the inbound shadow publishes none", err, ings)
	}
	for _, c := range shadow.Spec.Containers {
		for _, p := range c.Ports {
			if p.ContainerPort == 28080 {
				t.Errorf("the shadow pod's container %s declares the tunnel port 28080", c.Name)
			}
		}
	}
	agent, err := findAgent("shadow-agent", shadow)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := agent.listeningPorts()
	if err != nil {
		t.Fatal(err)
	}
	// Its health port; in netstack mode also the offloaded pod's declared ports, relayed to it.
	allowed := []uint16{9102}
	for _, c := range web.Spec.Containers {
		for _, p := range c.Ports {
			if netstack && p.Protocol != corev1.ProtocolUDP {
				allowed = append(allowed, uint16(p.ContainerPort))
			}
		}
	}
	for _, p := range ports {
		if !slices.Contains(allowed, p) {
			t.Errorf("the inbound shadow pod listens on TCP %d (all: %v), want only %v: nothing for the remote site", p, ports, allowed)
		}
	}
	t.Logf("PROVEN the inbound shadow pod %s/%s runs on %s at %s; the local cluster has no Ingress for it and the pod listens on TCP %v only: its health port and, in netstack mode, the offloaded pod's declared ports (%s after create)",
		shadowNS, shadow.Name, m.localNode, shadow.Status.PodIP, ports, since(start))

	remote := m.waitRemote(web.UID, m.remoteNode)
	name := plugin.ScopedName("mesh-tunnel", string(web.UID))
	svc, err := env.Remote.CoreV1().Services(remote.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the remote tunnel Service: %v", err)
	}
	ing, err := env.Remote.NetworkingV1().Ingresses(remote.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the remote tunnel Ingress: %v", err)
	}
	for _, o := range []metav1.Object{svc, ing} {
		if refs := o.GetOwnerReferences(); len(refs) != 1 || refs[0].UID != remote.UID {
			t.Errorf("%s is owned by %+v, want the remote pod %s", o.GetName(), refs, remote.UID)
		}
	}
	host := ing.Spec.Rules[0].Host
	took := m.ing.waitRoute(host, netip.AddrPortFrom(netip.MustParseAddr(remote.Status.PodIP), 28080).String())
	t.Logf("PROVEN the plugin publishes the mesh-agent in the remote cluster: Traefik routes Host %s on %s to the offloaded pod's tunnel port (%s after its endpoint), and the sidecar's first handshake came through it (%s after create)",
		host, addr, took.Round(10*time.Millisecond), since(start))

	var local *corev1.Pod
	m.poll("local pod Running with the shadow pod's IP", 60*time.Second, func(ctx context.Context) (bool, string) {
		local, err = env.Local.CoreV1().Pods(m.ns).Get(ctx, web.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return local.Status.Phase == corev1.PodRunning && local.Status.PodIP == shadow.Status.PodIP, describePod(local)
	})
	served := regexp.MustCompile(`host=` + regexp.QuoteMeta(hostnameOf(remote)) + ` `)
	answer := m.execUntil("local client → http://"+local.Status.PodIP+":8080/", m.localKubeconfig(), m.ns, client.Name, "shell",
		served, httpGet(local.Status.PodIP)...)
	t.Logf("PROVEN inbound: a local client pod's request to the pod's IP %s is answered by the offloaded echo-server: %q (%s after create)",
		local.Status.PodIP, lastLine(answer), since(start))
	seenAsShadow := regexp.MustCompile(`host=target client=` + regexp.QuoteMeta(shadow.Status.PodIP) + `:`)
	check := crashCheck{
		shadow: shadow, remote: remote,
		out: func(what string) string {
			if netstack {
				return m.execUntil(what+" (relay 127.0.0.1:18080)", m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell", seenAsShadow, httpGet("127.0.0.1", "18080")...)
			}
			return m.execUntil(what, m.remoteKubeconfig(), remote.Namespace, remote.Name, "shell", seenAsShadow, httpGet(target.Status.PodIP)...)
		},
		in: func(what string) string {
			return m.execUntil(what, m.localKubeconfig(), m.ns, client.Name, "shell", served, httpGet(local.Status.PodIP)...)
		},
	}
	back := check.out("offloaded pod → the local pod " + target.Status.PodIP)
	t.Logf("PROVEN inbound: the offloaded pod reaches the local pod %s, seen as the shadow pod: %q", target.Status.PodIP, lastLine(back))
	// Each agent crashes (SIGKILL) and is restarted in place: the shadow re-dials, the mesh-agent
	// serves again, both directions answer.
	m.crashAndRecover(check)

	// The remote ingress controller restarts: every tunnel through it is cut, the shadow re-dials.
	if restart {
		restarted := time.Now()
		m.ing.restart()
		again := m.execUntil("local client → the pod's IP after the remote ingress restarted", m.localKubeconfig(), m.ns, client.Name, "shell",
			served, httpGet(local.Status.PodIP)...)
		t.Logf("PROVEN inbound: answered again %s after the remote ingress controller restarted: %q", since(restarted), lastLine(again))
	}

	// Deleting the pod removes what the plugin published.
	if err := env.Local.CoreV1().Pods(m.ns).Delete(ctx, web.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete the offloaded pod: %v", err)
	}
	deleted := time.Now()
	m.poll("the remote tunnel Service and Ingress gone", 120*time.Second, func(ctx context.Context) (bool, string) {
		_, serr := env.Remote.CoreV1().Services(remote.Namespace).Get(ctx, name, metav1.GetOptions{})
		_, ierr := env.Remote.NetworkingV1().Ingresses(remote.Namespace).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(serr) && apierrors.IsNotFound(ierr), "service: " + errText(serr) + "; ingress: " + errText(ierr)
	})
	t.Logf("PROVEN deleting the pod removes the remote tunnel Service and Ingress %s (%s after the delete)", name, since(deleted))
}

// errText is err's text, or "present".
func errText(err error) string {
	if err == nil {
		return "present"
	}
	return err.Error()
}
