package conformance

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
)

// terminalCase is a pod (or a Job) that ends, run twice: directly on the remote cluster's real
// node, and offloaded through InterLink's VK onto the same node. Both must end alike.
type terminalCase struct {
	name string
	// pod is the pod, or a Job's pod template when backoffLimit is set.
	pod *corev1.Pod
	// backoffLimit, when set, runs pod as a Job's template.
	backoffLimit *int32
	// act, when set, is done to the remote pod once it runs: evict it, delete it.
	act func(ctx context.Context, c kubernetes.Interface, p *corev1.Pod) error
	// phase is the phase both must end in; for a Job, job is its ending ("Failed
	// BackoffLimitExceeded") and every pod of it left must be Failed.
	phase corev1.PodPhase
	job   string
	// exit and messages are what the local pod's containers must end with (through the VK, whose
	// reason is always "Error: <code>" or "Completed": the message says what happened).
	exit     map[string]int32
	messages map[string][]string
}

func terminalCases(shell string) []terminalCase {
	sh := func(name, script string) corev1.Container {
		return corev1.Container{Name: name, Image: shell, ImagePullPolicy: corev1.PullNever, Command: []string{"sh", "-c", script}}
	}
	pod := func(restart corev1.RestartPolicy, inits []corev1.Container, apps ...corev1.Container) *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: restart, InitContainers: inits, Containers: apps,
			TerminationGracePeriodSeconds: ptr.To[int64](2)}}
	}
	// sleep as PID 1 ignores SIGTERM: stopping it takes the grace period and exits 137, as most
	// workloads that do not handle the signal.
	sleeper := sh("app", "echo running; exec sleep 3600")
	evict := func(ctx context.Context, c kubernetes.Interface, p *corev1.Pod) error {
		return c.CoreV1().Pods(p.Namespace).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}})
	}
	remove := func(ctx context.Context, c kubernetes.Interface, p *corev1.Pod) error {
		return c.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
	}
	oom := sh("hog", "echo allocating; head -c 200m /dev/zero | tail")
	oom.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")},
	}
	deadline := pod(corev1.RestartPolicyNever, nil, sleeper)
	deadline.Spec.ActiveDeadlineSeconds = ptr.To[int64](8)
	initFails := []corev1.Container{sh("init", "echo init failing; exit 3")}
	return []terminalCase{
		{
			name:     "init-fails",
			pod:      pod(corev1.RestartPolicyNever, initFails, sh("app", "echo never")),
			phase:    corev1.PodFailed,
			exit:     map[string]int32{"init": 3, "app": 0},
			messages: map[string][]string{"app": {"never started", `init container "init" exited 3`}},
		},
		{
			name: "second-init-fails",
			pod: pod(corev1.RestartPolicyNever, []corev1.Container{
				sh("init-1", "echo first"), sh("init-2", "echo second failing; exit 4"), sh("init-3", "echo never"),
			}, sh("app", "echo never")),
			phase: corev1.PodFailed,
			exit:  map[string]int32{"init-1": 0, "init-2": 4, "init-3": 0, "app": 0},
			messages: map[string][]string{
				"init-3": {"never started", `init container "init-2" exited 4`},
				"app":    {"never started", `init container "init-2" exited 4`},
			},
		},
		{
			name:         "job-init-fails-never",
			pod:          pod(corev1.RestartPolicyNever, initFails, sh("app", "echo never")),
			backoffLimit: ptr.To[int32](1),
			job:          "Failed BackoffLimitExceeded",
		},
		{
			name:         "job-init-fails-onfailure",
			pod:          pod(corev1.RestartPolicyOnFailure, initFails, sh("app", "echo never")),
			backoffLimit: ptr.To[int32](1),
			job:          "Failed BackoffLimitExceeded",
		},
		{
			name:     "deadline-exceeded",
			pod:      deadline,
			phase:    corev1.PodFailed,
			exit:     map[string]int32{"app": 137},
			messages: map[string][]string{"app": {"DeadlineExceeded"}},
		},
		{
			name:     "oom-killed",
			pod:      pod(corev1.RestartPolicyNever, nil, oom),
			phase:    corev1.PodFailed,
			exit:     map[string]int32{"hog": 137},
			messages: map[string][]string{"hog": {"OOMKilled", "32Mi"}},
		},
		{
			name:     "evicted",
			pod:      pod(corev1.RestartPolicyNever, nil, sleeper),
			act:      evict,
			phase:    corev1.PodFailed,
			exit:     map[string]int32{"app": 137},
			messages: map[string][]string{"app": {"EvictionByEvictionAPI"}},
		},
		{
			name:     "deleted-remotely",
			pod:      pod(corev1.RestartPolicyNever, nil, sleeper),
			act:      remove,
			phase:    corev1.PodFailed,
			exit:     map[string]int32{"app": 137},
			messages: map[string][]string{"app": {"deleted at "}},
		},
	}
}

// TestTerminalStates proves that offloaded pods end through InterLink's VK as they end on the
// remote cluster itself: a failed init container, a deadline, an OOM kill, an eviction and a
// delete behind the plugin's back each give the local pod the phase the same pod reaches run
// directly on the remote real node, with a message saying why; a failing Job's pods count against
// its backoffLimit as they would locally. Run by `make conformance` as root.
func TestTerminalStates(t *testing.T) {
	if os.Getenv(envRealPods) != "1" {
		t.Skipf("needs a remote real node: run `make conformance` as root (%s=1)", envRealPods)
	}
	env, _ := setup(t)
	shell := os.Getenv(envShellImage)
	if shell == "" {
		t.Fatalf("%s must be set (run.sh sets it)", envShellImage)
	}
	for i, c := range terminalCases(shell) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tr := &terminalRun{t: t, env: env, c: c, ns: fmt.Sprintf("term-%02d", i+1)}
			var wg sync.WaitGroup
			var direct, offloaded ending
			wg.Go(func() { direct = tr.run(env.Remote, tr.ns+"-direct", false) })
			wg.Go(func() { offloaded = tr.run(env.Local, tr.ns, true) })
			wg.Wait()
			if t.Failed() {
				return
			}
			t.Logf("directly on the remote cluster: %s", direct)
			t.Logf("offloaded through the VK:        %s", offloaded)
			if offloaded.outcome != direct.outcome {
				t.Errorf("offloaded pod ended %q, the same pod directly on the remote cluster %q", offloaded.outcome, direct.outcome)
			}
			switch {
			case c.phase != "" && direct.outcome != string(c.phase):
				t.Errorf("run directly, the pod ended %q, want %s: the case no longer shows what it should", direct.outcome, c.phase)
			case c.job != "" && !strings.HasPrefix(direct.outcome, c.job):
				t.Errorf("run directly, the Job ended %q, want %s: the case no longer shows what it should", direct.outcome, c.job)
			case c.job != "" && offloaded.notFailed > 0:
				t.Errorf("through the VK, %d pods of the ended Job are not Failed: %s", offloaded.notFailed, offloaded.detail)
			}
			if c.backoffLimit == nil {
				tr.checkContainers(offloaded.pod)
			}
		})
	}
}

type terminalRun struct {
	t   *testing.T
	env *Env
	c   terminalCase
	ns  string
}

// ending is how a run ended: the pod's phase, or for a Job its Failed or Complete condition with
// its reason and the failed pods counted.
type ending struct {
	outcome string
	pod     *corev1.Pod // the pod as last seen (not for Jobs)
	detail  string
	// notFailed counts a Job's pods left, not being deleted, in another phase than Failed once
	// it ended.
	notFailed int
}

func (e ending) String() string { return e.outcome + "; " + e.detail }

// run creates the case in namespace ns of cluster c (offloaded: the local cluster, through the
// VK; else directly on the remote real node) and waits for its end.
func (tr *terminalRun) run(c kubernetes.Interface, ns string, offloaded bool) ending {
	t := tr.t
	ctx := t.Context()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("create namespace %s: %v", ns, err)
		return ending{}
	}
	t.Cleanup(func() { _ = c.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), ns, metav1.DeleteOptions{}) })
	if err := tr.poll(ctx, ns+": default ServiceAccount", 30*time.Second, func(ctx context.Context) (bool, string) {
		_, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	}); err != nil {
		t.Error(err)
		return ending{}
	}
	p := tr.c.pod.DeepCopy()
	p.Name, p.Namespace = tr.c.name, ns
	p.Labels = map[string]string{"case": tr.c.name}
	place(p, tr.env.VKNode, offloaded)
	if tr.c.backoffLimit != nil {
		return tr.job(c, p)
	}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Errorf("create pod in %s: %v", ns, err)
		return ending{}
	}
	var final <-chan *corev1.Pod
	if tr.c.act != nil && !offloaded {
		final = tr.watchToDeletion(c, p)
	}
	if tr.c.act != nil {
		// The action is done to the pod on the remote cluster, whichever way it got there.
		target := tr.remotePod(ctx, p, offloaded)
		if target == nil {
			return ending{}
		}
		if err := tr.poll(ctx, ns+": pod running", 2*time.Minute, func(ctx context.Context) (bool, string) {
			got, err := tr.env.Remote.CoreV1().Pods(target.Namespace).Get(ctx, target.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return podReady(got), describe(got)
		}); err != nil {
			t.Error(err)
			return ending{}
		}
		if err := tr.c.act(ctx, tr.env.Remote, target); err != nil {
			t.Errorf("%s: act on the remote pod %s/%s: %v", ns, target.Namespace, target.Name, err)
			return ending{}
		}
	}
	if final != nil {
		// Deleted directly, the pod is gone once it ended: its end is its state when deleted.
		select {
		case last := <-final:
			if last == nil {
				t.Errorf("%s: the watch of %s ended before its deletion", ns, p.Name)
				return ending{}
			}
			return ending{outcome: string(last.Status.Phase), pod: last, detail: "when deleted: " + describe(last)}
		case <-time.After(3 * time.Minute):
			t.Errorf("%s: %s not deleted within 3m", ns, p.Name)
			return ending{}
		}
	}
	var last *corev1.Pod
	err := tr.poll(ctx, ns+": pod ended", 3*time.Minute, func(ctx context.Context) (bool, string) {
		got, err := c.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		last = got
		return got.Status.Phase == corev1.PodFailed || got.Status.Phase == corev1.PodSucceeded, describe(got)
	})
	if err != nil {
		t.Error(err)
		return ending{}
	}
	return ending{outcome: string(last.Status.Phase), pod: last, detail: describe(last)}
}

// watchToDeletion watches pod p from now on and sends its last state, that of its deletion (nil if
// the watch ended first).
func (tr *terminalRun) watchToDeletion(c kubernetes.Interface, p *corev1.Pod) <-chan *corev1.Pod {
	out := make(chan *corev1.Pod, 1)
	w, err := c.CoreV1().Pods(p.Namespace).Watch(tr.t.Context(), metav1.ListOptions{FieldSelector: "metadata.name=" + p.Name})
	if err != nil {
		tr.t.Errorf("watch %s/%s: %v", p.Namespace, p.Name, err)
		out <- nil
		return out
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if got, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Deleted {
				out <- got
				return
			}
		}
		out <- nil
	}()
	return out
}

// place pins p where it must run: through the VK, on the VK's node locally and on the remote real
// node remotely; directly, on the real node. Either way it opts out of the mesh: the VK's shadow
// pods run on kwok here.
func place(p *corev1.Pod, vkNode string, offloaded bool) {
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[meshOptOut] = "disabled"
	if !offloaded {
		pinToRealNode(&p.Spec, "")
		return
	}
	p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": vkNode}
	p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "virtual-node.interlink/no-schedule", Operator: corev1.TolerationOpExists})
	pinToRealNode(&p.Spec, vkNode)
}

// remotePod waits for the pod p on the remote cluster: p itself run directly, else the plugin's
// pod for it.
func (tr *terminalRun) remotePod(ctx context.Context, p *corev1.Pod, offloaded bool) *corev1.Pod {
	if !offloaded {
		return p
	}
	var found *corev1.Pod
	err := tr.poll(ctx, p.Namespace+": offloaded pod on the remote cluster", waitRunning, func(ctx context.Context) (bool, string) {
		local, err := tr.env.Local.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		l, err := tr.env.Remote.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: plugin.LabelSourceUID + "=" + string(local.UID)})
		if err != nil {
			return false, err.Error()
		}
		if len(l.Items) != 1 {
			return false, fmt.Sprintf("%d remote pods; local %s", len(l.Items), describe(local))
		}
		found = &l.Items[0]
		return true, ""
	})
	if err != nil {
		tr.t.Error(err)
	}
	return found
}

// job runs the case's pod as the template of a Job with its backoffLimit and waits for the Job to
// end: Failed or Complete, with the reason and how many pods failed.
func (tr *terminalRun) job(c kubernetes.Interface, p *corev1.Pod) ending {
	t, ctx := tr.t, tr.t.Context()
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
		Spec: batchv1.JobSpec{
			BackoffLimit: tr.c.backoffLimit,
			Template:     corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: p.Labels, Annotations: p.Annotations}, Spec: p.Spec},
		},
	}
	if _, err := c.BatchV1().Jobs(p.Namespace).Create(ctx, j, metav1.CreateOptions{}); err != nil {
		t.Errorf("create job in %s: %v", p.Namespace, err)
		return ending{}
	}
	var e ending
	err := tr.poll(ctx, p.Namespace+": job ended", 5*time.Minute, func(ctx context.Context) (bool, string) {
		got, err := c.BatchV1().Jobs(p.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pods, err := c.CoreV1().Pods(p.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var states []string
		notFailed := 0
		for i := range pods.Items {
			states = append(states, pods.Items[i].Name+": "+describe(&pods.Items[i]))
			if pods.Items[i].Status.Phase != corev1.PodFailed && pods.Items[i].DeletionTimestamp == nil {
				notFailed++ // the Job controller deletes the pods it stops: those may end as they like
			}
		}
		seen := fmt.Sprintf("active %d, failed %d, succeeded %d; pods: %s", got.Status.Active, got.Status.Failed, got.Status.Succeeded, strings.Join(states, "; "))
		for _, cond := range got.Status.Conditions {
			if (cond.Type == batchv1.JobFailed || cond.Type == batchv1.JobComplete) && cond.Status == corev1.ConditionTrue {
				e = ending{outcome: fmt.Sprintf("%s %s, %d failed", cond.Type, cond.Reason, got.Status.Failed), detail: seen, notFailed: notFailed}
				return true, ""
			}
		}
		return false, seen
	})
	if err != nil {
		t.Error(err)
	}
	return e
}

// checkContainers checks the local pod's containers' exit codes and messages.
func (tr *terminalRun) checkContainers(p *corev1.Pod) {
	t := tr.t
	byName := map[string]corev1.ContainerStatus{}
	for _, s := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		byName[s.Name] = s
	}
	for name, code := range tr.c.exit {
		s, ok := byName[name]
		switch {
		case !ok:
			t.Errorf("local pod has no status for %s: %s", name, describe(p))
		case s.State.Terminated == nil:
			t.Errorf("local %s not terminated: %s", name, describe(p))
		case s.State.Terminated.ExitCode != code:
			t.Errorf("local %s exit code %d, want %d (%s)", name, s.State.Terminated.ExitCode, code, s.State.Terminated.Message)
		}
	}
	for name, want := range tr.c.messages {
		s := byName[name]
		if s.State.Terminated == nil {
			continue // reported above
		}
		for _, w := range want {
			if !strings.Contains(s.State.Terminated.Message, w) {
				t.Errorf("local %s message %q lacks %q", name, s.State.Terminated.Message, w)
			}
		}
		t.Logf("local %s: terminated %q, exit %d: %s", name, s.State.Terminated.Reason, s.State.Terminated.ExitCode, s.State.Terminated.Message)
	}
}

func (tr *terminalRun) poll(ctx context.Context, what string, timeout time.Duration, cond func(ctx context.Context) (bool, string)) error {
	return pollChain(ctx, tr.env, what, timeout, cond)
}
