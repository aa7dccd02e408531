package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
)

// NeedsRealNodes is the reason an expectation that only real containers can meet is skipped.
const NeedsRealNodes = "needs real nodes (issue 11)"

// Env is the running chain the suite drives.
type Env struct {
	// Local is the cluster users talk to: the VK's node and the shadow pods live there.
	Local kubernetes.Interface
	// Remote is the cluster the plugin runs pods in; RemoteDynamic serves kwok's Logs resource.
	Remote        kubernetes.Interface
	RemoteDynamic dynamic.Interface
	// VKNode is the virtual kubelet's node name.
	VKNode string
	// PodCIDR, ServiceCIDR and DNSIP are the local cluster's, as given to the VK.
	PodCIDR, ServiceCIDR netip.Prefix
	DNSIP                netip.Addr
	// LogDir holds the log files kwok serves for remote containers.
	LogDir string
	// RealNodes makes the real-node expectations checked instead of skipped.
	RealNodes bool
	// Alive reports whether every process of the chain still runs, and names the one that does not.
	// Nil means "not watched".
	Alive func() error
}

// Status is an expectation's outcome.
type Status string

// The outcomes. Skip is only ever "not checked": never counted as passed.
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
	// XFail is a failure Case.Known explains by a defect outside this project (InterLink's VK):
	// reported with the reason and the failure, counted neither as passed nor as failed. A known
	// failure that passes is a FAIL, so the entry is removed once InterLink is fixed.
	XFail Status = "XFAIL"
)

// Result is one expectation of one case.
type Result struct {
	Case, Check string
	Status      Status
	Detail      string
	Duration    time.Duration
}

// Check is an expectation the chain proves without running containers.
type Check struct {
	Name string
	Run  func(ctx context.Context, r *Run) error
}

// checkShadowSecret is the name of the check that the shadow's key Secret goes with its pod: the VK
// never deletes it (InterLink f6321757 deletes a shadow's Deployment, Service, Ingress and the
// ConfigMap <name>-wg-config by name), the plugin's leftover sweep does (run.sh gives the plugin
// the local kubeconfig and a 5 s sweep).
const checkShadowSecret = "the shadow key Secret is removed (the plugin's leftover sweep)"

// vkDefects are the known defects of InterLink's VK that every case meets (XFAIL), by check name.
var vkDefects = map[string]string{}

// checkVolumes is the name of the volume check (Case.Known refers to it).
const checkVolumes = "remote volumes: ConfigMaps, Secrets, projected, emptyDir copied"

// errBlocked marks a check that could not run because an earlier one failed.
var errBlocked = errors.New("blocked")

// Run is one case in flight.
type Run struct {
	Env  *Env
	Case *Case
	// NS is the case's local namespace (short: the VK puts the shadow objects in a namespace it
	// never created when "<pod>-<ns>-<ns>-wstunnel" exceeds 63 characters).
	NS string

	mu       sync.Mutex
	step     string
	results  []Result
	remote   *corev1.Pod // the offloaded pod, once found
	local    *corev1.Pod // the local pod as last read
	uid      string
	shadowNS string
}

// Step is what the case is doing, for progress lines.
func (r *Run) Step() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.step
}

// Results are the case's results so far.
func (r *Run) Results() []Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Result(nil), r.results...)
}

func (r *Run) record(check string, status Status, detail string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.results = append(r.results, Result{Case: r.Case.Name, Check: check, Status: status, Detail: detail, Duration: d.Round(time.Millisecond)})
}

// do runs one check and records its outcome.
func (r *Run) do(ctx context.Context, name string, f func(ctx context.Context) error) bool {
	r.mu.Lock()
	r.step = name
	r.mu.Unlock()
	start := time.Now()
	// A blocked check fails too: what could not be checked is not proven.
	err := f(ctx)
	known, isKnown := r.Case.Known[name]
	if !isKnown {
		known, isKnown = vkDefects[name]
	}
	switch {
	case err != nil && isKnown:
		r.record(name, XFail, known+"; seen: "+err.Error(), time.Since(start))
	case err != nil:
		r.record(name, Fail, err.Error(), time.Since(start))
	case isKnown:
		r.record(name, Fail, "passes although marked as a known defect ("+known+"): remove the entry from Case.Known", time.Since(start))
	default:
		r.record(name, Pass, "", time.Since(start))
	}
	return err == nil
}

func (r *Run) skip(name, reason string) { r.record(name, Skip, reason, 0) }

// Waits, from what the VK does: it polls statuses every 5 s and gives a shadow pod 30 s for an IP.
const (
	waitShort   = 15 * time.Second // an object the previous step implies
	waitRunning = 45 * time.Second // shadow pod IP (≤ 30 s) plus a status round
	waitDelete  = 45 * time.Second
)

// poll retries cond every 250 ms until it holds or timeout passes; the error says what was last
// seen. It gives up at once when a process of the chain died.
func (r *Run) poll(ctx context.Context, what string, timeout time.Duration, cond func(ctx context.Context) (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	var dead error
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, seen, err := cond(ctx)
		if seen != "" && !strings.Contains(seen, "rate limiter") && !strings.Contains(seen, "context deadline") {
			last = seen
		}
		if !ok && r.Env.Alive != nil {
			if dead = r.Env.Alive(); dead != nil {
				return false, dead
			}
		}
		return ok, err
	})
	if err != nil {
		if dead != nil {
			return fmt.Errorf("%s: %w", what, dead)
		}
		if !wait.Interrupted(err) {
			// cond gave up: what it saw can no longer change.
			return fmt.Errorf("%s: %w", what, err)
		}
		if last == "" {
			last = err.Error()
		}
		return fmt.Errorf("%s: not within %v; last seen: %s", what, timeout, last)
	}
	return nil
}

// Execute runs the case from creation to deletion; its results are in Results.
func (r *Run) Execute(ctx context.Context) {
	c := r.Case
	r.shadowNS = r.NS + "-wstunnel"
	if !r.do(ctx, "created through the local API server, scheduled on the VK's node", r.create) {
		r.blockRest("create")
		return
	}
	offloaded := r.do(ctx, "offloaded: VK → InterLink API → plugin → remote pod", r.findRemote)
	r.do(ctx, "local pod Running, phase from the VK", r.running)
	r.do(ctx, "reported containers are exactly the local pod's", r.containersExact)
	if offloaded {
		r.do(ctx, "remote translation: containers, env, probes, hooks, resources", r.translation)
		r.do(ctx, checkVolumes, r.volumes)
	} else {
		r.do(ctx, "remote translation: containers, env, probes, hooks, resources", blocked("no remote pod"))
		r.do(ctx, checkVolumes, blocked("no remote pod"))
	}
	if c.NoMesh {
		r.do(ctx, "opted out: no shadow objects in <ns>-wstunnel", r.noShadow)
		r.do(ctx, "opted out: no mesh-agent sidecar, no mesh Secret", r.noSidecar)
	} else {
		r.do(ctx, "shadow Deployment, Service, Ingress and key Secret in <ns>-wstunnel", r.shadow)
		if offloaded {
			r.do(ctx, "mesh-agent sidecar injected remotely with its mesh.json Secret", r.sidecar)
		} else {
			r.do(ctx, "mesh-agent sidecar injected remotely with its mesh.json Secret", blocked("no remote pod"))
		}
	}
	for _, ch := range c.Checks {
		r.do(ctx, ch.Name, func(ctx context.Context) error { return ch.Run(ctx, r) })
	}
	for _, cl := range c.Clients {
		if r.real() {
			r.do(ctx, "client "+cl.Name+" created on a local node", func(ctx context.Context) error { return r.createClient(ctx, cl) })
		}
		r.wants(ctx, cl.Name, c.ClientWant[cl.Name])
	}
	r.wants(ctx, c.Pod.Name, c.Want)
	if offloaded {
		r.do(ctx, "kubectl logs reaches the plugin through the VK", r.logs)
	} else {
		r.do(ctx, "kubectl logs reaches the plugin through the VK", blocked("no remote pod"))
	}
	r.do(ctx, "kubectl delete removes the pod and its objects remotely", r.deleted)
	if !c.NoMesh {
		if r.do(ctx, "kubectl delete removes the shadow Deployment and Service", r.shadowDeleted) {
			r.do(ctx, checkShadowSecret, r.shadowSecretDeleted)
		} else {
			r.do(ctx, checkShadowSecret, blocked("the shadow Deployment or Service is still there"))
		}
	}
	r.mu.Lock()
	r.step = "cleaning up"
	r.mu.Unlock()
	_ = r.Env.Local.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), r.NS, metav1.DeleteOptions{})
	r.mu.Lock()
	r.step = "done"
	r.mu.Unlock()
}

func blocked(why string) func(context.Context) error {
	return func(context.Context) error { return fmt.Errorf("%w: %s", errBlocked, why) }
}

func (r *Run) blockRest(why string) {
	r.record("remaining checks", Fail, "blocked: "+why+" failed", 0)
}

// wants reports the real-node outcomes of one pod: checked on real nodes, skipped on kwok.
func (r *Run) wants(ctx context.Context, podName string, w Want) {
	var names []string
	if w.Phase != "" {
		names = append(names, fmt.Sprintf("%s: phase %s", podName, w.Phase))
	}
	for _, ctr := range sortedKeys(w.Logs) {
		for _, re := range w.Logs[ctr] {
			names = append(names, fmt.Sprintf("%s: log of %s matches %q", podName, ctr, re))
		}
	}
	for _, ctr := range sortedKeys(w.ExitCodes) {
		names = append(names, fmt.Sprintf("%s: %s exits %d", podName, ctr, w.ExitCodes[ctr]))
	}
	for _, ctr := range sortedKeys(w.Reasons) {
		names = append(names, fmt.Sprintf("%s: %s terminated %s", podName, ctr, w.Reasons[ctr]))
	}
	if !r.real() {
		for _, n := range names {
			r.skip(n, NeedsRealNodes)
		}
		return
	}
	r.realWants(ctx, podName, w)
}

// create makes the namespace, the case's objects and the pod, and waits for the pod to be bound to
// the VK's node.
func (r *Run) create(ctx context.Context) error {
	env := r.Env
	// A run before this one (run.sh runs the cases through a second VK) may still be deleting
	// the namespace: wait for it to go.
	if err := r.poll(ctx, "namespace "+r.NS+" of an earlier run gone", 3*time.Minute, func(ctx context.Context) (bool, string, error) {
		ns, err := env.Local.CoreV1().Namespaces().Get(ctx, r.NS, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, "", nil
		case err != nil:
			return false, err.Error(), nil
		}
		return false, string(ns.Status.Phase), nil
	}); err != nil {
		return err
	}
	_, err := env.Local.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.NS}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create namespace %s: %w", r.NS, err)
	}
	if err := r.poll(ctx, "default ServiceAccount", 30*time.Second, func(ctx context.Context) (bool, string, error) {
		_, err := env.Local.CoreV1().ServiceAccounts(r.NS).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err), nil
	}); err != nil {
		return err
	}
	for _, o := range r.Case.Objects {
		if err := createObject(ctx, env.Local, r.NS, o); err != nil {
			return err
		}
	}
	p := r.Case.Pod.DeepCopy()
	p.Namespace = r.NS
	p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": env.VKNode}
	p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "virtual-node.interlink/no-schedule", Operator: corev1.TolerationOpExists})
	got, err := env.Local.CoreV1().Pods(r.NS).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod: %w", err)
	}
	r.uid = string(got.UID)
	return r.poll(ctx, "pod bound to "+env.VKNode, waitRunning, func(ctx context.Context) (bool, string, error) {
		p, err := env.Local.CoreV1().Pods(r.NS).Get(ctx, got.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		seen := "nodeName " + p.Spec.NodeName
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				seen += fmt.Sprintf(", PodScheduled %s %s: %s", c.Status, c.Reason, c.Message)
			}
		}
		return p.Spec.NodeName == env.VKNode, seen, nil
	})
}

func createObject(ctx context.Context, c kubernetes.Interface, ns string, o any) error {
	var err error
	switch o := o.(type) {
	case *corev1.ConfigMap:
		o = o.DeepCopy()
		o.Namespace = ns
		_, err = c.CoreV1().ConfigMaps(ns).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Secret:
		o = o.DeepCopy()
		o.Namespace = ns
		_, err = c.CoreV1().Secrets(ns).Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Service:
		o = o.DeepCopy()
		o.Namespace = ns
		_, err = c.CoreV1().Services(ns).Create(ctx, o, metav1.CreateOptions{})
	default:
		return fmt.Errorf("case object of unsupported type %T", o)
	}
	if err != nil {
		return fmt.Errorf("create %T in %s: %w", o, ns, err)
	}
	return nil
}

// createClient starts a local pod on the local cluster's own nodes (not the VK's).
func (r *Run) createClient(ctx context.Context, cl *corev1.Pod) error {
	p := cl.DeepCopy()
	p.Namespace = r.NS
	p.Spec.NodeSelector = map[string]string{"type": "kwok"}
	_, err := r.Env.Local.CoreV1().Pods(r.NS).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create client pod %s: %w", p.Name, err)
	}
	return nil
}

func (r *Run) selector() metav1.ListOptions {
	return metav1.ListOptions{LabelSelector: labels.Set{plugin.LabelSourceUID: r.uid}.String()}
}

// findRemote waits for the plugin's pod in the remote cluster.
func (r *Run) findRemote(ctx context.Context) error {
	return r.poll(ctx, "remote pod labelled "+plugin.LabelSourceUID+"="+r.uid, waitRunning, func(ctx context.Context) (bool, string, error) {
		l, err := r.Env.Remote.CoreV1().Pods("").List(ctx, r.selector())
		if err != nil {
			return false, err.Error(), nil
		}
		if len(l.Items) != 1 {
			return false, fmt.Sprintf("%d remote pods", len(l.Items)), nil
		}
		r.mu.Lock()
		r.remote = &l.Items[0]
		r.mu.Unlock()
		return true, "", nil
	})
}

func (r *Run) localPod(ctx context.Context) (*corev1.Pod, error) {
	p, err := r.Env.Local.CoreV1().Pods(r.NS).Get(ctx, r.Case.Pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.local = p
	r.mu.Unlock()
	return p, nil
}

// running waits for the local pod to be Running with an IP; for a meshed pod the IP is its shadow
// pod's. Real containers may finish before the VK's first status poll (every 5 s): a pod that
// already Succeeded or Failed ran too (its Want says which it must be).
func (r *Run) running(ctx context.Context) error {
	err := r.poll(ctx, "local pod Running", waitRunning, func(ctx context.Context) (bool, string, error) {
		p, err := r.localPod(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		ran := p.Status.Phase == corev1.PodRunning && p.Status.PodIP != ""
		if r.real() && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
			ran = true
		}
		return ran, describe(p), nil
	})
	if err != nil || r.Case.NoMesh {
		return err
	}
	shadow, err := r.shadowPod(ctx)
	if err != nil {
		return err
	}
	if ip := r.local.Status.PodIP; ip != shadow.Status.PodIP {
		return fmt.Errorf("local pod IP %s is not its shadow pod %s's IP %s", ip, shadow.Name, shadow.Status.PodIP)
	}
	return nil
}

func describe(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s", p.Status.Phase)
	if p.Status.Reason != "" {
		fmt.Fprintf(&b, " (%s: %s)", p.Status.Reason, p.Status.Message)
	}
	for _, s := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, ", %s %s", s.Name, stateOf(s.State))
	}
	return b.String()
}

func stateOf(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Terminated != nil:
		return fmt.Sprintf("terminated(%s, %d)", s.Terminated.Reason, s.Terminated.ExitCode)
	case s.Waiting != nil:
		return fmt.Sprintf("waiting(%s)", s.Waiting.Reason)
	}
	return "unknown"
}

// containersExact compares the statuses the VK wrote with the local spec: one per container, no
// more (no mesh-agent), in either list.
func (r *Run) containersExact(ctx context.Context) error {
	names := func(cs []corev1.Container) []string {
		var n []string
		for _, c := range cs {
			n = append(n, c.Name)
		}
		return sortedStrings(n)
	}
	statusNames := func(ss []corev1.ContainerStatus) []string {
		var n []string
		for _, s := range ss {
			n = append(n, s.Name)
		}
		return sortedStrings(n)
	}
	want, wantInit := names(r.Case.Pod.Spec.Containers), names(r.Case.Pod.Spec.InitContainers)
	return r.poll(ctx, "container statuses", waitShort, func(ctx context.Context) (bool, string, error) {
		p, err := r.localPod(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		got, gotInit := statusNames(p.Status.ContainerStatuses), statusNames(p.Status.InitContainerStatuses)
		seen := fmt.Sprintf("containers %v (want %v), initContainers %v (want %v)", got, want, gotInit, wantInit)
		return equalStrings(got, want) && equalStrings(gotInit, wantInit), seen, nil
	})
}
