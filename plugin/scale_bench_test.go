package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/buildtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/stats"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

// The targets of the scale figures (issue "Scale: 10,000 offloaded pods"), where no floor can be
// measured: the plugin's own budget.
const (
	scaleStatusAllTarget = time.Second // one /status of every pod, p99
	scaleRSSTarget       = 300         // MiB, the plugin at the full count
)

// scaleParkingNode is a Node that no kubelet runs (kwok manages only the fake nodes it annotates):
// the seeded pods are bound to it and stay Pending, costing the control plane nothing after their
// create, and its existence keeps the pod garbage collector from deleting them as orphans.
const scaleParkingNode = "scale-parking"

// scaleEnv reads a positive count from the environment, or def.
func scaleEnv(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 50000 {
		b.Fatalf("%s=%q: want 1 to 50000", name, v)
	}
	return n
}

// progress tells a watcher of make bench-scale where the run is (the test's log comes at its end).
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench-scale %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// scaleRow logs one row of make bench-scale's table: the figure, its limit and their ratio.
func scaleRow(b *testing.B, figure string, value, limit float64, unit, limitWhat string) {
	b.Logf("SCALE | %s | %.4g %s | %.4g %s (%s) | %.2f |", figure, value, unit, limit, unit, limitWhat, value/limit)
}

// BenchmarkScale measures the plugin at the pod counts a batch site holds, each figure next to
// its limit from the same run on the same cluster (make bench-scale; run once, -benchtime 1x):
//   - IKM_SCALE_PODS (default 10,000) offloaded pods, seeded as the plugin makes them: the plugin
//     binary's RSS at 10%, 50% and 100% of them (against the 300 MiB target), the in-process
//     plugin's goroutines; one /status request carrying every pod (20 polls; against the 1 s
//     target, and the remote API calls it makes, which must be 0) and /status of one pod among
//     them (200 polls);
//   - IKM_SCALE_CREATES (default 2,000) creates and deletes through the plugin at concurrency 1,
//     20 and 100, against a client that creates and deletes the same objects directly with the
//     plugin's rate limits: the floor the plugin can reach on this apiserver. Errors must be 0.
func BenchmarkScale(b *testing.B) {
	c := testcluster.Get(b)
	for b.Loop() {
		b.Run("pods", func(b *testing.B) { scalePods(b, c, scaleEnv(b, "IKM_SCALE_PODS", 10000)) })
		b.Run("creates", func(b *testing.B) { scaleCreates(b, c, scaleEnv(b, "IKM_SCALE_CREATES", 2000)) })
	}
}

func scalePods(b *testing.B, c *testcluster.Cluster, n int) {
	ctx := b.Context()
	prefix := "sc" + newUID()[:6]
	ns := RemoteNamespace(prefix, nil, "scale")
	parking := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: scaleParkingNode}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, parking, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		now := int64(0)
		_ = c.Client.CoreV1().Pods(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{GracePeriodSeconds: &now}, metav1.ListOptions{})
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		_ = c.Client.CoreV1().Nodes().Delete(context.Background(), scaleParkingNode, metav1.DeleteOptions{})
	})
	c.WaitServiceAccount(b, ns)

	bin := buildtest.Binary(b, "../cmd/interlink-k8s-plugin")
	srvBin, pid := startBinary(b, bin, []string{"K8S_KUBECONFIG_PATH=" + c.Kubeconfig, "OFFLOADING_NAMESPACE_PREFIX=" + prefix})
	client, calls := countingClient(b, c.Config)
	goroutinesBefore := runtime.NumGoroutine()
	p, err := New(Config{Client: client, Offloading: Offloading{NamespacePrefix: prefix}})
	if err != nil {
		b.Fatal(err)
	}
	srv := startServing(b, p)

	locals := make([]corev1.Pod, 0, n)
	seeded := time.Now()
	for _, step := range []int{n / 10, n / 2, n} {
		progress("seeding remote pods up to %d of %d (%v so far)", step, n, time.Since(seeded).Round(time.Second))
		locals = append(locals, scaleSeed(b, c, prefix, ns, len(locals), step-len(locals))...)
		waitCached := func(what string, held func() int) {
			for deadline := time.Now().Add(5 * time.Minute); held() < step; time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("%s held %d pods after 5 min, want %d", what, held(), step)
				}
			}
		}
		waitCached("the plugin binary", func() int {
			_, body := srvBin.try("GET", "/metrics", nil)
			return gaugeValue(body, "interlink_plugin_offloaded_pods")
		})
		waitCached("the in-process plugin", p.pods.len)
		runtime.GC()
		rss := float64(rssKiB(b, pid)) / 1024
		scaleRow(b, fmt.Sprintf("plugin RSS, %d pods", step), rss, scaleRSSTarget, "MiB", "target")
		b.Logf("SCALE-NOTE %d pods seeded in %v; in-process plugin goroutines: %d over the test's own", step, time.Since(seeded).Round(time.Second), runtime.NumGoroutine()-goroutinesBefore)
	}

	all, err := json.Marshal(locals)
	if err != nil {
		b.Fatal(err)
	}
	progress("/status of all %d pods, 20 polls", n)
	before := calls.Load()
	var lat []time.Duration
	for range 20 {
		start := time.Now()
		code, body := srv.do(b, "GET", "/status", all)
		lat = append(lat, time.Since(start))
		var got []PodStatus
		if code != http.StatusOK || json.Unmarshal(body, &got) != nil || len(got) != len(locals) {
			b.Fatalf("status of %d pods: %d, %d statuses", len(locals), code, len(got))
		}
	}
	apiCalls := calls.Load() - before
	p50, p99 := stats.Quantile(lat, 0.5), stats.Quantile(lat, 0.99)
	scaleRow(b, fmt.Sprintf("/status of all %d pods in one request, p99 of 20 (p50 %v)", n, p50.Round(time.Millisecond)),
		float64(p99.Milliseconds()), float64(scaleStatusAllTarget.Milliseconds()), "ms", "target")
	b.Logf("SCALE-NOTE /status of all %d pods: request %d KiB, p50 %v, p99 %v, remote API calls during the 20 polls: %d (must be 0)",
		n, len(all)>>10, p50.Round(time.Millisecond), p99.Round(time.Millisecond), apiCalls)
	if apiCalls != 0 {
		b.Errorf("/status made %d remote API calls, want 0: every answer comes from the watch cache", apiCalls)
	}

	lat = lat[:0]
	for i := range 200 {
		body, _ := json.Marshal([]corev1.Pod{locals[(i*7919)%len(locals)]})
		start := time.Now()
		if code, _ := srv.do(b, "GET", "/status", body); code != http.StatusOK {
			b.Fatalf("status: %d", code)
		}
		lat = append(lat, time.Since(start))
	}
	b.Logf("SCALE-NOTE /status of 1 pod among %d: p50 %v, p99 %v", n, stats.Quantile(lat, 0.5), stats.Quantile(lat, 0.99))
}

// scaleSeed makes count remote pods numbered from first as the plugin would (Translate), bound to
// the parking node and tolerating its taints, and returns the local pods they stand for.
func scaleSeed(b *testing.B, c *testcluster.Cluster, prefix, ns string, first, count int) []corev1.Pod {
	locals := make([]corev1.Pod, count)
	var g errgroup.Group
	g.SetLimit(16)
	for i := range count {
		g.Go(func() error {
			local := runnable(fmt.Sprintf("pod-%d", first+i), "scale")
			plan, err := Translate(&local, Offloading{NamespacePrefix: prefix})
			if err != nil {
				return err
			}
			plan.Pod.Spec.SchedulingGates = nil // the plugin lifts its gate once the pod's objects exist
			plan.Pod.Spec.NodeName = scaleParkingNode
			plan.Pod.Spec.ServiceAccountName = "default"
			plan.Pod.Spec.Tolerations = append(plan.Pod.Spec.Tolerations, corev1.Toleration{Operator: corev1.TolerationOpExists})
			if _, err := c.Client.CoreV1().Pods(ns).Create(context.Background(), plan.Pod, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("seed pod %d: %w", first+i, err)
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

func scaleCreates(b *testing.B, c *testcluster.Cluster, n int) {
	bin := buildtest.Binary(b, "../cmd/interlink-k8s-plugin")
	for _, conc := range []int{1, 20, 100} {
		// The floor: the same objects created and deleted directly, in a namespace of their own,
		// by a client limited only by the apiserver (qps 1000, burst 2000).
		floorNS := RemoteNamespace("sf"+newUID()[:6], nil, "scale")
		if _, err := c.Client.CoreV1().Namespaces().Create(b.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: floorNS}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), floorNS, metav1.DeleteOptions{})
		})
		c.WaitServiceAccount(b, floorNS)
		direct, _ := countingClient(b, c.Config)
		plans := make([]*Plan, n)
		for i := range plans {
			req := podWithObjects(i)
			req.Pod.Namespace = "scale"
			plan, err := Translate(&req, Offloading{NamespacePrefix: ""})
			if err != nil {
				b.Fatal(err)
			}
			// The same objects in the floor's namespace; the pod created last, ungated (the plugin
			// creates it gated, then lifts the gate once its objects exist).
			plan.Pod.Namespace, plan.Pod.Spec.ServiceAccountName, plan.Pod.Spec.SchedulingGates = floorNS, "default", nil
			for _, cm := range plan.ConfigMaps {
				cm.Namespace = floorNS
			}
			for _, s := range plan.Secrets {
				s.Namespace = floorNS
			}
			plans[i] = plan
		}
		progress("concurrency %d: %d creates and deletes directly (the floor), then through the plugin", conc, n)
		var floorErrs int
		before := createCalls(b, c.Client)
		floorCreate := throughput(conc, n, func(i int) error {
			pl := plans[i]
			for _, cm := range pl.ConfigMaps {
				if _, err := direct.CoreV1().ConfigMaps(floorNS).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
					return err
				}
			}
			for _, s := range pl.Secrets {
				if _, err := direct.CoreV1().Secrets(floorNS).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
					return err
				}
			}
			_, err := direct.CoreV1().Pods(floorNS).Create(context.Background(), pl.Pod, metav1.CreateOptions{})
			return err
		}, &floorErrs)
		floorCalls := createCalls(b, c.Client).minus(before)
		// The plugin deletes a pod's ConfigMaps and Secrets itself rather than leave them to the
		// garbage collector: the floor deletes the same objects.
		floorDelete := throughput(conc, n, func(i int) error {
			pl, ctx := plans[i], context.Background()
			if err := direct.CoreV1().Pods(floorNS).Delete(ctx, pl.Pod.Name, metav1.DeleteOptions{}); err != nil {
				return err
			}
			for _, cm := range pl.ConfigMaps {
				if err := direct.CoreV1().ConfigMaps(floorNS).Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
					return err
				}
			}
			for _, s := range pl.Secrets {
				if err := direct.CoreV1().Secrets(floorNS).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
					return err
				}
			}
			return nil
		}, &floorErrs)

		// The floor of the plugin's own call pattern: the same objects made directly the way the
		// plugin makes them (the pod held by its scheduling gate, its objects owned by it side by
		// side, the gate's release). The plugin against it is the plugin's own overhead; this
		// floor against the first is the price of the gate.
		gatedNS := RemoteNamespace("sg"+newUID()[:6], nil, "scale")
		if _, err := c.Client.CoreV1().Namespaces().Create(b.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: gatedNS}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), gatedNS, metav1.DeleteOptions{})
		})
		c.WaitServiceAccount(b, gatedNS)
		gatedCreate := throughput(conc, n, func(i int) error { return createGated(direct, gatedNS, plans[i]) }, &floorErrs)
		// Cleared before the plugin's turn; the garbage collector takes the objects (not a figure:
		// the plugin deletes them itself).
		throughput(conc, n, func(i int) error {
			return direct.CoreV1().Pods(gatedNS).Delete(context.Background(), plans[i].Pod.Name, metav1.DeleteOptions{})
		}, &floorErrs)

		prefix := "sp" + newUID()[:6]
		srv, _ := startBinary(b, bin, []string{"K8S_KUBECONFIG_PATH=" + c.Kubeconfig, "OFFLOADING_NAMESPACE_PREFIX=" + prefix, "APP_PPROF=true"})
		b.Cleanup(func() {
			_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), RemoteNamespace(prefix, nil, "scale"), metav1.DeleteOptions{})
		})
		bodies, deletes := make([][]byte, n), make([][]byte, n)
		for i := range bodies {
			req := podWithObjects(i)
			req.Pod.Namespace = "scale"
			bodies[i], _ = json.Marshal(req)
			deletes[i], _ = json.Marshal(req.Pod)
		}
		var pluginErrs int
		call := func(path string, body []byte) error {
			if code, out := srv.try("POST", path, body); code != http.StatusOK {
				return fmt.Errorf("%s: %d %s", path, code, out)
			}
			return nil
		}
		before = createCalls(b, c.Client)
		profiled := make(chan string, 1)
		if conc == 100 {
			go func() { profiled <- profileCreates(b, srv) }()
		} else {
			profiled <- ""
		}
		create := throughput(conc, n, func(i int) error { return call("/create", bodies[i]) }, &pluginErrs)
		pluginCalls := createCalls(b, c.Client).minus(before)
		if top := <-profiled; top != "" {
			b.Logf("SCALE-NOTE concurrency %d: the plugin's CPU profile during the creates (%s):\n%s", conc, profileWindow, top)
		}
		b.Logf("SCALE-NOTE concurrency %d: API calls a create, counted by the apiserver: through the plugin %.2f (%s), directly %.2f (%s)",
			conc, pluginCalls.total()/float64(n), pluginCalls, floorCalls.total()/float64(n), floorCalls)
		del := throughput(conc, n, func(i int) error { return call("/delete", deletes[i]) }, &pluginErrs)

		scaleRow(b, fmt.Sprintf("creates/s, %d pods at concurrency %d (p99 %v; floor p99 %v)", n, conc, create.p99.Round(time.Millisecond), floorCreate.p99.Round(time.Millisecond)),
			create.perSecond, floorCreate.perSecond, "pods/s", "apiserver floor")
		scaleRow(b, fmt.Sprintf("deletes/s, %d pods at concurrency %d (p99 %v; floor p99 %v)", n, conc, del.p99.Round(time.Millisecond), floorDelete.p99.Round(time.Millisecond)),
			del.perSecond, floorDelete.perSecond, "pods/s", "apiserver floor")
		scaleRow(b, fmt.Sprintf("creates/s, %d pods at concurrency %d, against the plugin's call pattern made directly (p99 %v)", n, conc, gatedCreate.p99.Round(time.Millisecond)),
			create.perSecond, gatedCreate.perSecond, "pods/s", "gated floor")
		b.Logf("SCALE-NOTE concurrency %d: the plugin's call pattern made directly (gated pod, objects side by side, gate release): %.1f creates/s, %.2f of the floor's %.1f",
			conc, gatedCreate.perSecond, gatedCreate.perSecond/floorCreate.perSecond, floorCreate.perSecond)
		if pluginErrs+floorErrs != 0 {
			b.Errorf("concurrency %d: %d errors through the plugin, %d directly, want 0", conc, pluginErrs, floorErrs)
		}
	}
}

// createGated makes plan's pod in ns as the plugin does, directly: the pod held by GateObjects,
// then its ConfigMaps and Secrets owned by it, side by side, then the gate's release (a JSON
// patch, as the plugin's).
func createGated(c kubernetes.Interface, ns string, plan *Plan) error {
	ctx := context.Background()
	pod := plan.Pod.DeepCopy()
	pod.Namespace = ns
	pod.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: GateObjects}}
	made, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	owner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: made.Name, UID: made.UID}}
	var g errgroup.Group
	for _, cm := range plan.ConfigMaps {
		o := cm.DeepCopy()
		o.Namespace, o.OwnerReferences = ns, owner
		g.Go(func() error { _, err := c.CoreV1().ConfigMaps(ns).Create(ctx, o, metav1.CreateOptions{}); return err })
	}
	for _, s := range plan.Secrets {
		o := s.DeepCopy()
		o.Namespace, o.OwnerReferences = ns, owner
		g.Go(func() error { _, err := c.CoreV1().Secrets(ns).Create(ctx, o, metav1.CreateOptions{}); return err })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	patch := fmt.Sprintf(`[{"op":"test","path":"/spec/schedulingGates/0/name","value":%q},{"op":"remove","path":"/spec/schedulingGates/0"}]`, GateObjects)
	_, err = c.CoreV1().Pods(ns).Patch(ctx, made.Name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// profileWindow is how long the CPU profile of the plugin's creates at concurrency 100 lasts, from
// the first create: within the phase at the default 2,000 creates (about 40 s).
const profileWindow = 10 * time.Second

// profileCreates takes a CPU profile of the plugin binary through its /debug/pprof/profile
// (app.pprof), keeps it as bin/bench-scale-creates.pprof (a failure to keep it is logged), and
// returns `go tool pprof -top`'s first lines, or why there are none.
func profileCreates(b *testing.B, srv *server) string {
	code, prof := srv.try("GET", fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(profileWindow.Seconds())), nil)
	if code != http.StatusOK {
		return fmt.Sprintf("no profile: /debug/pprof/profile answered %d %s", code, prof)
	}
	path, err := filepath.Abs(filepath.Join("..", "bin", "bench-scale-creates.pprof"))
	if err == nil {
		err = os.WriteFile(path, prof, 0o644)
	}
	if err != nil {
		path = filepath.Join(b.TempDir(), "creates.pprof")
		if werr := os.WriteFile(path, prof, 0o644); werr != nil {
			return fmt.Sprintf("no profile kept: %v; %v", err, werr)
		}
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", path).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof %s: %v: %s", path, err, out)
	}
	return fmt.Sprintf("kept in %s\n%s", path, out)
}

// rate is a phase's throughput and p99 latency.
type rate struct {
	perSecond float64
	p99       time.Duration
}

// throughput runs call(0..n-1) on conc workers and measures it; failures are counted in errs and
// logged (the first few).
func throughput(conc, n int, call func(i int) error, errs *int) rate {
	lat := make([]time.Duration, n)
	failed := make([]error, n)
	next := make(chan int)
	start := time.Now()
	var g errgroup.Group
	for range conc {
		g.Go(func() error {
			for i := range next {
				t := time.Now()
				failed[i] = call(i)
				lat[i] = time.Since(t)
			}
			return nil
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	_ = g.Wait()
	took := time.Since(start)
	for i, err := range failed {
		if err != nil {
			if *errs < 3 {
				progress("call %d failed: %v", i, err)
			}
			*errs++
		}
	}
	return rate{perSecond: float64(n) / took.Seconds(), p99: stats.Quantile(lat, 0.99)}
}

// callCounts are apiserver_request_total counters by "VERB resource".
type callCounts map[string]float64

// createCalls reads the apiserver's counters of the calls a create makes: POST, PUT, PATCH and GET
// of pods, ConfigMaps, Secrets, ServiceAccounts and namespaces, without subresource (kwok's
// status patches and the scheduler's bindings are subresources, and others' LIST and WATCH are left
// out).
func createCalls(b *testing.B, c kubernetes.Interface) callCounts {
	b.Helper()
	raw, err := c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(b.Context())
	if err != nil {
		b.Fatalf("the apiserver's /metrics: %v", err)
	}
	out := callCounts{}
	label := func(line, name string) string {
		_, v, ok := strings.Cut(line, name+`="`)
		if !ok {
			return ""
		}
		v, _, _ = strings.Cut(v, `"`)
		return v
	}
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, "apiserver_request_total{") || label(line, "subresource") != "" {
			continue
		}
		verb, resource := label(line, "verb"), label(line, "resource")
		if !slices.Contains([]string{"POST", "PUT", "PATCH", "GET"}, verb) ||
			!slices.Contains([]string{"pods", "configmaps", "secrets", "serviceaccounts", "namespaces"}, resource) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			b.Fatalf("apiserver_request_total line %q: %v", line, err)
		}
		out[verb+" "+resource] += v
	}
	return out
}

// minus is the counts since before.
func (c callCounts) minus(before callCounts) callCounts {
	out := callCounts{}
	for k, v := range c {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func (c callCounts) total() float64 {
	t := 0.0
	for _, v := range c {
		t += v
	}
	return t
}

// String lists the counts, "POST pods 2000, ...", in key order.
func (c callCounts) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, c[k]))
	}
	return strings.Join(parts, ", ")
}
