package plugin

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// ReasonMeshNotReady is the Waiting reason given to a mesh pod's containers while its mesh-agent
// has not completed its first WireGuard handshake: they cannot start before it does.
const ReasonMeshNotReady = "MeshNotReady"

// maxTerminationMessage bounds the sidecar's last words quoted in a status message.
const maxTerminationMessage = 300

// markMeshNotReady explains, on every waiting container of a mesh pod, why it waits: the
// mesh-agent sidecar has not come up. The sidecar's own status stays as the remote kubelet
// reported it (running, not started, its restarts). Pods without the sidecar, pods whose sidecar
// has not been created yet (unscheduled, pulling) and pods whose mesh is up are left alone.
func markMeshNotReady(pod *corev1.Pod, st *PodStatus, now time.Time) {
	if !hasMeshAgent(pod) {
		return
	}
	var agent *corev1.ContainerStatus
	for i := range pod.Status.InitContainerStatuses {
		if s := &pod.Status.InitContainerStatuses[i]; s.Name == MeshAgentContainer {
			agent = s
		}
	}
	if agent == nil || agent.Started != nil && *agent.Started {
		return
	}
	msg := meshNotReadyMessage(pod, agent, now)
	mark := func(ss []corev1.ContainerStatus) {
		for i := range ss {
			if ss[i].Name != MeshAgentContainer && ss[i].State.Waiting != nil {
				ss[i].State.Waiting = &corev1.ContainerStateWaiting{Reason: ReasonMeshNotReady, Message: msg}
			}
		}
	}
	mark(st.InitContainers)
	mark(st.Containers)
}

func hasMeshAgent(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == MeshAgentContainer && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			return true
		}
	}
	return false
}

func meshNotReadyMessage(pod *corev1.Pod, agent *corev1.ContainerStatus, now time.Time) string {
	var b strings.Builder
	b.WriteString("the mesh-agent sidecar has not completed its first WireGuard handshake with the shadow pod")
	if t := pod.Status.StartTime; t != nil && now.After(t.Time) {
		fmt.Fprintf(&b, " after %v", now.Sub(t.Time).Round(time.Second))
	}
	switch {
	case agent.State.Waiting != nil && agent.State.Waiting.Reason != "":
		fmt.Fprintf(&b, "; mesh-agent is %s", agent.State.Waiting.Reason)
		if m := agent.State.Waiting.Message; m != "" {
			fmt.Fprintf(&b, ": %s", oneLine(m))
		}
	case agent.State.Terminated != nil:
		fmt.Fprintf(&b, "; mesh-agent exited with %d", agent.State.Terminated.ExitCode)
	}
	if agent.RestartCount > 0 {
		fmt.Fprintf(&b, "; restarted %d times", agent.RestartCount)
	}
	last := agent.LastTerminationState.Terminated
	if agent.State.Terminated != nil {
		last = agent.State.Terminated
	}
	if last != nil {
		fmt.Fprintf(&b, "; last exit %d", last.ExitCode)
		if last.Reason != "" {
			fmt.Fprintf(&b, " (%s)", last.Reason)
		}
		if m := oneLine(last.Message); m != "" {
			fmt.Fprintf(&b, ": %s", m)
		}
	}
	if isInbound(pod) {
		// The shadow dials in: the way in is the remote cluster's.
		fmt.Fprintf(&b, ". Inbound: check the shadow pod's dial in the local cluster (its log says why it fails) and the Ingress %s of this pod's namespace in front of the sidecar.", ScopedName(inboundName, pod.Annotations[AnnotSourceUID]))
		return b.String()
	}
	b.WriteString(". Check the shadow pod in the local cluster and the ingress in front of it.")
	return b.String()
}

// oneLine keeps the last non-empty line of a log excerpt, cut to maxTerminationMessage bytes.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > maxTerminationMessage {
		l = strings.ToValidUTF8(l[:maxTerminationMessage], "") + "…"
	}
	return l
}
