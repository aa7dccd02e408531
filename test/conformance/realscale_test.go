package conformance

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/stats"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
)

// envScalePods (set by make bench-scale as root) is how many pods TestMeshScale offloads at once.
const envScalePods = "IKM_CONFORMANCE_SCALE_PODS"

// scaleRestWindow is how long the apiservers' request counters are read at rest.
const scaleRestWindow = 30 * time.Second

// scaleStall: a meshed round at its deadline is a failure, not a figure, when no pod became Running
// for this long.
const scaleStall = 3 * time.Minute

// TestMeshScale offloads n pods at once through the unmodified VK onto the real nodes twice: first
// without the mesh (annotation interlink.eu/mesh-network: disabled), the floor any pod pays, then
// with it (n shadow pods on the local real node, n mesh-agent sidecars on the remote one). For each
// round it measures created → Running on the local cluster (for a meshed pod Running means its
// apps started, which they do only after the sidecar's first handshake), and at rest the
// apiservers' request rate; after the meshed round, every pod answers a local client's request on
// its IP through the mesh, and the agents' and Traefik's memory is read. Each figure is printed as
// a SCALE row next to its limit (make bench-scale collects them). It fails if a pod ends, a plain
// pod does not run, the meshed round stalls (see scaleRound) or a Running meshed pod does not
// answer; never on a time.
func TestMeshScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(envScalePods))
	if n <= 0 {
		t.Skipf("%s unset: make bench-scale runs this as root", envScalePods)
	}
	if os.Getenv(envRealMesh) != "1" || os.Geteuid() != 0 {
		t.Skipf("needs real-node clusters (%s=1) and root: make bench-scale as root", envRealMesh)
	}
	m := startMeshRun(t, "scale", "", false)
	m.localNamespace()
	client := m.localPod("client", m.localNode, corev1.Container{Name: "shell", Image: m.shell, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"}})

	plain := m.scaleRound("plain", n, false)
	plainRate := m.restRate("plain")
	m.scaleDelete(plain)

	meshed := m.scaleRound("mesh", n, true)
	meshRate := m.restRate("mesh")
	agents, worst, ingress := m.scaleMemory(meshed)
	answered, asked, missing := m.scaleAnswers(client, meshed)

	row := func(figure, value, limit, ratio string) {
		t.Logf("SCALE | %s | %s | %s | %s |", figure, value, limit, ratio)
	}
	// vs is a row comparing the meshed round's q-quantile of got (of total pods) with the plain
	// round's of base: when the meshed round was cut short and the quantile fell among the pods
	// not there by the deadline, the value and the ratio are floors ("> ", "≥ ").
	vs := func(figure string, got []time.Duration, total int, base []time.Duration, q float64) {
		d, ok := stats.QuantileCensored(got, total, q)
		b := percentileOf(base, q)
		value, ratio := d.Round(100*time.Millisecond).String(), fmt.Sprintf("%.2f", secs(d)/secs(b))
		if !ok {
			value, ratio = fmt.Sprintf("> %s (%d of %d by then)", meshed.all, len(got), total), fmt.Sprintf("≥ %.2f", secs(meshed.all)/secs(b))
		}
		row(figure, value, "without the mesh "+b.String(), ratio)
	}
	vs(fmt.Sprintf("%d meshed pods through the VK: created → Running p50", n), meshed.ready, n, plain.ready, 0.5)
	vs(fmt.Sprintf("%d meshed pods through the VK: created → Running p95 (target ≤ 1.5×)", n), meshed.ready, n, plain.ready, 0.95)
	all, allRatio := meshed.all.String(), fmt.Sprintf("%.2f", secs(meshed.all)/secs(plain.all))
	if meshed.short {
		all, allRatio = fmt.Sprintf("> %s (%d of %d Running by then)", meshed.all, len(meshed.ready), n), "≥ "+allRatio
	}
	row(fmt.Sprintf("%d meshed pods: all Running", n), all, "without the mesh "+plain.all.String(), allRatio)
	vs(fmt.Sprintf("%d meshed pods: remote pod created (the VK's queue behind) → Running p50", n), meshed.afterVK, meshed.remotes, plain.afterVK, 0.5)
	vs(fmt.Sprintf("%d meshed pods: remote pod created → Running p95", n), meshed.afterVK, meshed.remotes, plain.afterVK, 0.95)
	k := len(meshed.ready) // the meshed pods Running: n, unless the round was cut short
	row(fmt.Sprintf("agents' memory, %d shadow-agents + %d mesh-agents at rest (RSS)", k, k), fmt.Sprintf("%.0f MiB", agents.total), fmt.Sprintf("%d × 48 MiB", 2*k), fmt.Sprintf("%.2f", agents.total/float64(2*k*48)))
	row("largest agent at rest (RSS, target ≤ 48 MiB)", fmt.Sprintf("%.1f MiB (%s)", worst.mib, worst.comm), "48 MiB", fmt.Sprintf("%.2f", worst.mib/48))
	row(fmt.Sprintf("Traefik with %d tunnels (RSS)", k), fmt.Sprintf("%.0f MiB", ingress), "one agent pair's 48 MiB × 2", fmt.Sprintf("%.2f", ingress/96))
	row("meshed pods answering a local client on their IP (the shadow's)", fmt.Sprintf("%d", answered), fmt.Sprintf("%d Running", asked), fmt.Sprintf("%.2f", float64(answered)/float64(max(asked, 1))))
	rest := "at rest"
	if meshed.short {
		rest = "with the VK still creating the rest"
	}
	for _, side := range []string{"local", "remote"} {
		row(fmt.Sprintf("%s apiserver requests/s, %d meshed pods Running, %s", side, k, rest), fmt.Sprintf("%.1f", meshRate[side]),
			fmt.Sprintf("with %d plain pods %.1f", n, plainRate[side]), fmt.Sprintf("%.2f", meshRate[side]/max(plainRate[side], 0.1)))
	}
	s50, _ := stats.QuantileCensored(meshed.shadowToRunning, meshed.shadows, 0.5)
	s95, ok := stats.QuantileCensored(meshed.shadowToRunning, meshed.shadows, 0.95)
	p95s := s95.Round(100 * time.Millisecond).String()
	if !ok {
		p95s = "over " + p95s
	}
	t.Logf("SCALE-NOTE meshed pods, shadow pod created → Running: p50 %v, p95 %s (the VK creates the next shadow only once this one has an IP)", s50.Round(100*time.Millisecond), p95s)
	t.Logf("SCALE-NOTE %d pods offloaded at once through InterLink's VK onto one real node per cluster: created → Running without the mesh p50 %v p95 %v (all %v); with it %d Running in %v; shadow-agents %.0f MiB, mesh-agents %.0f MiB in all",
		n, percentileOf(plain.ready, 0.5), percentileOf(plain.ready, 0.95), plain.all, k, meshed.all, agents.byComm["shadow-agent"], agents.byComm["mesh-agent"])
	if answered != asked || asked == 0 {
		t.Errorf("%d of %d meshed pods answered a local client on their IP; %s", answered, asked, missing)
	}
}

// scaleRun is one round of TestMeshScale: the local pods created, and each one's time from its
// create call to the first time it was seen Running.
type scaleRun struct {
	name  string
	pods  []*corev1.Pod
	ready []time.Duration
	all   time.Duration // from the first create to the last pod Running
	// afterVK is, for each pod, from its remote pod's creation (the plugin's create, once the VK
	// has handed the pod over) to Running: the part of ready after the VK's queue.
	afterVK []time.Duration
	// shadowToRunning is, for each meshed pod, from its shadow pod's creation to Running.
	shadowToRunning []time.Duration
	runningAt       map[string]time.Time
	// short is a meshed round cut at its deadline with pods not Running yet (the VK's shadow queue
	// behind them): ready, afterVK and shadowToRunning then hold the Running pods only, of remotes
	// remote pods and shadows shadow pods made by then.
	short            bool
	remotes, shadows int
}

// scaleRound creates n offloaded pods, 20 create calls at a time, and waits for every one to be
// Running, listing the namespace so each time is seen as it happens. A meshed round that reaches
// its deadline (6 s a pod and 3 min) is cut short, not failed, while pods are still becoming
// Running (the last within scaleStall): InterLink's VK creates shadows one at a time, and how far
// it got is the figure. Any other round must see every pod Running.
func (m *meshRun) scaleRound(name string, n int, mesh bool) *scaleRun {
	m.t.Helper()
	ctx := m.t.Context()
	selector := "scale-round=" + name
	run := &scaleRun{name: name, runningAt: map[string]time.Time{}}
	var mu sync.Mutex
	created := map[string]time.Time{}
	cpu := readCPU()
	start := time.Now()
	defer func() {
		if m.t.Failed() { // the round cut short: where the machine's CPU went until then
			shares, total := cpuSince(cpu)
			m.t.Logf("SCALE-NOTE %s round, not complete after %s, CPU: %s", name, since(start), describeCPU(shares, total, 10))
		}
	}()
	m.t.Logf("[bench-scale] %s: creating %d pods through the VK", name, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(20)
	for i := range n {
		g.Go(func() error {
			pod := m.scalePod(fmt.Sprintf("%s-%03d", name, i), selector, mesh)
			mu.Lock()
			created[pod.Name] = time.Now()
			mu.Unlock()
			made, err := m.env.Local.CoreV1().Pods(m.ns).Create(gctx, pod, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("create %s: %w", pod.Name, err)
			}
			mu.Lock()
			run.pods = append(run.pods, made)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		m.t.Fatal(err)
	}

	// Listed every 500 ms (pollChain; a watch of the test cluster's apiserver ended within seconds): each
	// time is within 500 ms of when the pod became Running.
	running := map[string]bool{}
	var waiting []string
	lastLog := time.Now()
	deadline := time.Duration(n)*6*time.Second + 3*time.Minute
	err := pollChain(ctx, m.env, fmt.Sprintf("%s: %d pods Running", name, n), deadline, func(ctx context.Context) (bool, string) {
		l, err := m.env.Local.CoreV1().Pods(m.ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err.Error()
		}
		waiting = waiting[:0]
		for i := range l.Items {
			pod := &l.Items[i]
			switch pod.Status.Phase {
			case corev1.PodRunning:
				if !running[pod.Name] {
					running[pod.Name] = true
					mu.Lock()
					run.ready = append(run.ready, time.Since(created[pod.Name]))
					mu.Unlock()
					run.runningAt[pod.Name] = time.Now()
				}
			case corev1.PodFailed, corev1.PodSucceeded:
				m.t.Fatalf("%s: pod %s ended: %s", name, pod.Name, describePod(pod))
			default:
				waiting = append(waiting, describePod(pod))
			}
		}
		if time.Since(lastLog) > 15*time.Second {
			lastLog = time.Now()
			m.t.Logf("[bench-scale] %s: %d of %d pods Running after %s", name, len(running), n, since(start))
		}
		return len(running) == n, fmt.Sprintf("%d of %d Running; waiting: %s", len(running), n, strings.Join(first(waiting, 5), " | "))
	})
	if err != nil {
		var last time.Time
		for _, at := range run.runningAt {
			if at.After(last) {
				last = at
			}
		}
		switch {
		case !mesh || ctx.Err() != nil:
			m.t.Fatal(err)
		case m.env.Alive != nil && m.env.Alive() != nil:
			m.t.Fatalf("%v: %v", err, m.env.Alive())
		case len(running) == 0 || time.Since(last) > scaleStall:
			m.t.Fatalf("%v; stalled: no pod became Running in the last %s", err, scaleStall)
		}
		run.short = true
		m.t.Logf("[bench-scale] %s: %d of %d pods Running at the round's deadline %s, the last %s ago: the rest are still in the VK's queue, and the round is measured as cut short", name, len(running), n, deadline, since(last))
	}
	run.all = time.Since(start).Round(time.Second)
	shares, total := cpuSince(cpu)
	m.t.Logf("SCALE-NOTE %s round, CPU from the first create to the last pod Running (both clusters and their nodes share this machine): %s", name, describeCPU(shares, total, 10))
	m.splitReady(run, mesh)
	if !run.short {
		m.t.Logf("[bench-scale] %s: all %d pods Running in %s (p50 %s, p95 %s)", name, n, run.all, percentileOf(run.ready, 0.5), percentileOf(run.ready, 0.95))
	}
	return run
}

// splitReady works out where each pod's time went: from its remote pod's creation to Running, and
// for meshed pods from its shadow pod's creation to Running. Creation times have a resolution of
// one second.
func (m *meshRun) splitReady(run *scaleRun, mesh bool) {
	m.t.Helper()
	shadows, remotes := m.podsOf(run, mesh)
	run.remotes, run.shadows = len(remotes), len(shadows)
	for _, p := range run.pods {
		at, ok := run.runningAt[p.Name]
		if !ok {
			continue // a round cut short: its times are counted as larger than any seen
		}
		if r := remotes[p.Name]; r != nil {
			run.afterVK = append(run.afterVK, at.Sub(r.CreationTimestamp.Time))
		}
		if s := shadows[p.Name]; s != nil {
			run.shadowToRunning = append(run.shadowToRunning, at.Sub(s.CreationTimestamp.Time))
		}
	}
}

// podsOf finds each local pod's remote pod and, with the mesh, its shadow pod, by the local pod's
// name, listing each side once.
func (m *meshRun) podsOf(run *scaleRun, mesh bool) (shadows, remotes map[string]*corev1.Pod) {
	m.t.Helper()
	ctx := m.t.Context()
	remoteList, err := m.env.Remote.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: plugin.LabelOffloaded + "=" + plugin.ValueOffloaded})
	if err != nil {
		m.t.Fatal(err)
	}
	bySourceUID := map[string]*corev1.Pod{}
	for i, r := range remoteList.Items {
		bySourceUID[r.Annotations[plugin.AnnotSourceUID]] = &remoteList.Items[i]
	}
	byComponent := map[string]*corev1.Pod{}
	if mesh {
		shadowList, err := m.env.Local.CoreV1().Pods(m.ns+"-wstunnel").List(ctx, metav1.ListOptions{})
		if err != nil {
			m.t.Fatal(err)
		}
		for i, s := range shadowList.Items {
			byComponent[s.Labels[componentLabel]] = &shadowList.Items[i]
		}
	}
	shadows, remotes = map[string]*corev1.Pod{}, map[string]*corev1.Pod{}
	for _, p := range run.pods {
		if r := bySourceUID[string(p.UID)]; r != nil {
			remotes[p.Name] = r
		}
		if s := byComponent[shadowComponent(p)]; s != nil {
			shadows[p.Name] = s
		}
	}
	return shadows, remotes
}

// scalePod is one offloaded pod of a round: echo-server alone, on the VK's node, pinned to the
// remote real node; without the mesh it carries the annotation that opts it out.
func (m *meshRun) scalePod(name, selector string, mesh bool) *corev1.Pod {
	p := m.offloadedPod(m.env.VKNode, nil)
	p.Name = name
	k, v, _ := strings.Cut(selector, "=")
	p.Labels = map[string]string{"app": name, k: v}
	p.Spec.Containers = p.Spec.Containers[:1] // web: the echo-server
	if !mesh {
		p.Annotations = map[string]string{"interlink.eu/mesh-network": "disabled"}
	}
	return p
}

// scaleDelete deletes a round's pods and waits until neither cluster holds one of them (or a
// shadow Deployment of them).
func (m *meshRun) scaleDelete(run *scaleRun) {
	m.t.Helper()
	ctx := m.t.Context()
	start := time.Now()
	if err := m.env.Local.CoreV1().Pods(m.ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "scale-round=" + run.name}); err != nil {
		m.t.Fatalf("delete the %s pods: %v", run.name, err)
	}
	uids := map[string]bool{}
	for _, p := range run.pods {
		uids[string(p.UID)] = true
	}
	m.poll(run.name+" pods gone from both clusters", 10*time.Minute, func(ctx context.Context) (bool, string) {
		local, err := m.env.Local.CoreV1().Pods(m.ns).List(ctx, metav1.ListOptions{LabelSelector: "scale-round=" + run.name})
		if err != nil {
			return false, err.Error()
		}
		remote, err := m.env.Remote.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: plugin.LabelOffloaded + "=" + plugin.ValueOffloaded})
		if err != nil {
			return false, err.Error()
		}
		left := 0
		for _, p := range remote.Items {
			if uids[p.Annotations[plugin.AnnotSourceUID]] {
				left++
			}
		}
		return len(local.Items) == 0 && left == 0, fmt.Sprintf("%d local, %d remote pods left", len(local.Items), left)
	})
	m.t.Logf("[bench-scale] %s: %d pods deleted from both clusters in %s", run.name, len(run.pods), since(start))
}

// scaleAnswers has the local client ask every Running meshed pod's IP (every pod, unless the round
// was cut short), in one exec, and fails unless each is answered by its own offloaded echo-server.
// askBatch is how many meshed pods scaleAnswers asks at once: all 84 at once on a saturated node
// timed most of them out (make bench-scale, 2026-12-06: 8 of 84 answered within 3 tries of 3 s).
const askBatch = 10

// scaleAnswers asks every Running meshed pod of the round, from a local client pod, for its
// echo-server's answer on its IP (the shadow's), askBatch at a time. It returns how many answered
// as themselves and a description of the others (never fatal: the round's other figures are
// printed first, and the caller fails the test on a pod that did not answer).
func (m *meshRun) scaleAnswers(client *corev1.Pod, run *scaleRun) (answered, asked int, missing string) {
	m.t.Helper()
	pods, err := m.env.Local.CoreV1().Pods(m.ns).List(m.t.Context(), metav1.ListOptions{LabelSelector: "scale-round=" + run.name})
	if err != nil {
		return 0, 0, err.Error()
	}
	var script strings.Builder
	var names []string
	for _, p := range pods.Items {
		if run.short && p.Status.Phase != corev1.PodRunning {
			continue
		}
		if p.Status.PodIP == "" {
			return 0, len(names), fmt.Sprintf("pod %s has no IP: %s", p.Name, describePod(&p))
		}
		names = append(names, p.Name)
		// Three tries of 5 s each: a shadow's first packet may still be on its way through a fresh
		// tunnel. A subshell each, askBatch at once (one short echo is one write, whole in the pipe).
		fmt.Fprintf(&script, "(for i in 1 2 3; do r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 %s 8080 2>/dev/null | grep -o 'host=[^ ]*') && break; done; echo \"%s $r\") &\n", p.Status.PodIP, p.Name)
		if len(names)%askBatch == 0 {
			script.WriteString("wait\n")
		}
	}
	script.WriteString("wait\n")
	asked = len(names)
	start := time.Now()
	// A batch takes at most 3 tries of 5 s; what came back before the limit still counts.
	batches := (asked + askBatch - 1) / askBatch
	out, err := m.execFor(time.Minute+time.Duration(batches)*20*time.Second, m.localKubeconfig(), m.ns, client.Name, "shell", "sh", "-c", script.String())
	got := map[string]string{}
	for line := range strings.Lines(out) {
		name, host, _ := strings.Cut(strings.TrimSpace(line), " ")
		got[name] = host
	}
	var silent, wrong []string
	for _, name := range names {
		// The echo-server reports its hostname: the remote pod's, which is the local pod's name.
		switch host, ok := got[name]; {
		case host == "host="+name:
			answered++
		case !ok:
			silent = append(silent, name)
		default:
			wrong = append(wrong, name)
		}
	}
	if answered == asked && asked > 0 {
		m.t.Logf("PROVEN a local client reaches each of the %d meshed pods on its IP (the shadow's) and is answered by that pod's offloaded echo-server (%s for all, %d at a time)", answered, since(start), askBatch)
		return answered, asked, ""
	}
	missing = fmt.Sprintf("no answer after 3 tries of 5 s: %s; no line before the %s limit: %s", strings.Join(first(wrong, 10), " "), since(start), strings.Join(first(silent, 10), " "))
	if err != nil {
		missing += fmt.Sprintf(" (exec: %v)", err)
	}
	for _, name := range first(append(wrong, silent...), 3) {
		m.diagnoseSilent(client, name)
	}
	return answered, asked, missing
}

// diagnoseSilent logs what may explain a meshed pod that did not answer: its IP next to its shadow
// pods', their readiness and restarts, the remote pod's, the agents' last log lines, and one more
// ask now (a late answer means slow, not broken).
func (m *meshRun) diagnoseSilent(client *corev1.Pod, name string) {
	ctx := m.t.Context()
	local, err := m.env.Local.CoreV1().Pods(m.ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		m.t.Logf("DIAG %s: %v", name, err)
		return
	}
	m.t.Logf("DIAG %s: local pod %s", name, describePod(local))
	shadowNS := m.ns + "-wstunnel"
	shadows, err := m.env.Local.CoreV1().Pods(shadowNS).List(ctx, metav1.ListOptions{LabelSelector: componentLabel + "=" + shadowComponent(local)})
	if err == nil {
		for _, sp := range shadows.Items {
			m.t.Logf("DIAG %s: shadow pod %s: %s", name, sp.Name, describePod(&sp))
			out, _ := exec.CommandContext(ctx, m.kubectl, "--kubeconfig", m.localKubeconfig(), "-n", shadowNS, "logs", sp.Name, "--tail", "6").CombinedOutput()
			m.t.Logf("DIAG %s: shadow-agent's last lines:\n%s", name, truncate(string(out), 1500))
		}
	}
	remotes, err := m.env.Remote.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: plugin.LabelOffloaded + "=" + plugin.ValueOffloaded})
	if err == nil {
		for _, rp := range remotes.Items {
			if rp.Annotations[plugin.AnnotSourceUID] != string(local.UID) {
				continue
			}
			m.t.Logf("DIAG %s: remote pod %s/%s: %s", name, rp.Namespace, rp.Name, describePod(&rp))
			out, _ := exec.CommandContext(ctx, m.kubectl, "--kubeconfig", m.remoteKubeconfig(), "-n", rp.Namespace, "logs", rp.Name, "-c", plugin.MeshAgentContainer, "--tail", "6").CombinedOutput()
			m.t.Logf("DIAG %s: mesh-agent's last lines:\n%s", name, truncate(string(out), 1500))
		}
	}
	out, err := m.tryExec(m.localKubeconfig(), m.ns, client.Name, "shell", httpGet(local.Status.PodIP)...)
	m.t.Logf("DIAG %s: asked again now: %v %s", name, err, truncate(lastLine(out), 200))
}

// agentMemory sums the agents' RSS.
type agentMemory struct {
	total  float64
	byComm map[string]float64
}

type agentReading struct {
	comm string
	mib  float64
}

// scaleMemory reads, at rest, the RSS of every shadow-agent and mesh-agent of the round's Running
// pods (all, unless the round was cut short) and of Traefik.
func (m *meshRun) scaleMemory(run *scaleRun) (agentMemory, agentReading, float64) {
	m.t.Helper()
	sum := agentMemory{byComm: map[string]float64{}}
	var worst agentReading
	read := func(comm string, pod *corev1.Pod) {
		a, err := findAgent(comm, pod)
		if err != nil {
			m.t.Fatal(err)
		}
		mib, err := a.statusMiB("VmRSS")
		if err != nil {
			m.t.Fatal(err)
		}
		sum.total += mib
		sum.byComm[comm] += mib
		if mib > worst.mib {
			worst = agentReading{comm, mib}
		}
	}
	shadows, remotes := m.podsOf(run, true)
	for _, p := range run.pods {
		if _, ok := run.runningAt[p.Name]; !ok {
			continue
		}
		if shadows[p.Name] == nil || remotes[p.Name] == nil {
			m.t.Fatalf("pod %s: shadow pod %v, remote pod %v: both must be there", p.Name, shadows[p.Name] != nil, remotes[p.Name] != nil)
		}
		read("shadow-agent", shadows[p.Name])
		read("mesh-agent", remotes[p.Name])
	}
	traefik, err := agentProc{comm: "traefik", dir: fmt.Sprintf("/proc/%d", m.ing.cmd.Process.Pid)}.statusMiB("VmRSS")
	if err != nil {
		m.t.Fatal(err)
	}
	return sum, worst, traefik
}

// restRate reads both apiservers' request counters scaleRestWindow apart, the test itself asking
// nothing in between, and returns requests per second by side.
func (m *meshRun) restRate(round string) map[string]float64 {
	m.t.Helper()
	clients := map[string]kubernetes.Interface{"local": m.env.Local, "remote": m.env.Remote}
	before := map[string]float64{}
	for side, c := range clients {
		before[side] = m.requestsServed(c)
	}
	m.t.Logf("[bench-scale] %s: reading both apiservers' request rate and the machine's CPU at rest for %s", round, scaleRestWindow)
	cpu := readCPU()
	select {
	case <-time.After(scaleRestWindow):
	case <-m.t.Context().Done():
		m.t.FailNow()
	}
	out := map[string]float64{}
	for side, c := range clients {
		// The two reads of /metrics themselves are one request each.
		out[side] = (m.requestsServed(c) - before[side] - 1) / scaleRestWindow.Seconds()
	}
	shares, total := cpuSince(cpu)
	m.t.Logf("[bench-scale] %s: at rest, local apiserver %.1f requests/s, remote %.1f", round, out["local"], out["remote"])
	m.t.Logf("SCALE-NOTE %s round at rest, CPU: %s", round, describeCPU(shares, total, 8))
	return out
}

// requestsServed is the sum of an apiserver's apiserver_request_total counters.
func (m *meshRun) requestsServed(c kubernetes.Interface) float64 {
	m.t.Helper()
	raw, err := c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(m.t.Context())
	if err != nil {
		m.t.Fatalf("read the apiserver's /metrics: %v", err)
	}
	total, found := 0.0, false
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			m.t.Fatalf("apiserver metric line %q: %v", line, err)
		}
		total, found = total+v, true
	}
	if !found {
		m.t.Fatal("the apiserver's /metrics has no apiserver_request_total")
	}
	return total
}

// percentileOf is the q-quantile of d, rounded to 100 ms.
func percentileOf(d []time.Duration, q float64) time.Duration {
	return stats.Quantile(d, q).Round(100 * time.Millisecond)
}

func secs(d time.Duration) float64 { return max(d.Seconds(), 0.001) }

func first(s []string, n int) []string { return s[:min(n, len(s))] }
