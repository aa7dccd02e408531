package plugin

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Reasons of the terminated states the plugin writes for containers of a remote pod that ended
// before they ran or finished. InterLink's VK shows "Error: <code>" or "Completed" instead; the
// message it keeps says what happened.
const (
	ReasonRemotePodFailed    = "RemotePodFailed"
	ReasonRemotePodSucceeded = "RemotePodSucceeded"
)

// exitKilled is the exit code of a container stopped by its pod's end (a deadline, an eviction, a
// lost node, a delete): 128+SIGKILL, what Kubernetes itself reports for a container whose state is
// unknown when its pod ends (ContainerStatusUnknown).
const exitKilled = 137

// InterLink's VK (f6321757, checkPodsStatus) derives the local pod's phase from container states
// alone; its status carries no phase:
//   - an init container Running, or one Waiting while not every init container is Terminated,
//     forces every app container to Waiting: the phase stays Pending;
//   - otherwise the phase becomes terminal once every reported app container is Terminated: Failed
//     when any reported container, init or app, has a non-zero exit code, else Succeeded;
//   - it rewrites each terminated container's reason to "Completed" or "Error: <code>" (and the
//     pod's reason alike) but keeps each container's message.
//
// Kubernetes reports a pod that ended before some of its containers ran with those containers
// Waiting (an app container stays PodInitializing after its init container failed) or Running as
// last seen (a lost node): through the VK such a pod would stay Pending or Running for ever.
// endedStatuses closes that gap.

// ended reports whether the remote pod will run nothing more.
func ended(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded
}

// endedStatuses rewrites the statuses reported for pod, which has ended (its phase is Failed or
// Succeeded, or deleted says it is gone), so that the VK derives the same phase: every container
// not terminated is reported terminated, with a message saying why it did not run or finish.
// inits and apps are the statuses the plugin reports (the local pod's containers), modified in
// place and returned. A gone pod that had not ended counts as Failed, as Kubernetes counts a pod
// deleted while it ran.
//
// Exit codes: a container stopped while running gets 137, as Kubernetes reports one whose state is
// unknown when its pod ends. A container that never started gets 0 when another reported
// container's exit code already carries the failure (a synthetic non-zero code would match a Job's
// podFailurePolicy rule that the real pod never matched), 137 otherwise. In a Succeeded pod a
// sidecar (an init container with restartPolicy Always) gets 0 whatever it exited with when the
// pod stopped it, since Kubernetes never counts a sidecar's exit against its pod; its message
// keeps the real code.
func endedStatuses(pod *corev1.Pod, inits, apps []corev1.ContainerStatus, deleted bool) ([]corev1.ContainerStatus, []corev1.ContainerStatus) {
	failed := pod.Status.Phase != corev1.PodSucceeded
	where := "the remote pod " + pod.Namespace + "/" + pod.Name
	cause, killed := endCause(pod), deleted || podCause(pod) != ""
	switch {
	case deleted && failed:
		where += " was deleted before it ended"
	case deleted:
		where += " succeeded, then was deleted"
	case failed:
		where += " failed"
	default:
		where += " succeeded"
	}
	if cause != "" {
		where += " (" + cause + ")"
	}
	reason := ReasonRemotePodFailed
	switch {
	case deleted:
		reason = ReasonRemotePodGone
	case !failed:
		reason = ReasonRemotePodSucceeded
	}

	var neverStarted []*corev1.ContainerStateTerminated
	end := func(s *corev1.ContainerStatus, sidecar bool) {
		if t := s.State.Terminated; t != nil {
			switch {
			case !failed && sidecar && t.ExitCode != 0:
				t.Message = joinMessage(fmt.Sprintf("the sidecar exited %d when %s stopped it; a sidecar's exit does not count against its pod", t.ExitCode, where), t.Message)
				t.ExitCode = 0
			case failed && t.ExitCode != 0 && killed && !strings.Contains(t.Message, where):
				// Killed for the pod's sake (a deadline, an eviction, a delete): the pod's story,
				// which the VK's "Error: <code>" does not tell, is the container's.
				t.Message = joinMessage(t.Message, where)
			}
			return
		}
		t := &corev1.ContainerStateTerminated{Reason: reason}
		switch {
		case s.State.Running != nil:
			t.StartedAt = s.State.Running.StartedAt
			t.Message = "stopped: " + where + " while this container ran"
			if failed {
				t.ExitCode = exitKilled
			}
		case sidecar && !failed:
			t.Message = "stopped with its pod: " + where
		default:
			t.Message = "never started: " + where
			if failed {
				neverStarted = append(neverStarted, t)
			}
		}
		s.State = corev1.ContainerState{Terminated: t}
		s.Ready = false
		s.Started = new(bool)
	}
	for i := range inits {
		end(&inits[i], isSidecar(pod, inits[i].Name))
	}
	for i := range apps {
		end(&apps[i], false)
	}
	if !failed || carriesFailure(inits) || carriesFailure(apps) {
		return inits, apps
	}
	// Nothing reported says the pod failed: the containers that never started say it.
	for _, t := range neverStarted {
		t.ExitCode = exitKilled
	}
	if len(neverStarted) == 0 && len(apps) > 0 {
		// Every reported container exited 0, yet the pod failed (evicted, say, after its containers
		// ended well): the VK needs one non-zero code to fail it too.
		t := apps[0].State.Terminated
		t.Message = joinMessage(fmt.Sprintf("exited %d, but %s; exit code %d stands for the pod's failure", t.ExitCode, where, exitKilled), t.Message)
		t.ExitCode = exitKilled
	}
	return inits, apps
}

// carriesFailure reports whether a status has a non-zero exit code: the VK fails the pod on it.
func carriesFailure(ss []corev1.ContainerStatus) bool {
	for _, s := range ss {
		if t := s.State.Terminated; t != nil && t.ExitCode != 0 {
			return true
		}
	}
	return false
}

// endCause says why pod ended, from what Kubernetes recorded: a disruption (eviction, preemption,
// a lost node), the pod's own reason (DeadlineExceeded, Evicted by node pressure), else the first
// container, init containers first, that exited non-zero. Empty when nothing says.
func endCause(pod *corev1.Pod) string {
	if c := podCause(pod); c != "" {
		return c
	}
	for _, list := range []struct {
		kind string
		ss   []corev1.ContainerStatus
	}{{"init container", pod.Status.InitContainerStatuses}, {"container", pod.Status.ContainerStatuses}} {
		for _, s := range list.ss {
			if t := s.State.Terminated; t != nil && t.ExitCode != 0 && s.Name != MeshAgentContainer {
				out := fmt.Sprintf("%s %q exited %d", list.kind, s.Name, t.ExitCode)
				if t.Reason != "" && t.Reason != "Error" {
					out += ", " + t.Reason
				}
				return out
			}
		}
	}
	return ""
}

// podCause is what the pod itself says of its end: a disruption (an eviction, a drain, a lost
// node), the pod's reason (DeadlineExceeded, Evicted), else a delete under way (the kubelet ends
// a deleted pod's containers and sets its phase before the pod object goes).
func podCause(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			if cause := joinCause(c.Reason, c.Message); cause != "" {
				return cause
			}
		}
	}
	if c := joinCause(pod.Status.Reason, pod.Status.Message); c != "" {
		return c
	}
	if pod.DeletionTimestamp != nil {
		return "deleted at " + pod.DeletionTimestamp.UTC().Format(time.RFC3339)
	}
	return ""
}

func joinCause(reason, msg string) string {
	switch {
	case reason == "":
		return msg
	case msg == "":
		return reason
	}
	return reason + ": " + msg
}

func joinMessage(a, b string) string {
	switch {
	case b == "":
		return a
	case a == "":
		return b
	}
	return a + "; " + b
}

// isSidecar reports whether pod's init container name is a sidecar (restartPolicy Always).
func isSidecar(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		}
	}
	return false
}

// explainStopping says, on each container already terminated while its pod is being stopped (a
// disruption, a delete under way) but has not ended yet, why it stopped: the VK may end the
// local pod on this very answer (every app container terminated), before the remote pod's
// phase says it ended.
func explainStopping(pod *corev1.Pod, ss []corev1.ContainerStatus) {
	cause := podCause(pod)
	if cause == "" {
		return
	}
	for i := range ss {
		if t := ss[i].State.Terminated; t != nil && !strings.Contains(t.Message, cause) {
			t.Message = joinMessage(t.Message, "the remote pod "+pod.Namespace+"/"+pod.Name+" is ending ("+cause+")")
		}
	}
}

// explainTerminations writes what a terminated state's reason means into its message, for every
// terminated state and last state reported: the VK replaces the reason (OOMKilled becomes
// "Error: 137") but keeps the message, so the message is where the local user reads it.
func explainTerminations(pod *corev1.Pod, ss []corev1.ContainerStatus) {
	for i := range ss {
		explainTerminated(pod, ss[i].Name, ss[i].State.Terminated)
		explainTerminated(pod, ss[i].Name, ss[i].LastTerminationState.Terminated)
	}
}

func explainTerminated(pod *corev1.Pod, name string, t *corev1.ContainerStateTerminated) {
	if t == nil {
		return
	}
	switch t.Reason {
	case "", "Completed", "Error", ReasonRemotePodFailed, ReasonRemotePodSucceeded, ReasonRemotePodGone:
		return
	}
	if strings.HasPrefix(t.Message, t.Reason) {
		return
	}
	what := t.Reason
	if t.Reason == "OOMKilled" {
		what += ": the container used more memory than its limit"
		if l, ok := memoryLimit(pod, name); ok {
			what += " (" + l + ")"
		}
		what += fmt.Sprintf(" and was killed (exit %d)", t.ExitCode)
	}
	t.Message = joinMessage(what, t.Message)
}

func memoryLimit(pod *corev1.Pod, name string) (string, bool) {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == name {
				if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
					return q.String(), true
				}
			}
		}
	}
	return "", false
}
