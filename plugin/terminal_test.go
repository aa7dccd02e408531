package plugin

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// vkPhase is the phase InterLink's VK (f6321757, checkPodsStatus) derives from one status answer
// for a local pod in phase from: a model of its branches, written from its source, so that these
// tests say what the local user would see. The VK leaves the phase as it was when no branch
// applies.
func vkPhase(from corev1.PodPhase, st PodStatus) corev1.PodPhase {
	initWaiting, initRunning, initErrored, initDone := false, false, false, 0
	for _, s := range st.InitContainers {
		switch {
		case s.State.Terminated != nil:
			initDone++
			initErrored = initErrored || s.State.Terminated.ExitCode != 0
		case s.State.Waiting != nil:
			initWaiting = true
		case s.State.Running != nil:
			initRunning = true
		}
	}
	if initDone == len(st.InitContainers) {
		initWaiting = false
	}
	done, errored, running := 0, false, false
	if !initWaiting && !initRunning {
		for _, s := range st.Containers {
			switch {
			case s.State.Terminated != nil:
				done++
				errored = errored || s.State.Terminated.ExitCode != 0
			case s.State.Running != nil:
				running = true
			}
		}
	}
	switch {
	case done == len(st.Containers) && (errored || initErrored):
		return corev1.PodFailed
	case done == len(st.Containers):
		return corev1.PodSucceeded
	case running:
		return corev1.PodRunning
	case initRunning || initWaiting:
		return corev1.PodPending
	}
	return from
}

func terminated(code int32, reason string) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason}}
}

var (
	stateRunning      = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Unix(1_800_000_000, 0)}}
	statePodInit      = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
	restartAlways     = corev1.ContainerRestartPolicyAlways
	deadlineExceeded  = "Pod was active on the node longer than the specified deadline"
	evictedByPressure = "The node was low on resource: memory."
)

func status(name string, state corev1.ContainerState) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, State: state}
}

// endedPod is a remote pod in phase with the given statuses; its spec names the same containers
// (an init container named "sidecar" or MeshAgentContainer restarts Always).
func endedPod(phase corev1.PodPhase, inits, apps []corev1.ContainerStatus) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "job-x7k2p", Namespace: "batch", UID: "remote-uid"},
		Status:     corev1.PodStatus{Phase: phase, InitContainerStatuses: inits, ContainerStatuses: apps},
	}
	for _, s := range inits {
		c := corev1.Container{Name: s.Name}
		if s.Name == "sidecar" || s.Name == MeshAgentContainer {
			c.RestartPolicy = &restartAlways
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
	for _, s := range apps {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: s.Name})
	}
	return p
}

// localOf is the local pod of remote: the same containers without the mesh-agent.
func localOf(remote *corev1.Pod) *corev1.Pod {
	l := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job-x7k2p", Namespace: "batch", UID: "local-uid"}}
	for _, c := range remote.Spec.InitContainers {
		if c.Name != MeshAgentContainer {
			l.Spec.InitContainers = append(l.Spec.InitContainers, c)
		}
	}
	l.Spec.Containers = remote.Spec.Containers
	return l
}

func TestEndedStatus(t *testing.T) {
	withReason := func(p *corev1.Pod, reason, msg string) *corev1.Pod {
		p.Status.Reason, p.Status.Message = reason, msg
		return p
	}
	disrupted := func(p *corev1.Pod, reason, msg string) *corev1.Pod {
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: reason, Message: msg})
		return p
	}
	type want struct {
		code int32
		msg  []string // substrings of the message
	}
	tests := []struct {
		name    string
		remote  *corev1.Pod
		deleted bool
		phase   corev1.PodPhase // the local phase the VK derives
		want    map[string]want // by container
	}{
		{
			name: "init container fails, restartPolicy Never",
			remote: endedPod(corev1.PodFailed,
				[]corev1.ContainerStatus{status("init", terminated(3, "Error"))},
				[]corev1.ContainerStatus{status("app", statePodInit)}),
			phase: corev1.PodFailed,
			want: map[string]want{
				"init": {code: 3},
				"app":  {code: 0, msg: []string{"never started", `batch/job-x7k2p failed (init container "init" exited 3)`}},
			},
		},
		{
			name: "second of three init containers fails",
			remote: endedPod(corev1.PodFailed,
				[]corev1.ContainerStatus{status("init-1", terminated(0, "Completed")), status("init-2", terminated(4, "Error")), status("init-3", statePodInit)},
				[]corev1.ContainerStatus{status("app", statePodInit)}),
			phase: corev1.PodFailed,
			want: map[string]want{
				"init-1": {code: 0},
				"init-2": {code: 4},
				"init-3": {code: 0, msg: []string{"never started", `init container "init-2" exited 4`}},
				"app":    {code: 0, msg: []string{"never started", `init container "init-2" exited 4`}},
			},
		},
		{
			name: "init container fails with the mesh-agent sidecar still running",
			remote: endedPod(corev1.PodFailed,
				[]corev1.ContainerStatus{status(MeshAgentContainer, stateRunning), status("init", terminated(2, "Error"))},
				[]corev1.ContainerStatus{status("app", statePodInit)}),
			phase: corev1.PodFailed,
			want: map[string]want{
				"init": {code: 2},
				"app":  {code: 0, msg: []string{`init container "init" exited 2`}},
			},
		},
		{
			name: "activeDeadlineSeconds exceeded",
			remote: withReason(endedPod(corev1.PodFailed, nil,
				[]corev1.ContainerStatus{status("app", terminated(137, "Error"))}), "DeadlineExceeded", deadlineExceeded),
			phase: corev1.PodFailed,
			want:  map[string]want{"app": {code: 137, msg: []string{"DeadlineExceeded: " + deadlineExceeded}}},
		},
		{
			name: "activeDeadlineSeconds exceeded while an init container ran",
			remote: withReason(endedPod(corev1.PodFailed,
				[]corev1.ContainerStatus{status("init", stateRunning)},
				[]corev1.ContainerStatus{status("app", statePodInit)}), "DeadlineExceeded", deadlineExceeded),
			phase: corev1.PodFailed,
			want: map[string]want{
				"init": {code: 137, msg: []string{"stopped", "while this container ran", "DeadlineExceeded"}},
				"app":  {code: 0, msg: []string{"never started", "DeadlineExceeded"}},
			},
		},
		{
			name: "evicted by node pressure",
			remote: withReason(endedPod(corev1.PodFailed, nil,
				[]corev1.ContainerStatus{status("app", terminated(137, "ContainerStatusUnknown"))}), "Evicted", evictedByPressure),
			phase: corev1.PodFailed,
			want:  map[string]want{"app": {code: 137, msg: []string{"ContainerStatusUnknown", "Evicted: " + evictedByPressure}}},
		},
		{
			// The kubelet ends a deleted pod's containers and sets its phase before the pod goes:
			// the plugin sees it Failed, being deleted, and says so.
			name: "deleted: failed while being deleted",
			remote: func() *corev1.Pod {
				p := endedPod(corev1.PodFailed, nil, []corev1.ContainerStatus{status("app", terminated(137, "Error"))})
				p.DeletionTimestamp = new(metav1.Unix(1_800_000_000, 0))
				return p
			}(),
			phase: corev1.PodFailed,
			want:  map[string]want{"app": {code: 137, msg: []string{"batch/job-x7k2p failed (deleted at 2027-01-15T08:00:00Z)"}}},
		},
		{
			name: "node lost: the last state seen is running",
			remote: disrupted(endedPod(corev1.PodFailed, nil,
				[]corev1.ContainerStatus{status("app", stateRunning)}), "DeletionByPodGC", "PodGC: node no longer exists"),
			phase: corev1.PodFailed,
			want:  map[string]want{"app": {code: exitKilled, msg: []string{"stopped", "DeletionByPodGC: PodGC: node no longer exists"}}},
		},
		{
			name: "failed although every container exited 0",
			remote: withReason(endedPod(corev1.PodFailed, nil,
				[]corev1.ContainerStatus{status("app", terminated(0, "Completed"))}), "Evicted", evictedByPressure),
			phase: corev1.PodFailed,
			want:  map[string]want{"app": {code: exitKilled, msg: []string{"exited 0, but", "Evicted"}}},
		},
		{
			name: "failed before any container started, no exit code anywhere",
			remote: withReason(endedPod(corev1.PodFailed, nil,
				[]corev1.ContainerStatus{status("app", statePodInit), status("helper", statePodInit)}), "DeadlineExceeded", deadlineExceeded),
			phase: corev1.PodFailed,
			want: map[string]want{
				"app":    {code: exitKilled, msg: []string{"never started", "DeadlineExceeded"}},
				"helper": {code: exitKilled, msg: []string{"never started"}},
			},
		},
		{
			name: "succeeded; the sidecar exited 143 when stopped",
			remote: endedPod(corev1.PodSucceeded,
				[]corev1.ContainerStatus{status("sidecar", terminated(143, "Error"))},
				[]corev1.ContainerStatus{status("app", terminated(0, "Completed"))}),
			phase: corev1.PodSucceeded,
			want: map[string]want{
				"sidecar": {code: 0, msg: []string{"the sidecar exited 143"}},
				"app":     {code: 0},
			},
		},
		{
			name: "succeeded; the sidecar's status still says running",
			remote: endedPod(corev1.PodSucceeded,
				[]corev1.ContainerStatus{status("sidecar", stateRunning)},
				[]corev1.ContainerStatus{status("app", terminated(0, "Completed"))}),
			phase: corev1.PodSucceeded,
			want:  map[string]want{"sidecar": {code: 0, msg: []string{"stopped"}}, "app": {code: 0}},
		},
		{
			name: "deleted while running (evicted through the Eviction API)",
			remote: disrupted(endedPod(corev1.PodRunning, nil,
				[]corev1.ContainerStatus{status("app", stateRunning)}), "EvictionByEvictionAPI", "Eviction API: evicting"),
			deleted: true,
			phase:   corev1.PodFailed,
			want:    map[string]want{"app": {code: exitKilled, msg: []string{"was deleted before it ended", "EvictionByEvictionAPI: Eviction API: evicting", "while this container ran"}}},
		},
		{
			// Seen on a real node: the object went right after its containers stopped, and the
			// plugin's last state of it said Failed with exit 137 and no cause of its own.
			name: "deleted: its last state says failed, exit 137",
			remote: func() *corev1.Pod {
				p := endedPod(corev1.PodFailed, nil, []corev1.ContainerStatus{status("app", terminated(137, "Error"))})
				p.DeletionTimestamp = new(metav1.Unix(1_800_000_000, 0))
				return trimForStatus(p)
			}(),
			deleted: true,
			phase:   corev1.PodFailed,
			want:    map[string]want{"app": {code: 137, msg: []string{"was deleted before it ended (deleted at 2027-01-15T08:00:00Z)"}}},
		},
		{
			name: "deleted after it failed: the real exit codes stay",
			remote: endedPod(corev1.PodFailed, nil,
				[]corev1.ContainerStatus{status("app", terminated(143, "Error"))}),
			deleted: true,
			phase:   corev1.PodFailed,
			want:    map[string]want{"app": {code: 143}},
		},
		{
			name: "deleted after it succeeded: Succeeded, not a failure",
			remote: endedPod(corev1.PodSucceeded,
				[]corev1.ContainerStatus{status("init", terminated(0, "Completed"))},
				[]corev1.ContainerStatus{status("app", terminated(0, "Completed"))}),
			deleted: true,
			phase:   corev1.PodSucceeded,
			want:    map[string]want{"init": {code: 0}, "app": {code: 0}},
		},
		{
			name: "deleted before it was scheduled",
			remote: endedPod(corev1.PodPending, nil,
				[]corev1.ContainerStatus{status("app", statePodInit)}),
			deleted: true,
			phase:   corev1.PodFailed,
			want:    map[string]want{"app": {code: exitKilled, msg: []string{"never started", "was deleted before it ended"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local := localOf(tt.remote)
			snapshot := tt.remote.DeepCopy()
			st := endedStatus(PodStatus{}, local, tt.remote, tt.deleted)
			if got := vkPhase(corev1.PodPending, st); got != tt.phase {
				t.Errorf("VK phase %s, want %s; statuses %s", got, tt.phase, statesOf(st))
			}
			if got := vkPhase(corev1.PodRunning, st); got != tt.phase {
				t.Errorf("VK phase from Running %s, want %s", got, tt.phase)
			}
			if tt.remote.Status.String() != snapshot.Status.String() {
				t.Errorf("endedStatus modified the remote pod's status")
			}
			all := append(append([]corev1.ContainerStatus(nil), st.InitContainers...), st.Containers...)
			if len(all) != len(tt.want) {
				t.Errorf("reported %s, want exactly %d containers", statesOf(st), len(tt.want))
			}
			for _, s := range all {
				w, ok := tt.want[s.Name]
				term := s.State.Terminated
				switch {
				case !ok:
					t.Errorf("reported %s, which the local pod does not have", s.Name)
					continue
				case term == nil:
					t.Errorf("%s not terminated: %s", s.Name, statesOf(st))
					continue
				case term.ExitCode != w.code:
					t.Errorf("%s exit code %d, want %d (%s)", s.Name, term.ExitCode, w.code, term.Message)
				case s.Ready:
					t.Errorf("%s still ready", s.Name)
				}
				for _, m := range w.msg {
					if !strings.Contains(term.Message, m) {
						t.Errorf("%s message %q lacks %q", s.Name, term.Message, m)
					}
				}
			}
		})
	}
}

// The rewrite is for pods that ended only: a running or pending pod's states are reported as the
// remote kubelet wrote them.
func TestEnded(t *testing.T) {
	for phase, want := range map[corev1.PodPhase]bool{
		"": false, corev1.PodPending: false, corev1.PodRunning: false, corev1.PodUnknown: false,
		corev1.PodSucceeded: true, corev1.PodFailed: true,
	} {
		if got := ended(&corev1.Pod{Status: corev1.PodStatus{Phase: phase}}); got != want {
			t.Errorf("ended(%q) = %v, want %v", phase, got, want)
		}
	}
}

// Without the rewrite the VK keeps a pod whose init container failed Pending for ever: the case of
// the issue, held here so that the model above is known to tell the two apart.
func TestVKPhaseWithoutRewrite(t *testing.T) {
	remote := endedPod(corev1.PodFailed,
		[]corev1.ContainerStatus{status("init-1", terminated(0, "Completed")), status("init-2", terminated(1, "Error")), status("init-3", statePodInit)},
		[]corev1.ContainerStatus{status("app", statePodInit)})
	if got := vkPhase(corev1.PodPending, reported(PodStatus{}, localOf(remote), remote)); got != corev1.PodPending {
		t.Errorf("raw statuses give %s, want the VK's Pending", got)
	}
}

// A delete under way: the container is terminated before the pod's phase says it ended, and the
// VK may end the local pod on that answer; the message says why. Running containers and pods
// without a cause are left alone.
func TestExplainStopping(t *testing.T) {
	p := endedPod(corev1.PodRunning, nil, []corev1.ContainerStatus{status("app", terminated(137, "Error")), status("side", stateRunning)})
	ss := reported(PodStatus{}, localOf(p), p).Containers
	explainStopping(p, ss)
	if ss[0].State.Terminated.Message != "" {
		t.Errorf("no cause, yet message %q", ss[0].State.Terminated.Message)
	}
	p.DeletionTimestamp = new(metav1.Unix(1_800_000_000, 0))
	explainStopping(p, ss)
	explainStopping(p, ss) // once
	if got, want := ss[0].State.Terminated.Message, "the remote pod batch/job-x7k2p is ending (deleted at 2027-01-15T08:00:00Z)"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	if ss[1].State.Running == nil || ss[1].State.Terminated != nil {
		t.Errorf("a running container changed: %+v", ss[1].State)
	}
}

func TestExplainTerminations(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "hog", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}},
	}}}}
	tests := []struct {
		name string
		in   corev1.ContainerStateTerminated
		want string
	}{
		{"OOMKilled", corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"},
			"OOMKilled: the container used more memory than its limit (32Mi) and was killed (exit 137)"},
		{"OOMKilled with a termination message", corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", Message: "last words"},
			"OOMKilled: the container used more memory than its limit (32Mi) and was killed (exit 137); last words"},
		{"other reason", corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown", Message: "The container could not be located"},
			"ContainerStatusUnknown; The container could not be located"},
		{"Error is what the VK says anyway", corev1.ContainerStateTerminated{ExitCode: 3, Reason: "Error"}, ""},
		{"Completed", corev1.ContainerStateTerminated{Reason: "Completed", Message: "done"}, "done"},
		{"already explained", corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", Message: "OOMKilled: said"}, "OOMKilled: said"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur, last := tt.in, tt.in
			ss := []corev1.ContainerStatus{{Name: "hog", State: corev1.ContainerState{Terminated: &cur}, LastTerminationState: corev1.ContainerState{Terminated: &last}}}
			explainTerminations(pod, ss)
			if cur.Message != tt.want || last.Message != tt.want {
				t.Errorf("message %q (last state %q), want %q", cur.Message, last.Message, tt.want)
			}
		})
	}
}

func TestLastStates(t *testing.T) {
	var l lastStates
	pod := func(i int) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Annotations: map[string]string{AnnotSourceUID: fmt.Sprint(i), "big": strings.Repeat("x", 1000)}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i", Env: []corev1.EnvVar{{Name: "A", Value: "B"}}}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		}
	}
	l.put(&corev1.Pod{}) // no local pod: ignored
	for i := range maxLastStates + 10 {
		l.put(pod(i))
	}
	if l.get("0") != nil || l.get("9") != nil {
		t.Errorf("the oldest states are kept beyond %d", maxLastStates)
	}
	got := l.get("10")
	if got == nil || got.Name != "p10" || got.Status.Phase != corev1.PodRunning || got.Spec.Containers[0].Name != "c" {
		t.Fatalf("state of 10: %+v", got)
	}
	if got.Annotations["big"] != "" || got.Spec.Containers[0].Env != nil {
		t.Errorf("kept more than a status reads: %+v", got)
	}
	l.forget("10")
	if l.get("10") != nil {
		t.Error("forget kept the state")
	}
	for i := range 3 * maxLastStates { // re-put and forget: the order list stays bounded
		l.put(pod(i % 7))
		l.forget(fmt.Sprint(i % 7))
	}
	if len(l.order) > 2*maxLastStates+1 {
		t.Errorf("order holds %d entries", len(l.order))
	}
}

// FuzzEndedStatuses: whatever states a failed (or deleted) remote pod's containers were last seen
// in, the VK fails the local pod and every reported container is terminated.
func FuzzEndedStatuses(f *testing.F) {
	f.Add([]byte{2, 0, 1}, false)      // init failed, app waiting
	f.Add([]byte{1, 1, 3, 0, 0}, true) // running containers, deleted
	f.Add([]byte{0, 4, 0}, false)      // init waiting, nothing exited
	f.Add([]byte{5, 0, 2, 2, 1, 1}, true)
	f.Fuzz(func(t *testing.T, b []byte, deleted bool) {
		if len(b) < 2 || len(b) > 40 {
			return
		}
		nInit := int(b[0]) % 4
		states := b[1:]
		if nInit >= len(states) {
			nInit = len(states) - 1
		}
		state := func(v byte) corev1.ContainerState {
			switch v % 4 {
			case 0:
				return statePodInit
			case 1:
				return stateRunning
			case 2:
				return terminated(int32(v/4), "Error")
			}
			return terminated(0, "Completed")
		}
		var inits, apps []corev1.ContainerStatus
		for i, v := range states {
			if i < nInit {
				name := fmt.Sprintf("init-%d", i)
				if v&0x80 != 0 {
					name = "sidecar"
					if i > 0 {
						name = fmt.Sprintf("sidecar-%d", i)
					}
				}
				inits = append(inits, status(name, state(v)))
			} else {
				apps = append(apps, status(fmt.Sprintf("app-%d", i), state(v)))
			}
		}
		phase := corev1.PodFailed
		if deleted {
			phase = corev1.PodRunning
		}
		remote := endedPod(phase, inits, apps)
		st := endedStatus(PodStatus{}, localOf(remote), remote, deleted)
		if got := vkPhase(corev1.PodPending, st); got != corev1.PodFailed {
			t.Fatalf("VK phase %s, want Failed: %s", got, statesOf(st))
		}
		for _, s := range append(st.InitContainers, st.Containers...) {
			if s.State.Terminated == nil || s.State.Running != nil || s.State.Waiting != nil {
				t.Fatalf("%s not terminated alone: %s", s.Name, statesOf(st))
			}
		}
	})
}

func statesOf(st PodStatus) string {
	var b strings.Builder
	for _, s := range append(append([]corev1.ContainerStatus(nil), st.InitContainers...), st.Containers...) {
		fmt.Fprintf(&b, "%s=", s.Name)
		switch {
		case s.State.Terminated != nil:
			fmt.Fprintf(&b, "terminated(%d, %s) ", s.State.Terminated.ExitCode, s.State.Terminated.Message)
		case s.State.Running != nil:
			b.WriteString("running ")
		case s.State.Waiting != nil:
			fmt.Fprintf(&b, "waiting(%s) ", s.State.Waiting.Reason)
		}
	}
	return b.String()
}
