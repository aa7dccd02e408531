package plugin

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// meshRunnable is a runnable pod carrying a variant's mesh annotations instead of fullPod's.
func meshRunnable(name, namespace string, annotations map[string]string) RetrievedPodData {
	req := runnable(name, namespace)
	delete(req.Pod.Annotations, AnnotPreExec)
	for k, v := range annotations {
		req.Pod.Annotations[k] = v
	}
	return req
}

// TestMeshOffload offloads a pod per mesh input variant through the HTTP API and reads back what
// the remote apiserver stored: the native sidecar, its Secret, and no secret anywhere else.
func TestMeshOffload(t *testing.T) {
	t.Parallel()
	s := serve(t)
	for _, v := range meshVariants(t) {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			req := meshRunnable("web", "mesh-"+v.name, v.annotations)
			s.create(t, req)

			remote, err := s.remotePod(t, &req.Pod)
			if err != nil {
				t.Fatal(err)
			}
			checkMeshPod(t, remote)
			if got := names(remote.Spec.InitContainers); !cmp.Equal(got, []string{MeshAgentContainer, "migrate"}) {
				t.Errorf("remote init containers %v, want the mesh-agent then migrate", got)
			}

			secret, err := s.cluster.Client.CoreV1().Secrets(remote.Namespace).Get(t.Context(), ScopedName("mesh-agent", string(req.Pod.UID)), metav1.GetOptions{})
			if err != nil {
				t.Fatalf("mesh Secret: %v", err)
			}
			if refs := secret.OwnerReferences; len(refs) != 1 || refs[0].UID != remote.UID || refs[0].Kind != "Pod" {
				t.Errorf("mesh Secret owners %+v, want the remote pod %s", refs, remote.UID)
			}
			got, err := meshspec.Parse(secret.Data[MeshSpecKey])
			if err != nil {
				t.Fatalf("the mesh Secret's mesh.json: %v", err)
			}
			want := v.want
			want.DNS.Searches = []string{req.Pod.Namespace + ".svc.cluster.local", "svc.cluster.local", "cluster.local"}
			if diff := cmp.Diff(want.WithDefaults(), got, netipComparers); diff != "" {
				t.Errorf("mesh.json (-want +got):\n%s", diff)
			}

			// The Secret goes with its pod: through the plugin's delete, or, for a pod deleted
			// behind the plugin's back, through the remote garbage collector.
			if v.name == "structured" {
				if err := s.cluster.Client.CoreV1().Pods(remote.Namespace).Delete(t.Context(), remote.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
					t.Fatal(err)
				}
			} else if code, body := s.call(t, "POST", "/delete", req.Pod); code != http.StatusOK {
				t.Fatalf("delete: %d %s", code, body)
			}
			poll(t, "mesh Secret and remote pod gone", func(ctx context.Context) (bool, error) {
				_, serr := s.cluster.Client.CoreV1().Secrets(remote.Namespace).Get(ctx, secret.Name, metav1.GetOptions{})
				_, perr := s.remotePod(t, &req.Pod)
				return apierrors.IsNotFound(serr) && apierrors.IsNotFound(perr), nil
			})
		})
	}
}

// TestMeshRefusals: a pod whose mesh cannot work is refused with the field named, and nothing is
// left in the remote cluster.
func TestMeshRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		annotations map[string]string
		mesh        Mesh
		field       string
	}{
		{"contradictory keys", map[string]string{AnnotPreExec: meshFile(t, "seed-custom.sh"), AnnotWGSnippet: meshFile(t, "vk-default.snippet")}, Mesh{}, "mesh.privateKey"},
		{"snippet alone", map[string]string{AnnotWGSnippet: meshFile(t, "vk-default.snippet")}, Mesh{}, "mesh.tunnel.url"},
		{"route over the remote Services", map[string]string{AnnotPreExec: meshFile(t, "vk-default.sh")}, Mesh{RemoteServiceCIDRs: prefixes("10.96.0.0/12")}, "mesh.routes[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := serve(t, func(c *Config) { c.Offloading.Mesh = tt.mesh })
			req := meshRunnable("web", "mesh-refused", tt.annotations)
			code, body := s.call(t, "POST", "/create", req)
			if code != http.StatusUnprocessableEntity {
				t.Fatalf("create: %d %s, want 422", code, body)
			}
			var e ErrorResponse
			if err := json.Unmarshal(body, &e); err != nil || e.Field != tt.field {
				t.Errorf("error %s, want field %s", body, tt.field)
			}
			for _, secret := range meshSecrets(t) {
				if strings.Contains(string(body), secret) {
					t.Errorf("the refusal reveals a secret: %s", body)
				}
			}
			if _, err := s.remotePod(t, &req.Pod); !apierrors.IsNotFound(err) {
				t.Errorf("remote pod after a refusal: %v, want not found", err)
			}
			if cms, secrets := s.scoped(t, &req.Pod); len(cms)+len(secrets) != 0 {
				t.Errorf("a refusal left %d ConfigMaps and %d Secrets", len(cms), len(secrets))
			}
		})
	}
}

// TestMeshDisabledPod: interlink.eu/mesh-network: disabled offloads the pod as it is, keys stripped.
func TestMeshDisabledPod(t *testing.T) {
	t.Parallel()
	s := serve(t)
	req := meshRunnable("web", "mesh-disabled", map[string]string{
		AnnotPreExec: meshFile(t, "vk-default.sh"), AnnotWGSnippet: meshFile(t, "vk-default.snippet"), AnnotMeshNetwork: "disabled",
	})
	s.create(t, req)
	remote, err := s.remotePod(t, &req.Pod)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(remote.Spec.InitContainers); !cmp.Equal(got, []string{"migrate"}) {
		t.Errorf("init containers %v, want the pod's own only", got)
	}
	if _, err := s.cluster.Client.CoreV1().Secrets(remote.Namespace).Get(t.Context(), ScopedName("mesh-agent", string(req.Pod.UID)), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("mesh Secret of a pod without the mesh: %v", err)
	}
	raw, _ := json.Marshal(remote)
	for _, secret := range meshSecrets(t) {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the remote pod contains the secret %.6s…", secret)
		}
	}
	if remote.Annotations[AnnotMeshNetwork] != "disabled" {
		t.Errorf("annotations %v lost %s", remote.Annotations, AnnotMeshNetwork)
	}
}

// TestMeshStatusNotReady: while the remote kubelet reports the mesh-agent running but not started
// (the tunnel never completed a handshake), /status explains it on the waiting containers. The
// pod is kept unschedulable so that only this test writes its status.
func TestMeshStatusNotReady(t *testing.T) {
	t.Parallel()
	s := serve(t)
	req := meshRunnable("web", "mesh-status", map[string]string{AnnotPreExec: meshFile(t, "vk-default.sh")})
	req.Pod.Spec.NodeSelector = map[string]string{"mesh-status-test": "no-such-node"}
	s.create(t, req)
	remote, err := s.remotePod(t, &req.Pod)
	if err != nil {
		t.Fatal(err)
	}
	pods := s.cluster.Client.CoreV1().Pods(remote.Namespace)
	started := metav1.NewTime(time.Now().Add(-3 * time.Minute).Truncate(time.Second))
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := pods.Get(t.Context(), remote.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Status.StartTime = &started
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{
			{Name: MeshAgentContainer, Image: "mesh-agent", Started: new(false), RestartCount: 2,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 137, Reason: "Error", Message: "dial ws://web-0-team-a-team-a-wstunnel.mesh.example.org:80: connection refused",
				}}},
			{Name: "migrate", Image: "registry.example/migrate:1", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}},
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{
			{Name: "web", Image: "registry.example/web:2", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}},
		}
		_, err = pods.UpdateStatus(t.Context(), p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("write the remote pod's status: %v", err)
	}
	var st PodStatus
	poll(t, "MeshNotReady in /status", func(ctx context.Context) (bool, error) {
		st = s.status(t, req.Pod)[0]
		return len(st.Containers) == 1 && st.Containers[0].State.Waiting != nil && st.Containers[0].State.Waiting.Reason == ReasonMeshNotReady, nil
	})
	msg := st.Containers[0].State.Waiting.Message
	for _, want := range []string{"first WireGuard handshake", "restarted 2 times", "connection refused"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	// The VK appends a status for every name it does not know and holds the pod Pending while any
	// init container runs: the sidecar is never reported, only the local pod's own containers.
	if len(st.InitContainers) != 1 || st.InitContainers[0].Name != "migrate" ||
		st.InitContainers[0].State.Waiting == nil || st.InitContainers[0].State.Waiting.Reason != ReasonMeshNotReady {
		t.Errorf("init container statuses %+v: want only migrate, waiting on the mesh", st.InitContainers)
	}

	// The mesh comes up: the sidecar starts, the init container completes, the app runs. The VK
	// sees exactly what a pod without the mesh would show, so it turns the local pod Running.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := pods.Get(t.Context(), remote.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{
			{Name: MeshAgentContainer, Image: "mesh-agent", Started: new(true), Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}},
			{Name: "migrate", Image: "registry.example/migrate:1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}},
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{
			{Name: "web", Image: "registry.example/web:2", Ready: true, Started: new(true),
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}},
		}
		_, err = pods.UpdateStatus(t.Context(), p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("write the remote pod's status: %v", err)
	}
	poll(t, "running status once the mesh is up", func(ctx context.Context) (bool, error) {
		st = s.status(t, req.Pod)[0]
		return len(st.Containers) == 1 && st.Containers[0].State.Running != nil, nil
	})
	if len(st.InitContainers) != 1 || st.InitContainers[0].Name != "migrate" || st.InitContainers[0].State.Terminated == nil {
		t.Errorf("init container statuses %+v: want only migrate, terminated", st.InitContainers)
	}
}

// restrictedPod is a pod whose own containers Pod Security "restricted" admits, carrying a mesh
// in the given mode.
func restrictedPod(name, namespace string, mode meshspec.Mode, annotations map[string]string) RetrievedPodData {
	a := map[string]string{AnnotMeshMode: string(mode)}
	for k, v := range annotations {
		a[k] = v
	}
	return RetrievedPodData{Pod: corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, UID: types.UID(newUID()), Annotations: a},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   new(true),
				RunAsUser:      new(int64(1000)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: "web", Image: "registry.example/web:2",
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: new(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}}
}

// TestMeshRestricted offloads a mesh pod into a remote namespace that enforces Pod Security
// "restricted", as the real apiserver's admission judges it: in netstack mode it is admitted
// with its sidecar (no capability, nonroot, read-only root, RuntimeDefault seccomp, no
// escalation), in kernel mode the sidecar's NET_ADMIN has it refused.
func TestMeshRestricted(t *testing.T) {
	t.Parallel()
	s := serve(t)
	const local = "psa"
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.remoteNS(local), Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
		"interlink.io": "offloading",
	}}}
	if _, err := s.cluster.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.cluster.Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	v := meshVariants(t)[2] // structured: any input makes the same sidecar

	req := restrictedPod("web-netstack", local, meshspec.ModeNetstack, v.annotations)
	s.create(t, req)
	remote, err := s.remotePod(t, &req.Pod)
	if err != nil {
		t.Fatal(err)
	}
	sc := remote.Spec.InitContainers[0].SecurityContext
	if remote.Spec.InitContainers[0].Name != MeshAgentContainer || sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 {
		t.Fatalf("admitted sidecar %+v, want a nonroot one without capabilities", remote.Spec.InitContainers[0])
	}
	secret, err := s.cluster.Client.CoreV1().Secrets(remote.Namespace).Get(t.Context(), ScopedName("mesh-agent", string(req.Pod.UID)), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if spec, err := meshspec.Parse(secret.Data[MeshSpecKey]); err != nil || spec.Mode != meshspec.ModeNetstack {
		t.Errorf("mesh.json mode %q, %v; want netstack", spec.Mode, err)
	}

	kreq := restrictedPod("web-kernel", local, meshspec.ModeKernel, v.annotations)
	code, body := s.call(t, "POST", "/create", kreq)
	if code == http.StatusOK || !strings.Contains(string(body), "restricted") || !strings.Contains(string(body), "NET_ADMIN") {
		t.Fatalf("kernel-mode create in a restricted namespace: %d %s; want refused by Pod Security naming NET_ADMIN", code, body)
	}
}
