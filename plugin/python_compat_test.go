package plugin

import (
	"context"
	"maps"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

// pythonMeta is the metadata the Python plugin's _scope_metadata gives a remote copy: the local
// object's labels and annotations, plus interlink.io=offloading and the pod's UID as labels, and
// annotations naming the local object itself (for a ConfigMap or Secret, its own UID and name).
func pythonMeta(local metav1.ObjectMeta, podUID types.UID, namespace string) metav1.ObjectMeta {
	labels, annotations := maps.Clone(local.Labels), maps.Clone(local.Annotations)
	if labels == nil {
		labels = map[string]string{}
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	labels[LabelOffloaded], labels[LabelSourceUID] = ValueOffloaded, string(podUID)
	annotations[AnnotSourceUID], annotations[AnnotSourceName], annotations[AnnotSourceNS] = string(local.UID), local.Name, local.Namespace
	return metav1.ObjectMeta{Name: PythonScopedName(local.Name, string(podUID)), Namespace: namespace, Labels: labels, Annotations: annotations}
}

// pythonOffload makes in the remote cluster what the Python plugin's create_pod made for a
// request (interlink-hq/interlink-kubernetes-plugin, kubernetes_plugin_service.py at cfebf481): the
// namespace <prefix>-<namespace> labelled interlink.io=offloading, each ConfigMap and Secret under
// its scoped name, never owned by the pod, then the pod with its volumes and env references renamed
// the same way. It returns the remote pod.
func pythonOffload(t *testing.T, cl *testcluster.Cluster, prefix string, req RetrievedPodData, initContainers ...corev1.Container) *corev1.Pod {
	t.Helper()
	ctx, core, uid := t.Context(), cl.Client.CoreV1(), req.Pod.UID
	ns := prefix + "-" + req.Pod.Namespace
	if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{LabelOffloaded: ValueOffloaded}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cl.WaitServiceAccount(t, ns)
	for _, c := range req.Containers {
		for _, cm := range c.ConfigMaps {
			if _, err := core.ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: pythonMeta(cm.ObjectMeta, uid, ns), Data: cm.Data}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
		for _, s := range c.Secrets {
			if _, err := core.Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: pythonMeta(s.ObjectMeta, uid, ns), Data: s.Data, Type: s.Type}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	}
	spec := req.Pod.Spec.DeepCopy()
	for i := range spec.Volumes {
		if v := spec.Volumes[i].ConfigMap; v != nil {
			v.Name = PythonScopedName(v.Name, string(uid))
		}
		if v := spec.Volumes[i].Secret; v != nil {
			v.SecretName = PythonScopedName(v.SecretName, string(uid))
		}
	}
	spec.InitContainers = append(spec.InitContainers, initContainers...)
	meta := pythonMeta(req.Pod.ObjectMeta, uid, ns)
	meta.Annotations[AnnotSourceUID] = string(uid)
	pod, err := core.Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: meta, Spec: *spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

// A pod the Python plugin offloaded before the switch, under its names (the UID cut, a dot kept),
// is reported by /status, its logs are served, a repeated create adopts it, and /delete removes it
// with its ConfigMaps and Secrets.
func TestPythonOffloadedPodSurvivesTheSwitch(t *testing.T) {
	t.Parallel()
	s := serve(t)
	uid := types.UID(newUID())
	local := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy.web-0-offloaded-by-python", Namespace: "legacy", UID: uid,
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"team": "a"}, CreationTimestamp: metav1.Now()},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "main", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "conf", MountPath: "/conf"}, {Name: "creds", MountPath: "/creds"}}}},
			Volumes: []corev1.Volume{
				{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}},
				{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "database-credentials-of-the-web-app"}}},
			},
		},
	}
	req := RetrievedPodData{Pod: local, Containers: []RetrievedContainer{{
		Name:       "main",
		ConfigMaps: []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "web-config", Namespace: "legacy", UID: types.UID(newUID())}, Data: map[string]string{"a": "1"}}},
		Secrets:    []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "database-credentials-of-the-web-app", Namespace: "legacy", UID: types.UID(newUID())}, Data: map[string][]byte{"p": []byte("x")}}},
	}}}
	remote := pythonOffload(t, s.cluster, s.prefix, req)
	if remote.Name == ScopedName(local.Name, string(uid)) {
		t.Fatalf("the test needs a name on which the plugins differ, both give %s", remote.Name)
	}

	var st []PodStatus
	poll(t, "status Running", func(context.Context) (bool, error) {
		st = s.status(t, local)
		return len(st) == 1 && len(st[0].Containers) == 1 && st[0].Containers[0].State.Running != nil, nil
	})
	if st[0].JID != string(remote.UID) {
		t.Errorf("JID %s, want the Python plugin's pod %s", st[0].JID, remote.UID)
	}

	s.cluster.SetLogs(t, remote.Namespace, remote.Name, testcluster.ContainerLogs{Container: "main", Lines: []testcluster.LogLine{{Time: time.Now().UTC(), Text: "from python"}}})
	poll(t, "logs", func(context.Context) (bool, error) {
		code, body := s.call(t, "POST", "/getLogs", LogRequest{Namespace: "legacy", PodUID: string(uid), PodName: local.Name, ContainerName: "main"})
		return code == http.StatusOK && string(body) == "from python\n", nil
	})

	// A plugin whose cache never saw the pod (not started) finds it by the Python plugin's name.
	cold := mustNew(t, Config{Client: s.cluster.Client, Offloading: Offloading{NamespacePrefix: s.prefix}})
	if st, err := cold.Status(t.Context(), &local); err != nil || st.JID != string(remote.UID) {
		t.Errorf("status without the cache: JID %q, %v; want %s", st.JID, err, remote.UID)
	}
	if rc, err := cold.Logs(t.Context(), &LogRequest{Namespace: "legacy", PodUID: string(uid), PodName: local.Name, ContainerName: "main"}); err != nil {
		t.Errorf("logs without the cache: %v", err)
	} else {
		rc.Close()
	}

	if resp := s.create(t, req); resp.PodJID != string(remote.UID) {
		t.Errorf("a repeated create answered JID %s, want the adopted pod %s", resp.PodJID, remote.UID)
	}
	pods, err := s.cluster.Client.CoreV1().Pods(remote.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: LabelSourceUID + "=" + string(uid)})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("remote pods of the local pod after a repeated create: %d, %v", len(pods.Items), err)
	}

	if code, body := s.call(t, "POST", "/delete", local); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	poll(t, "the Python plugin's pod deleted", func(ctx context.Context) (bool, error) {
		p, err := s.cluster.Client.CoreV1().Pods(remote.Namespace).Get(ctx, remote.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || err == nil && p.DeletionTimestamp != nil, nil
	})
	if cms, secrets := s.scoped(t, &local); len(cms)+len(secrets) != 0 {
		t.Errorf("left behind: %d ConfigMaps, %d Secrets", len(cms), len(secrets))
	}
}

// The Python plugin ran a pod's mesh script in a sidecar init container, "mesh-setup"; a pod it
// offloaded so keeps it, and /status never reports it: InterLink's VK crashes on an init container
// the local pod lacks, or holds the pod Pending while one runs.
func TestPythonMeshSidecarNotReported(t *testing.T) {
	t.Parallel()
	s := serve(t)
	req := RetrievedPodData{Pod: corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "meshed", Namespace: "legacy-mesh", UID: types.UID(newUID()), CreationTimestamp: metav1.Now()},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
	}}
	always := corev1.ContainerRestartPolicyAlways
	remote := pythonOffload(t, s.cluster, s.prefix, req, corev1.Container{
		Name: "mesh-setup", Image: "alpine:latest", Command: []string{"/bin/sh", "-c"}, Args: []string{"bash /tmp/interlink/mesh.sh"},
		RestartPolicy: &always,
	})
	poll(t, "the remote sidecar running", func(ctx context.Context) (bool, error) {
		p, err := s.cluster.Client.CoreV1().Pods(remote.Namespace).Get(ctx, remote.Name, metav1.GetOptions{})
		return err == nil && len(p.Status.InitContainerStatuses) == 1 && p.Status.InitContainerStatuses[0].State.Running != nil, nil
	})
	poll(t, "status from the cache", func(context.Context) (bool, error) {
		st := s.status(t, req.Pod)
		if len(st) == 1 && len(st[0].InitContainers) != 0 {
			t.Fatalf("init containers reported: %+v", st[0].InitContainers)
		}
		return len(st) == 1 && st[0].JID == string(remote.UID) && len(st[0].Containers) == len(req.Pod.Spec.Containers), nil
	})
}

// The Python plugin's namespace semantics on the test cluster: an empty prefix keeps the local
// namespace's name (and such namespaces are never removed as empty); an excluded namespace keeps
// its name under a prefix, the others get it.
func TestNamespacePrefixSemantics(t *testing.T) {
	t.Parallel()
	suffix := string(uuid.NewUUID())[:8]
	nss := cleanupNamespaces(t)
	t.Run("no prefix", func(t *testing.T) {
		s := serve(t, func(c *Config) { c.Offloading.NamespacePrefix = ""; c.EmptyNamespaceTTL = time.Nanosecond })
		req := runnable("web", "plain-"+suffix)
		nss.add("plain-" + suffix)
		s.create(t, req)
		if _, err := s.cluster.Client.CoreV1().Pods("plain-"+suffix).Get(t.Context(), ScopedName("web", string(req.Pod.UID)), metav1.GetOptions{}); err != nil {
			t.Fatalf("the pod is not in the local namespace's name: %v", err)
		}
		if code, body := s.call(t, "POST", "/delete", req.Pod); code != http.StatusOK {
			t.Fatalf("delete: %d %s", code, body)
		}
		for range 2 { // the first sweep marks it empty, the second would remove it
			if n, err := s.RemoveEmptyNamespaces(t.Context()); err != nil || n != 0 {
				t.Fatalf("removed %d namespaces, %v", n, err)
			}
		}
		if ns, err := s.cluster.Client.CoreV1().Namespaces().Get(t.Context(), "plain-"+suffix, metav1.GetOptions{}); err != nil || ns.DeletionTimestamp != nil {
			t.Errorf("the unprefixed namespace went: %v", err)
		}
	})
	t.Run("exclusions", func(t *testing.T) {
		s := serve(t, func(c *Config) { c.Offloading.NamespacePrefixExclusions = []string{"kept-" + suffix} })
		kept, other := runnable("web", "kept-"+suffix), runnable("web", "other-"+suffix)
		nss.add("kept-"+suffix, s.prefix+"-other-"+suffix)
		s.create(t, kept)
		s.create(t, other)
		for ns, req := range map[string]RetrievedPodData{"kept-" + suffix: kept, s.prefix + "-other-" + suffix: other} {
			if _, err := s.cluster.Client.CoreV1().Pods(ns).Get(t.Context(), ScopedName("web", string(req.Pod.UID)), metav1.GetOptions{}); err != nil {
				t.Errorf("pod of %s: %v", req.Pod.Namespace, err)
			}
		}
	})
}

// namespaceCleanup deletes the namespaces a test made outside its prefix.
type namespaceCleanup struct{ names []string }

func (n *namespaceCleanup) add(names ...string) { n.names = append(n.names, names...) }

func cleanupNamespaces(t *testing.T) *namespaceCleanup {
	cl := testcluster.Get(t)
	n := &namespaceCleanup{}
	t.Cleanup(func() {
		for _, ns := range n.names {
			_ = cl.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	return n
}
