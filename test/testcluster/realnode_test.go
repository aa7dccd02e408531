package testcluster

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// imageRef returns the name the archive bin/images/<name>.tar from `make images` carries, which is
// the name node.sh imported it under.
func imageRef(t *testing.T, name string) string {
	t.Helper()
	file := filepath.Join(sourceDir(), "..", "..", "bin", "images", name+".tar")
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("open image archive (run make images): %v", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s has no index.json", file)
		}
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		if h.Name != "index.json" {
			continue
		}
		var index struct {
			Manifests []struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.NewDecoder(tr).Decode(&index); err != nil {
			t.Fatalf("decode index.json of %s: %v", file, err)
		}
		if len(index.Manifests) == 0 || index.Manifests[0].Annotations["io.containerd.image.name"] == "" {
			t.Fatalf("%s names no image", file)
		}
		return index.Manifests[0].Annotations["io.containerd.image.name"]
	}
}

// waitPod polls a pod until cond holds, failing the test with what after two minutes.
func (c *Cluster) waitPod(t *testing.T, ns, name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var last *corev1.Pod
	for {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if cond(p) {
				return p
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s: waiting for %s: %v; last status: %+v", ns, name, what, ctx.Err(), last.Status)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func (c *Cluster) logs(t *testing.T, ns, pod, container string) string {
	t.Helper()
	b, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(t.Context())
	if err != nil {
		t.Fatalf("logs of %s/%s %s (kube-apiserver to the kubelet): %v", ns, pod, container, err)
	}
	return string(b)
}

// TestRealNodeEchoServer proves real pods: the project's echo-server image, imported without a
// registry, runs on the real node, becomes Ready through its readiness probe, answers on its pod IP
// from the host (the pod range lives on node.sh's bridge), and its logs come through the kubelet.
func TestRealNodeEchoServer(t *testing.T) {
	c := Get(t)
	node := c.RealNode(t)
	ns := c.Namespace(t)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name:            "echo",
				Image:           imageRef(t, "echo-server"),
				ImagePullPolicy: corev1.PullNever,
				Ports:           []corev1.ContainerPort{{ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
	OnRealNode(&pod.Spec)
	start := time.Now()
	if _, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := c.waitPod(t, ns, pod.Name, "Ready", podReady)
	t.Logf("pod created to Ready in %v", time.Since(start).Round(10*time.Millisecond))
	if got.Spec.NodeName != node {
		t.Fatalf("pod ran on %q, want the real node %q", got.Spec.NodeName, node)
	}
	ip, err := netip.ParseAddr(got.Status.PodIP)
	if err != nil {
		t.Fatalf("pod IP %q: %v", got.Status.PodIP, err)
	}

	hc := &http.Client{Timeout: 5 * time.Second}
	url := "http://" + netip.AddrPortFrom(ip, 8080).String() + "/"
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s from the host: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, %v", url, resp.StatusCode, err)
	}
	// The echo-server answers with its hostname, which is the pod's name.
	if !strings.Contains(string(body), pod.Name) {
		t.Fatalf("GET %s answered %q, want the echo-server naming its host %q", url, body, pod.Name)
	}

	if l := c.logs(t, ns, pod.Name, "echo"); !strings.Contains(l, "serving on") {
		t.Fatalf("logs of the echo-server = %q, want its start line", l)
	}
}

// TestRealNodeNativeSidecar proves the kubelet's native sidecar ordering the offloaded pods rely on:
// an init container with restartPolicy Always and a startup probe gates the app container, which
// starts only once the probe passed.
func TestRealNodeNativeSidecar(t *testing.T) {
	c := Get(t)
	c.RealNode(t)
	ns := c.Namespace(t)
	shell := imageRef(t, "shell")
	shared := []corev1.VolumeMount{{Name: "shared", MountPath: "/shared"}}
	// sleep as PID 1 ignores SIGTERM; a trap lets the pod go at once.
	sleep := "trap 'exit 0' TERM; sleep 3600 & wait"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sidecar"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Volumes:                       []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			InitContainers: []corev1.Container{{
				Name:            "sidecar",
				Image:           shell,
				ImagePullPolicy: corev1.PullNever,
				RestartPolicy:   ptr.To(corev1.ContainerRestartPolicyAlways),
				// Ready two seconds after it starts: an app started without waiting would not see the file.
				Command:      []string{"/bin/sh", "-c", "sleep 2; touch /shared/ready; " + sleep},
				VolumeMounts: shared,
				StartupProbe: &corev1.Probe{
					ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/shared/ready"}}},
					PeriodSeconds:    1,
					FailureThreshold: 30,
				},
			}},
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           shell,
				ImagePullPolicy: corev1.PullNever,
				Command: []string{"/bin/sh", "-c",
					"if test -f /shared/ready; then echo started-after-sidecar; else echo started-before-sidecar; fi; " + sleep},
				VolumeMounts: shared,
			}},
		},
	}
	OnRealNode(&pod.Spec)
	if _, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := c.waitPod(t, ns, pod.Name, "app running", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	side := got.Status.InitContainerStatuses
	if len(side) != 1 || side[0].State.Running == nil || !ptr.Deref(side[0].Started, false) {
		t.Fatalf("sidecar status = %+v, want running and started", side)
	}
	sideStart, appStart := side[0].State.Running.StartedAt.Time, got.Status.ContainerStatuses[0].State.Running.StartedAt.Time
	if l := strings.TrimSpace(c.logs(t, ns, pod.Name, "app")); l != "started-after-sidecar" {
		t.Fatalf("app container said %q, want started-after-sidecar (sidecar started %v, app %v)", l, sideStart, appStart)
	}
	// Start times have a resolution of one second; the sidecar needs two to become started.
	if d := appStart.Sub(sideStart); d < time.Second {
		t.Fatalf("app started %v after the sidecar, want at least its 2 s to the startup probe", d)
	}
	t.Logf("app started %v after the sidecar container", appStart.Sub(sideStart))
}

// TestRealNodeIsStock proves the real node is a stock kubelet, as the clusters the product runs in
// are: it refuses a pod asking for the unsafe sysctl net.ipv4.ip_forward (SysctlForbidden). A pod
// forwards all the same, as on a forwarding node (node.sh's CNI chain sets it in each pod's
// namespace), while the host's own setting stays as it was. A pull never leaves the machine.
func TestRealNodeIsStock(t *testing.T) {
	c := Get(t)
	c.RealNode(t)
	ns := c.Namespace(t)
	shell := imageRef(t, "shell")
	pod := func(name string, sysctls []corev1.Sysctl) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				RestartPolicy:                 corev1.RestartPolicyNever,
				SecurityContext:               &corev1.PodSecurityContext{Sysctls: sysctls},
				Containers: []corev1.Container{{
					Name:            "shell",
					Image:           shell,
					ImagePullPolicy: corev1.PullNever,
					Command:         []string{"cat", "/proc/sys/net/ipv4/ip_forward"},
				}},
			},
		}
		OnRealNode(&p.Spec)
		if _, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unsafe := pod("unsafe-sysctl", []corev1.Sysctl{{Name: "net.ipv4.ip_forward", Value: "1"}})
	plain := pod("plain", nil)
	// An image the node lacks: the pull goes to node.sh's closed loopback registry, never out.
	absent := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "absent-image"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers:                    []corev1.Container{{Name: "x", Image: "registry.example/absent:1", ImagePullPolicy: corev1.PullAlways}},
		},
	}
	OnRealNode(&absent.Spec)
	if _, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), absent, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := c.waitPod(t, ns, absent.Name, "a failed pull", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			strings.Contains(p.Status.ContainerStatuses[0].State.Waiting.Message, "127.0.0.1:9")
	})
	t.Logf("a pull of an absent image: %s", got.Status.ContainerStatuses[0].State.Waiting.Message)

	got = c.waitPod(t, ns, unsafe.Name, "rejection", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if got.Status.Reason != "SysctlForbidden" {
		t.Fatalf("pod with net.ipv4.ip_forward failed with %q (%s), want SysctlForbidden", got.Status.Reason, got.Status.Message)
	}
	c.waitPod(t, ns, plain.Name, "completion", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if got := strings.TrimSpace(c.logs(t, ns, plain.Name, "shell")); got != "1" {
		t.Fatalf("a pod's ip_forward = %s, want 1 (node.sh's CNI tuning plugin sets it, as a forwarding node's pods inherit it)", got)
	}
	host, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(host)); got != hostForward {
		t.Fatalf("the host's ip_forward changed to %s while the node ran (was %s): the node must only make its pods forward", got, hostForward)
	}
}

// hostForward is the host's net.ipv4.ip_forward when the package's tests started.
var hostForward = func() string {
	b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	return strings.TrimSpace(string(b))
}()

// TestRealNodeDNS proves the node's CoreDNS (node.sh, IKM_NODE_DNS): a pod on the real node has it
// as its only nameserver with the cluster's search list, resolves a Service by its full name
// (nslookup) and by its short name (the C library's resolver, through the search list), and gets
// NXDOMAIN for a name outside the cluster: nothing is forwarded to the machine's resolver.
func TestRealNodeDNS(t *testing.T) {
	c := Get(t)
	nodeName := c.RealNode(t)
	ns := c.Namespace(t)
	node, err := c.Client.CoreV1().Nodes().Get(t.Context(), nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var nodeIP string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			nodeIP = a.Address
		}
	}
	if nodeIP == "" {
		t.Fatalf("node %s has no InternalIP: %+v", nodeName, node.Status.Addresses)
	}
	// No selector and no kube-proxy here: only the name's answer counts.
	svc, err := c.Client.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "named"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fqdn := "named." + ns + ".svc.cluster.local"
	// busybox's nc names the address it resolved when the connection fails (the Service range has no
	// route on this node); each section ends with a marker line.
	script := "cat /etc/resolv.conf; echo @@; nslookup " + fqdn + "; echo @@; nc -w 5 named 80 </dev/null 2>&1; echo nc exit $?; echo @@; nslookup absent.example; echo @@"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "dns"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			RestartPolicy:                 corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:            "shell",
				Image:           imageRef(t, "shell"),
				ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/bin/sh", "-c", script},
			}},
		},
	}
	OnRealNode(&pod.Spec)
	if _, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitPod(t, ns, pod.Name, "completion", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	out := c.logs(t, ns, pod.Name, "shell")
	parts := strings.Split(out, "@@")
	if len(parts) != 5 {
		t.Fatalf("pod output has %d sections, want 4:\n%s", len(parts)-1, out)
	}
	resolv, full, short, absent := parts[0], parts[1], parts[2], parts[3]
	if !strings.Contains(resolv, "nameserver "+nodeIP) || strings.Count(resolv, "nameserver") != 1 ||
		!strings.Contains(resolv, "search "+ns+".svc.cluster.local svc.cluster.local cluster.local") {
		t.Errorf("resolv.conf = %q, want the node's CoreDNS %s alone and the cluster's search list", resolv, nodeIP)
	}
	if !strings.Contains(full, "Address: "+svc.Spec.ClusterIP) {
		t.Errorf("nslookup %s = %q, want the Service's address %s", fqdn, full, svc.Spec.ClusterIP)
	}
	if !strings.Contains(short, "("+svc.Spec.ClusterIP+")") {
		t.Errorf("nc by the short name = %q, want it to name the Service's address %s", short, svc.Spec.ClusterIP)
	}
	if !strings.Contains(absent, "NXDOMAIN") {
		t.Errorf("nslookup absent.example = %q, want NXDOMAIN (nothing forwarded)", absent)
	}
	t.Logf("the node's CoreDNS %s: %s and \"named\" → %s, absent.example NXDOMAIN; nc by the short name: %q", nodeIP, fqdn, svc.Spec.ClusterIP, strings.TrimSpace(short))
}
