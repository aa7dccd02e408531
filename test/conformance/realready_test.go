package conformance

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/stats"
)

// envReadyPods sets how many pods TestMeshReadyTimes offloads at once (make bench: 20); unset, it skips.
const envReadyPods = "IKM_CONFORMANCE_READY_PODS"

// TestMeshReadyTimes measures, on real pods through InterLink's VK, how long an offloaded pod takes
// from its create on the local cluster to mesh ready: its remote pod Ready, which the mesh-agent's
// startup probe holds back until the first WireGuard handshake through the tunnel (so the
// workload starts with the mesh up). IKM_CONFORMANCE_READY_PODS pods are created at once, as a
// Job or a Deployment would; Traefik, the local cluster's ingress controller, routes each shadow
// Ingress as it appears. It logs p50, p95 and the slowest, with the shadow pod's share; it fails only if a pod never gets
// there. A benchmark (make bench), never timed assertions.
func TestMeshReadyTimes(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(envReadyPods))
	if n <= 0 || os.Getenv(envRealMesh) != "1" {
		t.Skipf("a benchmark: run by `make bench` as root (%s=20 with real-node clusters)", envReadyPods)
	}
	m := startMeshRun(t, "ready", "", false)
	env, ctx, localNode, remoteNode := m.env, t.Context(), m.localNode, m.remoteNode
	m.localNamespace()

	type run struct {
		pod               *corev1.Pod
		created           time.Time
		shadowAt, readyAt time.Duration // since created; 0 until seen
		routed            bool
		component         string
	}
	runs := make([]*run, n)
	for i := range runs {
		p := m.offloadedPod(env.VKNode, nil)
		p.Name, p.Labels = fmt.Sprintf("ready-%02d", i), map[string]string{"app": "ready"}
		p.Spec.Containers = []corev1.Container{{Name: "shell", Image: m.shell, ImagePullPolicy: corev1.PullIfNotPresent, Command: []string{"sleep", "3600"}}}
		runs[i] = &run{pod: p, component: shadowComponent(p)}
	}
	t.Logf("creating %d offloaded pods at once through the VK %s; the remote ones run on %s", n, env.VKNode, remoteNode)
	for _, r := range runs {
		r.created = time.Now()
		created, err := env.Local.CoreV1().Pods(m.ns).Create(ctx, r.pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create %s: %v", r.pod.Name, err)
		}
		r.pod = created
	}
	shadowNS := m.ns + "-wstunnel"
	pending := n
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		shadows, err := env.Local.CoreV1().Pods(shadowNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		remotes, err := env.Remote.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "interlink.io/source.pod_uid"})
		if err != nil {
			return false, nil
		}
		for _, r := range runs {
			if r.shadowAt == 0 && slices.ContainsFunc(shadows.Items, func(p corev1.Pod) bool {
				return p.Labels[componentLabel] == r.component && p.Spec.NodeName == localNode && podReady(&p)
			}) {
				r.shadowAt = time.Since(r.created)
			}
			if r.shadowAt != 0 && !r.routed {
				if host, backend, ok, _ := m.readyIngress(ctx, shadowNS, r.component); ok {
					r.routed, _ = m.ing.routes(host, backend)
				}
			}
			if r.readyAt == 0 && slices.ContainsFunc(remotes.Items, func(p corev1.Pod) bool {
				return p.Labels["interlink.io/source.pod_uid"] == string(r.pod.UID) && p.Spec.NodeName == remoteNode && podReady(&p)
			}) {
				r.readyAt = time.Since(r.created)
				pending--
			}
		}
		return pending == 0, nil
	})
	if err != nil {
		var late []string
		for _, r := range runs {
			if r.readyAt == 0 {
				late = append(late, fmt.Sprintf("%s (shadow ready after %v, routed %v)", r.pod.Name, r.shadowAt.Round(time.Millisecond), r.routed))
			}
		}
		t.Fatalf("%d of %d pods never became mesh ready within 5 min: %v", pending, n, late)
	}
	var ready, shadow []time.Duration
	for _, r := range runs {
		ready, shadow = append(ready, r.readyAt), append(shadow, r.shadowAt)
	}
	slices.Sort(ready)
	slices.Sort(shadow)
	pct := func(ds []time.Duration, q float64) time.Duration {
		return stats.QuantileSorted(ds, q).Round(100 * time.Millisecond)
	}
	t.Logf("FIGURE offloaded pod created to mesh ready, %d real pods created at once (kernel mode, through the VK, Traefik as the ingress controller): p50 %v, p95 %v, slowest %v; of which the shadow pod Ready: p50 %v, p95 %v",
		n, pct(ready, 0.5), pct(ready, 0.95), ready[len(ready)-1].Round(100*time.Millisecond), pct(shadow, 0.5), pct(shadow, 0.95))
}
