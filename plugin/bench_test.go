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
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/buildtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/stats"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

// countingClient is a client whose reads of pods are counted: what a /status could ask the
// apiserver. The cache's own list and watch are not counted, nor the plugin's background work on
// other resources (the periodic list of namespaces that removes empty ones).
func countingClient(b *testing.B, base *rest.Config) (kubernetes.Interface, *atomic.Int64) {
	var n atomic.Int64
	cfg := rest.CopyConfig(base)
	cfg.QPS, cfg.Burst = 1000, 2000
	preferProtobuf(cfg) // as the plugin's own client: the floor is the best a client can do
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			q := r.URL.Query()
			cacheFill := q.Get("watch") == "true" || (!strings.Contains(r.URL.Path, "/namespaces/") && strings.HasSuffix(r.URL.Path, "/pods"))
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/pods") && !cacheFill {
				n.Add(1)
			}
			return rt.RoundTrip(r)
		})
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return client, &n
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// seedPods makes n remote pods as the plugin would, bound to a node nobody runs so they stay
// Pending and cost the control plane nothing. It returns the local pods they stand for.
func seedPods(b *testing.B, c *testcluster.Cluster, prefix string, n int) []corev1.Pod {
	ns := RemoteNamespace(prefix, nil, "bench")
	if _, err := c.Client.CoreV1().Namespaces().Create(b.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		// No kubelet will ever confirm these pods' end: remove them at once, or the namespace
		// lingers while the pod garbage collector gets to them one by one.
		now := int64(0)
		_ = c.Client.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &now}, metav1.ListOptions{})
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	c.WaitServiceAccount(b, ns)
	locals := make([]corev1.Pod, n)
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			local := runnable(fmt.Sprintf("pod-%d", i), "bench")
			plan, err := Translate(&local, Offloading{NamespacePrefix: prefix})
			if err != nil {
				return err
			}
			plan.Pod.Spec.NodeName = "bench-nowhere"
			plan.Pod.Spec.ServiceAccountName = "default" // seeded without the plugin, which would make the pod's own
			if _, err := c.Client.CoreV1().Pods(ns).Create(context.Background(), plan.Pod, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("seed pod %d: %w", i, err)
			}
			locals[i] = local.Pod
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return locals
}

// BenchmarkStatus1000 measures /status for one pod (the VK polls per pod) while the plugin manages
// 1,000 offloaded pods: latency percentiles and remote API calls per poll (the target is zero, all
// answers come from the watch cache).
func BenchmarkStatus1000(b *testing.B) {
	c := testcluster.Get(b)
	prefix := "bs" + newUID()[:6]
	locals := seedPods(b, c, prefix, 1000)
	client, calls := countingClient(b, c.Config)
	p, err := New(Config{Client: client, Offloading: Offloading{NamespacePrefix: prefix}})
	if err != nil {
		b.Fatal(err)
	}
	srv := startServing(b, p)
	for deadline := time.Now().Add(2 * time.Minute); p.cachedBySourceUID(string(locals[len(locals)-1].UID)) == nil || p.pods.len() < 1000; {
		if time.Now().After(deadline) {
			b.Fatalf("the watch cache never held the 1,000 seeded pods")
		}
		time.Sleep(10 * time.Millisecond)
	}
	bodies := make([][]byte, len(locals))
	for i := range locals {
		bodies[i], _ = json.Marshal([]corev1.Pod{locals[i]})
	}
	lat := make([]time.Duration, 0, b.N)
	before := calls.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		code, body := srv.do(b, "GET", "/status", bodies[i%len(bodies)])
		lat = append(lat, time.Since(start))
		if code != http.StatusOK || !bytes.Contains(body, []byte(`"JID"`)) {
			b.Fatalf("status: %d %s", code, body)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(calls.Load()-before)/float64(len(lat)), "api-calls/op")
	reportPercentiles(b, lat)
}

// BenchmarkCreate measures the create of a pod with 3 ConfigMaps and 2 Secrets: remote API round
// trips per create and the median latency.
func BenchmarkCreate(b *testing.B) {
	c := testcluster.Get(b)
	prefix := "bc" + newUID()[:6]
	client, calls := countingClient(b, c.Config)
	p, err := New(Config{Client: client, Offloading: Offloading{NamespacePrefix: prefix}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), RemoteNamespace(prefix, nil, "bench"), metav1.DeleteOptions{})
	})
	// The first create also makes the namespace; leave it out of the figures.
	if _, err := p.Create(b.Context(), new(podWithObjects(0))); err != nil {
		b.Fatal(err)
	}
	before := calls.Load()
	var lat []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; b.Loop(); i++ {
		req := podWithObjects(i)
		start := time.Now()
		if _, err := p.Create(b.Context(), &req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(calls.Load()-before)/float64(len(lat)), "api-calls/op")
	reportPercentiles(b, lat)
}

func podWithObjects(i int) RetrievedPodData {
	req := runnable(fmt.Sprintf("pod-%d", i), "bench")
	req.Pod.Spec.Volumes = nil
	req.Pod.Spec.ServiceAccountName = ""
	req.Pod.Spec.ImagePullSecrets = nil
	req.Pod.Spec.InitContainers = nil
	c := &req.Pod.Spec.Containers[0]
	c.VolumeMounts = nil
	entry := RetrievedContainer{Name: c.Name}
	for j := range 3 {
		name := fmt.Sprintf("cm-%d", j)
		entry.ConfigMaps = append(entry.ConfigMaps, corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": "v"}})
		req.Pod.Spec.Volumes = append(req.Pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}})
	}
	for j := range 2 {
		name := fmt.Sprintf("secret-%d", j)
		entry.Secrets = append(entry.Secrets, corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{"k": []byte("v")}})
		req.Pod.Spec.Volumes = append(req.Pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}}})
	}
	req.Containers = []RetrievedContainer{entry}
	return req
}

// BenchmarkRSS1000 runs the real plugin binary against 1,000 offloaded pods and reports its
// resident memory once its cache holds them all.
func BenchmarkRSS1000(b *testing.B) {
	c := testcluster.Get(b)
	prefix := "br" + newUID()[:6]
	seedPods(b, c, prefix, 1000)
	srv, pid := startBinary(b, buildtest.Binary(b, "../cmd/interlink-k8s-plugin"), []string{"K8S_KUBECONFIG_PATH=" + c.Kubeconfig, "OFFLOADING_NAMESPACE_PREFIX=" + prefix})
	// The cache holds every pod labelled as offloaded in the cluster: the 1,000 seeded and
	// whatever earlier runs left terminating. Report how many it held.
	pods := 0
	for b.Loop() {
		deadline := time.Now().Add(time.Minute)
		for pods < 1000 {
			if time.Now().After(deadline) {
				b.Fatalf("plugin reported %d offloaded pods after a minute, want 1000 or more", pods)
			}
			time.Sleep(50 * time.Millisecond)
			if code, body := srv.try("GET", "/metrics", nil); code == http.StatusOK {
				pods = gaugeValue(body, "interlink_plugin_offloaded_pods")
			}
		}
	}
	b.ReportMetric(float64(rssKiB(b, pid))/1024, "rss-MiB")
	b.ReportMetric(float64(pods), "pods")
}

// gaugeValue reads an unlabelled gauge from a Prometheus text exposition, or -1.
func gaugeValue(exposition []byte, name string) int {
	for line := range strings.SplitSeq(string(exposition), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var n int
			if _, err := fmt.Sscan(v, &n); err == nil {
				return n
			}
		}
	}
	return -1
}

func rssKiB(b *testing.B, pid int) int { return procStatusKiB(b, pid, "VmRSS:") }

// peakRSSKiB is the highest resident memory the process has had.
func peakRSSKiB(b *testing.B, pid int) int { return procStatusKiB(b, pid, "VmHWM:") }

func procStatusKiB(b *testing.B, pid int, field string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field); ok {
			var kib int
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kib)
			return kib
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	at := func(q float64) float64 { return float64(stats.Quantile(lat, q).Microseconds()) / 1000 }
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// server is a plugin API reached over its unix socket.
type server struct{ http *http.Client }

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
}

func startServing(b *testing.B, p *Plugin) *server {
	ctx, cancel := context.WithCancel(context.Background())
	sock := filepath.Join(b.TempDir(), "p.sock")
	done := make(chan struct{}, 2)
	go func() { _ = p.Run(ctx); done <- struct{}{} }()
	go func() { _ = Serve(ctx, "unix", sock, p.Handler()); done <- struct{}{} }()
	b.Cleanup(func() { cancel(); <-done; <-done })
	srv := &server{http: unixClient(sock)}
	for i := 0; ; i++ {
		if code, _ := srv.try("GET", "/healthz", nil); code == http.StatusOK {
			return srv
		}
		if i > 200 {
			b.Fatal("plugin never listened")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *server) try(method, path string, body []byte) (int, []byte) {
	req, _ := http.NewRequest(method, "http://plugin"+path, bytes.NewReader(body))
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func (s *server) do(b *testing.B, method, path string, body []byte) (int, []byte) {
	code, out := s.try(method, path, body)
	if code == 0 {
		b.Fatalf("%s %s failed", method, path)
	}
	return code, out
}

// BenchmarkLoad drives the real plugin binary as InterLink does under load: 200 creates, then a
// status poll of each pod, then 200 deletes, each phase at concurrency 1, 20 and 100, with the
// client's default rate limits and with the former defaults (qps 50, burst 100). It reports the
// latency percentiles of each call and the plugin's peak RSS. Run it once: -benchtime 1x.
func BenchmarkLoad(b *testing.B) {
	c := testcluster.Get(b)
	bin := buildtest.Binary(b, "../cmd/interlink-k8s-plugin")
	limits := []struct{ name, qps, burst string }{{"default-limits", "", ""}, {"qps50-burst100", "50", "100"}}
	for _, lim := range limits {
		for _, conc := range []int{1, 20, 100} {
			b.Run(fmt.Sprintf("%s/conc=%d", lim.name, conc), func(b *testing.B) {
				prefix := "bl" + newUID()[:6]
				env := []string{"K8S_KUBECONFIG_PATH=" + c.Kubeconfig, "OFFLOADING_NAMESPACE_PREFIX=" + prefix}
				if lim.qps != "" {
					env = append(env, "K8S_CLIENT_CONFIGURATION_QPS="+lim.qps, "K8S_CLIENT_CONFIGURATION_BURST="+lim.burst)
				}
				srv, pid := startBinary(b, bin, env)
				b.Cleanup(func() {
					_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), RemoteNamespace(prefix, nil, "load"), metav1.DeleteOptions{})
				})
				const pods = 200
				reqs := make([]RetrievedPodData, pods)
				bodies := make([][]byte, pods)
				for i := range reqs {
					reqs[i] = podWithObjects(i)
					reqs[i].Pod.Namespace = "load"
					bodies[i], _ = json.Marshal(reqs[i])
				}
				var creates, statuses, deletes []time.Duration
				for b.Loop() {
					creates = fanOut(b, conc, pods, func(i int) int { code, _ := srv.do(b, "POST", "/create", bodies[i]); return code })
					statuses = fanOut(b, conc, pods, func(i int) int {
						body, _ := json.Marshal([]corev1.Pod{reqs[i].Pod})
						code, _ := srv.do(b, "GET", "/status", body)
						return code
					})
					deletes = fanOut(b, conc, pods, func(i int) int {
						body, _ := json.Marshal(reqs[i].Pod)
						code, _ := srv.do(b, "POST", "/delete", body)
						return code
					})
				}
				for _, ph := range []struct {
					name string
					lat  []time.Duration
				}{{"create", creates}, {"status", statuses}, {"delete", deletes}} {
					reportNamedPercentiles(b, ph.name, ph.lat)
				}
				b.ReportMetric(float64(peakRSSKiB(b, pid))/1024, "peak-rss-MiB")
			})
		}
	}
}

// fanOut runs call(0..n-1) on conc workers and returns each call's latency; any answer but 200
// fails the benchmark.
func fanOut(b *testing.B, conc, n int, call func(i int) int) []time.Duration {
	lat := make([]time.Duration, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := range next {
				start := time.Now()
				if code := call(i); code != http.StatusOK {
					b.Errorf("call %d answered %d", i, code)
				}
				lat[i] = time.Since(start)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return lat
}

func reportNamedPercentiles(b *testing.B, name string, lat []time.Duration) {
	at := func(q float64) float64 { return float64(stats.Quantile(lat, q).Microseconds()) / 1000 }
	for _, q := range []struct {
		unit string
		q    float64
	}{{"p50", 0.5}, {"p95", 0.95}, {"p99", 0.99}} {
		b.ReportMetric(at(q.q), name+"-"+q.unit+"-ms")
	}
}

// startBinary runs the plugin binary with env on a socket of its own until the benchmark ends and
// returns its API and its pid once it is ready.
func startBinary(b *testing.B, bin string, env []string) (*server, int) {
	sock := filepath.Join(b.TempDir(), "p.sock")
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), "APP_SOCKET_ADDRESS=unix://"+sock), env...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	srv := &server{http: unixClient(sock)}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := srv.try("GET", "/readyz", nil); code == http.StatusOK {
			return srv, cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			b.Fatal("the plugin binary was not ready within a minute")
		}
	}
}

// BenchmarkStatusAll is one /status of IKM_SCALE_PODS (10,000) pods, as the VK sends it, answered
// from a cache filled in memory: no cluster, so a CPU profile shows the plugin's own work only
// (go test -run '^$' -bench '^BenchmarkStatusAll$' -cpuprofile cpu.out ./plugin/; docs/scale.md).
func BenchmarkStatusAll(b *testing.B) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("IKM_SCALE_PODS")); err == nil && v > 0 {
		n = v
	}
	p, err := New(Config{Client: fake.NewClientset(), Offloading: Offloading{NamespacePrefix: "bs"}})
	if err != nil {
		b.Fatal(err)
	}
	locals := make([]corev1.Pod, n)
	remotes := make([]any, n)
	for i := range n {
		req := runnable(fmt.Sprintf("pod-%d", i), "scale")
		plan, err := Translate(&req, Offloading{NamespacePrefix: "bs"})
		if err != nil {
			b.Fatal(err)
		}
		remote := plan.Pod
		remote.UID = types.UID(newUID())
		remote.Status.Phase = corev1.PodRunning
		for _, c := range remote.Spec.Containers {
			remote.Status.ContainerStatuses = append(remote.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, ImageID: "sha256:0123", ContainerID: "containerd://0123", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
			})
		}
		locals[i], remotes[i] = req.Pod, remote
	}
	if err := (*cacheStore)(p.pods).Replace(remotes, "1"); err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(locals)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		if err := p.handleStatus(w, httptest.NewRequest(http.MethodPost, "/status", bytes.NewReader(body))); err != nil {
			b.Fatal(err)
		}
		if !bytes.Contains(w.Body.Bytes(), []byte(`"JID":"`+string(remotes[n-1].(*corev1.Pod).UID))) {
			b.Fatalf("the last pod's status is not in the answer")
		}
	}
}
