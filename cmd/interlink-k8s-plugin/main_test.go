package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/syncbuf"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// The Python plugin's own config.sample.ini, unchanged, starts this plugin as a migrating user
// would run it: the file at private/config.ini and the kubeconfig at private/k8s/kubeconfig.yaml
// under the working directory, no --config, the socket moved with APP_SOCKET_ADDRESS as that
// project's docker run line does. The plugin then creates, reports, serves the logs of and
// deletes a pod in the real test cluster.
func TestPythonSampleConfig(t *testing.T) {
	cl := testcluster.Get(t)
	sample, err := os.ReadFile("../../plugin/testdata/python-plugin/config.sample.ini")
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := os.ReadFile(cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for path, data := range map[string][]byte{"private/config.ini": sample, "private/k8s/kubeconfig.yaml": kubeconfig} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, path), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	socket := filepath.Join(dir, "sockets", ".plugin.sock")
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"APP_SOCKET_ADDRESS": "unix://" + socket}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	ctx, cancel := context.WithCancel(t.Context())
	stderr := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, lookup, io.Discard, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the plugin did not stop within 30 s")
		}
	})

	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	call := func(method, path string, body any) (int, []byte) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(t.Context(), method, "http://plugin"+path, bytes.NewReader(b))
		resp, err := hc.Do(req)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60 s; plugin log:\n%s", what, stderr.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	until("plugin ready", func() bool {
		select {
		case err := <-done:
			t.Fatalf("the plugin stopped: %v\n%s", err, stderr.String())
		default:
		}
		code, _ := call("GET", "/readyz", nil)
		return code == http.StatusOK
	})

	log := stderr.String()
	for _, want := range []string{"format=ini", "config=private/config.ini", "namespace_prefix=offloading", "option=tcp_tunnel.enabled", "option=mesh.init_container", "level=DEBUG"} {
		if !strings.Contains(log, want) {
			t.Errorf("the start log lacks %q:\n%s", want, log)
		}
	}
	if code, body := call("GET", "/docs", nil); code != http.StatusOK || !strings.Contains(string(body), "<html") {
		t.Errorf("app.api_docs_path /docs: %d", code)
	}

	ns := "pysample-" + string(uuid.NewUUID())[:8]
	remoteNS := "offloading-" + ns
	t.Cleanup(func() {
		_ = cl.Client.CoreV1().Namespaces().Delete(context.Background(), remoteNS, metav1.DeleteOptions{})
	})
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: ns, UID: types.UID(uuid.NewUUID()), CreationTimestamp: metav1.Now()},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"echo", "hello"}}}},
	}
	code, body := call("POST", "/create", plugin.RetrievedPodData{Pod: pod, Containers: []plugin.RetrievedContainer{{Name: "main"}}})
	if code != http.StatusOK {
		t.Fatalf("create: %d %s", code, body)
	}
	remoteName := plugin.ScopedName(pod.Name, string(pod.UID))
	until("status Running", func() bool {
		code, body := call("GET", "/status", []corev1.Pod{pod})
		var st []plugin.PodStatus
		_ = json.Unmarshal(body, &st)
		return code == http.StatusOK && len(st) == 1 && len(st[0].Containers) == 1 && st[0].Containers[0].State.Running != nil
	})
	cl.SetLogs(t, remoteNS, remoteName, testcluster.ContainerLogs{Container: "main", Lines: []testcluster.LogLine{{Time: time.Now().UTC(), Text: "hello"}}})
	until("logs", func() bool {
		code, body := call("POST", "/getLogs", plugin.LogRequest{Namespace: ns, PodUID: string(pod.UID), PodName: pod.Name, ContainerName: "main"})
		return code == http.StatusOK && string(body) == "hello\n"
	})
	if code, body := call("DELETE", "/delete", pod); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	until("remote pod gone", func() bool {
		p, err := cl.Client.CoreV1().Pods(remoteNS).Get(t.Context(), remoteName, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && p.DeletionTimestamp != nil)
	})
}
