package plugin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/buildtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m, buildtest.Cleanup) }

// served is a plugin serving its API on a unix socket, as InterLink reaches it.
type served struct {
	*Plugin
	cluster *testcluster.Cluster
	http    *http.Client
	prefix  string
	// stop stops the plugin as a SIGTERM does (Run and Serve return); the test's end does it too.
	stop func()
}

// serve starts a plugin against the test cluster with a namespace prefix of its own, so tests
// running side by side never see each other's pods.
func serve(t *testing.T, mutate ...func(*Config)) *served {
	t.Helper()
	c := testcluster.Get(t)
	prefix := "t" + strings.ReplaceAll(string(uuid.NewUUID()), "-", "")[:8]
	cfg := Config{Client: c.Client, Offloading: Offloading{NamespacePrefix: prefix}, CapacityTTL: time.Nanosecond}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sock := filepath.Join(t.TempDir(), "plugin.sock")
	done := make(chan error, 2)
	go func() { done <- p.Run(ctx) }()
	go func() { done <- Serve(ctx, "unix", sock, p.Handler()) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			for range 2 {
				if err := <-done; err != nil {
					t.Errorf("plugin stopped with %v", err)
				}
			}
		})
	}
	t.Cleanup(stop)
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	s := &served{Plugin: p, cluster: c, http: client, prefix: prefix, stop: stop}
	poll(t, "plugin ready", func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://plugin/readyz", nil)
		resp, err := client.Do(req)
		if err != nil {
			return false, nil // not listening yet
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return s
}

// call sends a JSON body (raw bytes are sent as they are) and returns the status and body.
func (s *served) call(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://plugin"+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(SessionHeader, "test-"+t.Name())
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (s *served) create(t *testing.T, req RetrievedPodData) CreateResponse {
	t.Helper()
	code, body := s.call(t, "POST", "/create", req)
	if code != http.StatusOK {
		t.Fatalf("create: %d %s", code, body)
	}
	var resp CreateResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

func (s *served) remoteNS(local string) string { return RemoteNamespace(s.prefix, nil, local) }

func (s *served) remotePod(t *testing.T, local *corev1.Pod) (*corev1.Pod, error) {
	t.Helper()
	return s.cluster.Client.CoreV1().Pods(s.remoteNS(local.Namespace)).Get(t.Context(), ScopedName(local.Name, string(local.UID)), metav1.GetOptions{})
}

func (s *served) status(t *testing.T, pods ...corev1.Pod) []PodStatus {
	t.Helper()
	code, body := s.call(t, "GET", "/status", pods)
	if code != http.StatusOK {
		t.Fatalf("status: %d %s", code, body)
	}
	var out []PodStatus
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("decode status %s: %v", body, err)
	}
	return out
}

// scoped lists the remote ConfigMaps and Secrets of a local pod.
func (s *served) scoped(t *testing.T, local *corev1.Pod) (cms []corev1.ConfigMap, secrets []corev1.Secret) {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: LabelSourceUID + "=" + string(local.UID)}
	cl, err := s.cluster.Client.CoreV1().ConfigMaps(s.remoteNS(local.Namespace)).List(t.Context(), sel)
	if err != nil {
		t.Fatal(err)
	}
	sl, err := s.cluster.Client.CoreV1().Secrets(s.remoteNS(local.Namespace)).List(t.Context(), sel)
	if err != nil {
		t.Fatal(err)
	}
	return cl.Items, sl.Items
}

func poll(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func newUID() string { return string(uuid.NewUUID()) }

// runnable is fullPod without what the test nodes cannot satisfy (a disk=ssd selector) or what
// parallel tests would compete for (GPUs), so kwok runs it.
func runnable(name, namespace string) RetrievedPodData {
	req := fullPod(newUID(), name, namespace)
	req.Pod.Spec.NodeSelector = nil
	for i := range req.Pod.Spec.Containers {
		req.Pod.Spec.Containers[i].Resources = corev1.ResourceRequirements{}
	}
	return req
}

func TestCreateFullSpecRoundTrip(t *testing.T) {
	t.Parallel()
	s := serve(t)
	req := fullPod(newUID(), "web-0", "team-a")
	resp := s.create(t, req)

	remote, err := s.remotePod(t, &req.Pod)
	if err != nil {
		t.Fatal(err)
	}
	if resp.PodJID != string(remote.UID) || resp.PodUID != string(req.Pod.UID) {
		t.Errorf("reply %+v, want PodJID=%s PodUID=%s", resp, remote.UID, req.Pod.UID)
	}
	// What the apiserver stored must be what Translate planned, field for field, for the parts the
	// author wrote (the apiserver adds defaults such as terminationMessagePath; those are fine).
	plan, err := Translate(&req, Offloading{NamespacePrefix: s.prefix})
	if err != nil {
		t.Fatal(err)
	}
	want, got := plan.Pod.Spec.Containers[0], remote.Spec.Containers[0]
	for _, c := range []struct {
		what      string
		want, got any
	}{
		{"liveness probe handler", want.LivenessProbe.HTTPGet.Path, got.LivenessProbe.HTTPGet.Path},
		{"startup probe period", want.StartupProbe.PeriodSeconds, got.StartupProbe.PeriodSeconds},
		{"preStop", want.Lifecycle.PreStop.Exec.Command, got.Lifecycle.PreStop.Exec.Command},
		{"readOnlyRootFilesystem", *want.SecurityContext.ReadOnlyRootFilesystem, *got.SecurityContext.ReadOnlyRootFilesystem},
		{"gpu request", want.Resources.Requests.Name("nvidia.com/gpu", "").String(), got.Resources.Requests.Name("nvidia.com/gpu", "").String()},
		{"affinity weight", plan.Pod.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].Weight, remote.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].Weight},
		{"restartPolicy", corev1.RestartPolicyOnFailure, remote.Spec.RestartPolicy},
		{"dns nameserver", "10.96.0.10", remote.Spec.DNSConfig.Nameservers[0]},
		{"serviceAccount", "builder", remote.Spec.ServiceAccountName},
		{"fsGroup", int64(2000), *remote.Spec.SecurityContext.FSGroup},
		{"init container", "migrate", remote.Spec.InitContainers[0].Name},
	} {
		if fmt.Sprint(c.want) != fmt.Sprint(c.got) {
			t.Errorf("%s: remote has %v, want %v", c.what, c.got, c.want)
		}
	}

	cms, secrets := s.scoped(t, &req.Pod)
	if len(cms) != 1 || len(secrets) != 2 {
		t.Fatalf("remote has %d ConfigMaps and %d Secrets, want 1 and 2", len(cms), len(secrets))
	}
	for _, obj := range append([]metav1.Object{&cms[0]}, &secrets[0], &secrets[1]) {
		refs := obj.GetOwnerReferences()
		if len(refs) != 1 || refs[0].UID != remote.UID {
			t.Errorf("%s owners %v, want the remote pod %s", obj.GetName(), refs, remote.UID)
		}
	}
	var projected *corev1.Secret
	for i := range secrets {
		if strings.HasPrefix(secrets[i].Name, "kube-api-access-abcde-") {
			projected = &secrets[i]
		}
	}
	if projected == nil || string(projected.Data["token"]) != "eyJhbGciOi.local-token" || string(projected.Data["ca.crt"]) == "" {
		t.Errorf("projected volume secret missing the local token and ca.crt: %v", projected)
	}

	// A remote pod deleted behind the plugin's back takes its scoped objects with it (remote GC).
	if err := s.cluster.Client.CoreV1().Pods(remote.Namespace).Delete(t.Context(), remote.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "garbage collection of scoped objects", func(ctx context.Context) (bool, error) {
		cms, secrets := s.scoped(t, &req.Pod)
		return len(cms)+len(secrets) == 0, nil
	})
}

func TestCreateIsIdempotentAndDeleteIsRepeatable(t *testing.T) {
	t.Parallel()
	s := serve(t)
	req := runnable("web", "idem")
	first := s.create(t, req)
	second := s.create(t, req)
	if first != second {
		t.Errorf("retried create answered %+v, first %+v", second, first)
	}
	cms, secrets := s.scoped(t, &req.Pod)
	if len(cms) != 1 || len(secrets) != 2 {
		t.Errorf("after retry: %d ConfigMaps, %d Secrets, want 1 and 2", len(cms), len(secrets))
	}
	// Deleted once the watch cache holds the pod: its ConfigMaps and Secrets go by name, not by label.
	poll(t, "remote pod cached", func(context.Context) (bool, error) { return s.cachedBySourceUID(string(req.Pod.UID)) != nil, nil })
	for i, method := range []string{"POST", "DELETE", "POST"} {
		if code, body := s.call(t, method, "/delete", req.Pod); code != http.StatusOK {
			t.Fatalf("delete #%d (%s): %d %s", i+1, method, code, body)
		}
	}
	if _, err := s.remotePod(t, &req.Pod); err == nil {
		// Deletion is graceful: the pod may linger while terminating.
		poll(t, "remote pod gone", func(ctx context.Context) (bool, error) {
			_, err := s.remotePod(t, &req.Pod)
			return apierrors.IsNotFound(err), nil
		})
	}
	if cms, secrets := s.scoped(t, &req.Pod); len(cms)+len(secrets) != 0 {
		t.Errorf("delete left %d ConfigMaps and %d Secrets", len(cms), len(secrets))
	}
}

func TestCreateRollsBackOnRefusal(t *testing.T) {
	t.Parallel()
	s := serve(t)
	req := runnable("web", "rollback")
	// A Secret key the apiserver refuses: the pod and the ConfigMap are made first, then undone.
	req.Containers[1].Secrets[0].Data["not a valid key!"] = []byte("x")
	// Watch the remote pod so the test sees it made, then undone, not merely never made.
	w, err := s.cluster.Client.CoreV1().Pods(s.remoteNS("rollback")).Watch(t.Context(), metav1.ListOptions{LabelSelector: LabelSourceUID + "=" + string(req.Pod.UID)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	code, body := s.call(t, "POST", "/create", req)
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("create with a refused Secret: %d %s, want 422", code, body)
	}
	var e ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error, "creds") {
		t.Errorf("error body %s does not name the refused Secret", body)
	}
	var events []watch.EventType
	for len(events) < 2 {
		select {
		case ev := <-w.ResultChan():
			if ev.Type == watch.Added || ev.Type == watch.Deleted {
				events = append(events, ev.Type)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("remote pod events %v, want ADDED then DELETED", events)
		}
	}
	if events[0] != watch.Added || events[1] != watch.Deleted {
		t.Errorf("remote pod events %v, want ADDED then DELETED", events)
	}
	poll(t, "rollback", func(ctx context.Context) (bool, error) {
		_, err := s.remotePod(t, &req.Pod)
		cms, secrets := s.scoped(t, &req.Pod)
		return apierrors.IsNotFound(err) && len(cms)+len(secrets) == 0, nil
	})
}

func TestStatus(t *testing.T) {
	t.Parallel()
	s := serve(t)
	req := runnable("web", "status")
	resp := s.create(t, req)

	var st PodStatus
	poll(t, "running status from the cache", func(ctx context.Context) (bool, error) {
		st = s.status(t, req.Pod)[0]
		return len(st.Containers) == 1 && st.Containers[0].State.Running != nil, nil
	})
	if st.JID != resp.PodJID || st.UID != string(req.Pod.UID) || st.Name != "web" || st.Namespace != "status" {
		t.Errorf("status identity %+v, want JID %s", st, resp.PodJID)
	}
	if len(st.InitContainers) != 1 || st.InitContainers[0].Name != "migrate" || st.InitContainers[0].State.Terminated == nil ||
		st.InitContainers[0].State.Terminated.Reason != "Completed" {
		t.Errorf("init container status %+v, want migrate terminated Completed", st.InitContainers)
	}
	if st.Containers[0].Image != "registry.example/web:2" {
		t.Errorf("container image %q", st.Containers[0].Image)
	}

	// Vanished: the remote pod is deleted behind the plugin's back.
	remote, _ := s.remotePod(t, &req.Pod)
	if err := s.cluster.Client.CoreV1().Pods(remote.Namespace).Delete(t.Context(), remote.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "vanished pod reported terminated", func(ctx context.Context) (bool, error) {
		st = s.status(t, req.Pod)[0]
		return len(st.Containers) == 1 && st.Containers[0].State.Terminated != nil, nil
	})
	// Its last state, kept from the delete event, says how it ended: killed while it ran (137), its
	// init container as it really ended.
	if term := st.Containers[0].State.Terminated; term.Reason != ReasonRemotePodGone || term.ExitCode != exitKilled ||
		!strings.Contains(term.Message, "was deleted before it ended") || !strings.Contains(term.Message, "while this container ran") {
		t.Errorf("vanished pod state %+v", term)
	}
	if len(st.InitContainers) != 1 || st.InitContainers[0].State.Terminated == nil || st.InitContainers[0].State.Terminated.Reason != "Completed" {
		t.Errorf("vanished pod init containers %+v, want migrate terminated Completed", st.InitContainers)
	}
}

func TestPingCapacity(t *testing.T) {
	t.Parallel()
	s := serve(t)
	ping := func() PingResponse {
		code, body := s.call(t, "GET", "/status", []byte("[]"))
		if code != http.StatusOK {
			t.Fatalf("ping: %d %s", code, body)
		}
		var p PingResponse
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	before := ping()
	if before.Resources == nil || before.Resources.CPU == "" || len(before.Resources.Accelerators) == 0 {
		t.Fatalf("ping %+v lacks capacity or accelerators", before)
	}
	gpus := func(p PingResponse) string {
		for _, a := range p.Resources.Accelerators {
			if a.ResourceType == "nvidia.com/gpu" {
				return a.Available
			}
		}
		return ""
	}
	if gpus(before) != "8" {
		t.Errorf("GPUs %q, want 8 (2 nodes × 4)", gpus(before))
	}
	// A pod this plugin did not create takes its requests out of what is offered.
	ns := s.cluster.Namespace(t)
	foreign := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "foreign"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "c", Image: "x", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("3")},
			Limits:   corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("3")},
		},
	}}}}
	if _, err := s.cluster.Client.CoreV1().Pods(ns).Create(t.Context(), foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "capacity to drop by the foreign pod's GPUs", func(ctx context.Context) (bool, error) {
		return gpus(ping()) == "5", nil
	})
	// Our own offloaded pods are not subtracted: the local scheduler already counts them.
	req := runnable("gpu-user", "ping")
	s.create(t, req)
	poll(t, "offloaded pod scheduled", func(ctx context.Context) (bool, error) {
		p, err := s.remotePod(t, &req.Pod)
		return err == nil && p.Spec.NodeName != "", nil
	})
	if got := gpus(ping()); got != "5" {
		t.Errorf("GPUs after offloading our own pod = %s, want 5", got)
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	s := serve(t)
	req := runnable("logger", "logs")
	s.create(t, req)
	var remote *corev1.Pod
	poll(t, "remote pod running", func(ctx context.Context) (bool, error) {
		p, err := s.remotePod(t, &req.Pod)
		remote = p
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	lines := []testcluster.LogLine{
		{Time: t0, Text: "one"},
		{Time: t0.Add(30 * time.Minute), Text: "two"},
		{Time: time.Now().UTC().Add(-5 * time.Second), Text: "three"},
	}
	paths := s.cluster.SetLogs(t, remote.Namespace, remote.Name, testcluster.ContainerLogs{
		Container: "web", Lines: lines, Follow: true,
		Previous: []testcluster.LogLine{{Time: t0.Add(-time.Hour), Text: "crashed before"}},
	})
	logs := func(o LogOptions) (int, string) {
		code, body := s.call(t, "POST", "/getLogs", LogRequest{Namespace: "logs", PodUID: string(req.Pod.UID), PodName: "logger", ContainerName: "web", Opts: o})
		return code, string(body)
	}
	poll(t, "kwok to serve the log", func(ctx context.Context) (bool, error) {
		code, body := logs(LogOptions{})
		return code == http.StatusOK && body == "one\ntwo\nthree\n", nil
	})
	tests := []struct {
		name string
		opts LogOptions
		want string
	}{
		{"all", LogOptions{}, "one\ntwo\nthree\n"},
		{"tail", LogOptions{Tail: 2}, "two\nthree\n"},
		{"bytes", LogOptions{LimitBytes: 6}, "one\ntw"},
		{"timestamps", LogOptions{Tail: 1, Timestamps: true}, lines[2].Time.Format("2006-01-02T15:04:05.000000000Z") + " three\n"},
		{"previous", LogOptions{Previous: true}, "crashed before\n"},
		{"since seconds", LogOptions{SinceSeconds: 60}, "three\n"},
		{"since time", LogOptions{SinceTime: t0.Add(10 * time.Minute)}, "two\nthree\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, got := logs(tt.opts)
			if code != http.StatusOK || got != tt.want {
				t.Errorf("logs(%+v) = %d %q, want 200 %q", tt.opts, code, got, tt.want)
			}
		})
	}

	t.Run("follow", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		body, _ := json.Marshal(LogRequest{Namespace: "logs", PodUID: string(req.Pod.UID), PodName: "logger", ContainerName: "web", Opts: LogOptions{Follow: true}})
		hreq, _ := http.NewRequestWithContext(ctx, "GET", "http://plugin/getLogs", bytes.NewReader(body))
		resp, err := s.http.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		for _, want := range []string{"one", "two", "three"} {
			if line, err := r.ReadString('\n'); err != nil || line != want+"\n" {
				t.Fatalf("followed line %q (%v), want %q", line, err, want)
			}
		}
		testcluster.AppendLog(t, paths["web"], testcluster.LogLine{Time: time.Now().UTC(), Text: "appended while following"})
		if line, err := r.ReadString('\n'); err != nil || line != "appended while following\n" {
			t.Fatalf("line appended during follow: %q (%v)", line, err)
		}
	})

	t.Run("follow ends cleanly when the plugin stops", func(t *testing.T) {
		// Another plugin process serving the same pods, stopped while a follower reads.
		s2 := serve(t, func(c *Config) { c.Offloading.NamespacePrefix = s.prefix })
		body, _ := json.Marshal(LogRequest{Namespace: "logs", PodUID: string(req.Pod.UID), PodName: "logger", ContainerName: "web", Opts: LogOptions{Follow: true}})
		hreq, _ := http.NewRequestWithContext(t.Context(), "GET", "http://plugin/getLogs", bytes.NewReader(body))
		resp, err := s2.http.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		if line, err := r.ReadString('\n'); err != nil || line != "one\n" {
			t.Fatalf("first followed line %q (%v)", line, err)
		}
		go s2.stop()
		// The stream ends with a proper end of the chunked body (io.EOF), not cut short by the
		// server's shutdown deadline (io.ErrUnexpectedEOF).
		rest, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("follow stream after the plugin stopped: %v (read %q)", err, rest)
		}
	})
}

func TestErrors(t *testing.T) {
	t.Parallel()
	s := serve(t, func(c *Config) { c.MaxBodyBytes = 64 << 10 })
	valid := fullPod(newUID(), "web", "errors")
	noUID := valid
	noUID.Pod.UID = ""
	tests := []struct {
		name, method, path string
		body               any
		code               int
		field              string
	}{
		{"malformed create", "POST", "/create", []byte(`{"pod":`), http.StatusBadRequest, ""},
		{"wrong shape", "POST", "/create", []byte(`[1,2]`), http.StatusUnprocessableEntity, "(body)"},
		{"wrong field type", "POST", "/create", []byte(`{"pod":{"metadata":{"uid":7}}}`), http.StatusUnprocessableEntity, "pod.metadata.uid"},
		{"trailing garbage", "POST", "/create", append(mustJSON(t, valid), []byte(" x")...), http.StatusBadRequest, ""},
		{"two JSON values", "POST", "/delete", []byte(`{"metadata":{"uid":"u","name":"n","namespace":"x"}} {}`), http.StatusBadRequest, ""},
		{"invalid UTF-8", "POST", "/delete", []byte("{\"metadata\":{\"uid\":\"u\",\"name\":\"\xff\",\"namespace\":\"x\"}}"), http.StatusBadRequest, ""},
		{"null status is not the ping", "GET", "/status", []byte(`null`), http.StatusBadRequest, ""},
		{"status without name", "GET", "/status", []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{UID: "u", Namespace: "y"}}}, http.StatusUnprocessableEntity, "[].metadata.name"},
		{"status without namespace", "GET", "/status", []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{UID: "u", Name: "x"}}}, http.StatusUnprocessableEntity, "[].metadata.namespace"},
		{"create without uid", "POST", "/create", noUID, http.StatusUnprocessableEntity, "pod.metadata.uid"},
		{"status without uid", "GET", "/status", []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "y"}}}, http.StatusUnprocessableEntity, "[].metadata.uid"},
		{"logs without container", "POST", "/getLogs", LogRequest{Namespace: "a", PodUID: "b", PodName: "c"}, http.StatusUnprocessableEntity, "ContainerName"},
		{"logs with negative tail", "POST", "/getLogs", LogRequest{Namespace: "a", PodUID: "b", PodName: "c", ContainerName: "d", Opts: LogOptions{Tail: -1}}, http.StatusUnprocessableEntity, "Opts.Tail"},
		{"logs of an unknown pod", "POST", "/getLogs", LogRequest{Namespace: "a", PodUID: "b", PodName: "c", ContainerName: "d"}, http.StatusNotFound, ""},
		{"delete without name", "POST", "/delete", corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID("u"), Namespace: "n"}}, http.StatusUnprocessableEntity, "metadata.name"},
		{"body too large", "POST", "/create", bytes.Repeat([]byte(" "), 65<<10), http.StatusRequestEntityTooLarge, ""},
		{"wrong method", "PUT", "/create", nil, http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := s.call(t, tt.method, tt.path, tt.body)
			if code != tt.code {
				t.Fatalf("%d %s, want %d", code, body, tt.code)
			}
			if tt.code == http.StatusMethodNotAllowed {
				return
			}
			var e ErrorResponse
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("error body %q is not a JSON error", body)
			}
			if e.Field != tt.field {
				t.Errorf("field = %q, want %q", e.Field, tt.field)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRemoteErrorsMapped(t *testing.T) {
	t.Parallel()
	c := testcluster.Get(t)
	t.Run("forbidden", func(t *testing.T) {
		// A user with no RBAC at all: every remote call is refused with 403.
		cfg := *c.Config
		cfg.Impersonate.UserName = "nobody"
		client := kubernetes.NewForConfigOrDie(&cfg)
		s := &served{Plugin: mustNew(t, Config{Client: client, Offloading: Offloading{NamespacePrefix: "forbidden"}})}
		_, err := s.Create(t.Context(), new(fullPod(newUID(), "web", "x")))
		if HTTPStatus(err) != http.StatusForbidden {
			t.Errorf("create as nobody: %v → %d, want 403", err, HTTPStatus(err))
		}
	})
	t.Run("entity too large", func(t *testing.T) {
		// kube-apiserver refuses request bodies over 3 MiB with 413 before any validation.
		p := mustNew(t, Config{Client: c.Client, Offloading: Offloading{NamespacePrefix: "large"}})
		req := runnable("web", "large")
		req.Containers[1].ConfigMaps[0].Data["huge"] = strings.Repeat("x", 3<<20+1)
		_, err := p.Create(t.Context(), &req)
		if HTTPStatus(err) != http.StatusRequestEntityTooLarge {
			t.Errorf("create with a 3 MiB ConfigMap: %v → %d, want 413", err, HTTPStatus(err))
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there any more
		cfg := *c.Config
		cfg.Host = "https://" + addr
		client := kubernetes.NewForConfigOrDie(&cfg)
		p := mustNew(t, Config{Client: client, RemoteTimeout: 2 * time.Second})
		_, err = p.Create(t.Context(), new(fullPod(newUID(), "web", "x")))
		if HTTPStatus(err) != http.StatusServiceUnavailable {
			t.Errorf("create against a closed port: %v → %d, want 503", err, HTTPStatus(err))
		}
	})
}

func TestHealthMetricsDocs(t *testing.T) {
	t.Parallel()
	s := serve(t)
	s.create(t, runnable("web", "metrics"))
	for _, tt := range []struct{ path, contains string }{
		{"/healthz", "ok"},
		{"/readyz", "ok"},
		{"/metrics", `interlink_plugin_requests_total{code="200",route="/create"} 1`},
		{"/metrics", "interlink_plugin_offloaded_pods"},
		{"/docs", "<code>post /create</code>"},
		{"/docs/openapi.json", `"openapi": "3.0.3"`},
	} {
		code, body := s.call(t, "GET", tt.path, nil)
		if code != http.StatusOK || !strings.Contains(string(body), tt.contains) {
			t.Errorf("GET %s = %d, body lacks %q:\n%.500s", tt.path, code, tt.contains, body)
		}
	}
}

func mustNew(t *testing.T, cfg Config) *Plugin {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOrphanSweep(t *testing.T) {
	t.Parallel()
	c := testcluster.Get(t)
	// The test cluster plays both parts: a real local pod, offloaded, then deleted locally.
	localNS := c.Namespace(t)
	local, err := c.Client.CoreV1().Pods(localNS).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "local"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The local client counts its pod reads: one list of the namespace, and a GET only for a pod
	// the list lacks.
	var lists, gets atomic.Int64
	lc := rest.CopyConfig(c.Config)
	lc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/"+localNS+"/pods") {
				if strings.HasSuffix(r.URL.Path, "/pods") {
					lists.Add(1)
				} else {
					gets.Add(1)
				}
			}
			return rt.RoundTrip(r)
		})
	}
	localClient, err := kubernetes.NewForConfig(lc)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, func(cfg *Config) { cfg.LocalClient = localClient })
	// As InterLink does, send the files of the service-account volume the apiserver added.
	var projected []corev1.ConfigMap
	for _, v := range local.Spec.Volumes {
		if v.Projected != nil {
			projected = append(projected, corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: v.Name}, Data: map[string]string{"token": "t", "ca.crt": "c", "namespace": localNS}})
		}
	}
	kept := RetrievedPodData{Pod: *local, Containers: []RetrievedContainer{{Name: "c", ProjectedVolumeMaps: projected}}}
	s.create(t, kept)
	gone := RetrievedPodData{Pod: *local.DeepCopy(), Containers: kept.Containers}
	gone.Pod.Name, gone.Pod.UID = "gone", types.UID(newUID()) // never existed locally
	s.create(t, gone)
	poll(t, "cache to hold both", func(ctx context.Context) (bool, error) {
		return s.cachedBySourceUID(string(local.UID)) != nil && s.cachedBySourceUID(string(gone.Pod.UID)) != nil, nil
	})
	n, err := s.SweepOrphans(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("sweep removed %d (%v), want 1", n, err)
	}
	if lists.Load() != 1 || gets.Load() != 1 {
		t.Errorf("the sweep listed the local namespace %d times and read %d pods alone, want 1 and 1 (the orphan's check)", lists.Load(), gets.Load())
	}
	if _, err := s.remotePod(t, local); err != nil {
		t.Errorf("the pod whose local pod exists was removed: %v", err)
	}
}
