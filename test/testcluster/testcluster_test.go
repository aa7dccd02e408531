package testcluster

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

func TestMain(m *testing.M) { Main(m) }

// poll waits up to a minute for cond, failing the test with what when it never holds.
func poll(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func TestNodesReadyWithGPUs(t *testing.T) {
	c := Get(t)
	// Only kwok's nodes: a real node (node.sh) has no GPUs.
	nodes, err := c.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: "type=kwok"})
	if err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, n := range nodes.Items {
		gpus := n.Status.Capacity[corev1.ResourceName("nvidia.com/gpu")]
		if gpus.Cmp(resource.MustParse("1")) < 0 {
			t.Errorf("node %s has no nvidia.com/gpu capacity: %v", n.Name, n.Status.Capacity)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready < 2 {
		t.Fatalf("got %d Ready nodes of %d, want at least 2", ready, len(nodes.Items))
	}
}

// TestDeploymentRunsAndNamespaceDeletes proves the harness is a real control plane: the
// controller-manager turns a Deployment into pods, the scheduler binds them to kwok nodes, kwok runs
// them, and a deleted namespace is finalized away.
func TestDeploymentRunsAndNamespaceDeletes(t *testing.T) {
	c := Get(t)
	ns := c.Namespace(t)
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
					Containers:     []corev1.Container{{Name: "web", Image: "nginx"}},
				},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(t.Context(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "3 running pods on kwok nodes", func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != "" {
				running++
			}
		}
		return running == 3, nil
	})

	if err := c.Client.CoreV1().Namespaces().Delete(t.Context(), ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "namespace "+ns+" to be gone", func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// runningPod creates a one-container pod and waits until kwok reports it Running.
func runningPod(t *testing.T, c *Cluster, ns, name string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}
	pod, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "pod "+name+" running", func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	return pod
}

func TestLogsThroughAPIServer(t *testing.T) {
	c := Get(t)
	ns := c.Namespace(t)
	runningPod(t, c, ns, "logger")
	t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	c.SetLogs(t, ns, "logger", ContainerLogs{
		Container: "app",
		Lines: []LogLine{
			{Time: t0, Text: "one"},
			{Time: t0.Add(time.Second), Text: "two"},
			{Time: t0.Add(2 * time.Second), Stream: "stderr", Text: "three"},
		},
		Previous: []LogLine{{Time: t0.Add(-time.Hour), Text: "before restart"}},
	})

	tests := []struct {
		name string
		opts corev1.PodLogOptions
		want string
	}{
		{name: "all", opts: corev1.PodLogOptions{}, want: "one\ntwo\nthree\n"},
		{name: "tail", opts: corev1.PodLogOptions{TailLines: ptr.To[int64](1)}, want: "three\n"},
		{name: "timestamps", opts: corev1.PodLogOptions{TailLines: ptr.To[int64](1), Timestamps: true}, want: "2026-11-24T10:00:02.000000000Z three\n"},
		{name: "previous", opts: corev1.PodLogOptions{Previous: true}, want: "before restart\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Container = "app"
			var got []byte
			// The kwok controller learns about the Logs object through a watch: allow it a moment.
			poll(t, "logs", func(ctx context.Context) (bool, error) {
				rc, err := c.Client.CoreV1().Pods(ns).GetLogs("logger", &tt.opts).Stream(ctx)
				if err != nil {
					return false, nil
				}
				defer rc.Close()
				got, err = io.ReadAll(rc)
				return err == nil && len(got) > 0, nil
			})
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("pods/log (-want +got):\n%s", diff)
			}
		})
	}
}

// TestGarbageCollectorFollowsOwners checks the behaviour the plugin relies on to clean up the
// ConfigMaps and Secrets it copies: objects owned by a pod go away with it.
func TestGarbageCollectorFollowsOwners(t *testing.T) {
	c := Get(t)
	ns := c.Namespace(t)
	pod := runningPod(t, c, ns, "owner")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "owned",
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
		}},
	}}
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().Pods(ns).Delete(t.Context(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "owned ConfigMap to be collected", func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, "owned", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}
