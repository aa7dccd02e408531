package plugin

import (
	corev1 "k8s.io/api/core/v1"
)

// Reasons the plugin writes into container states it synthesizes.
const (
	ReasonRemotePodGone = "RemotePodNotFound"
	ReasonPending       = "RemotePodPending"
	ReasonCreating      = "RemotePodCreating"
	ReasonNotCreated    = "RemotePodNotCreated"
)

// reported fills st with the remote pod's statuses of the local pod's containers.
func reported(st PodStatus, local, remote *corev1.Pod) PodStatus {
	st.JID = string(remote.UID)
	st.InitContainers = withPending(remote.Spec.InitContainers, remote.Status.InitContainerStatuses, remote)
	st.Containers = withPending(remote.Spec.Containers, remote.Status.ContainerStatuses, remote)
	specSent := len(local.Spec.Containers) > 0
	st.InitContainers = localOnly(st.InitContainers, local.Spec.InitContainers, specSent)
	st.Containers = localOnly(st.Containers, local.Spec.Containers, specSent)
	explainTerminations(remote, st.InitContainers)
	explainTerminations(remote, st.Containers)
	return st
}

// endedStatus reports a remote pod that ended, or was deleted, so that the VK ends the local pod
// in the same phase (endedStatuses).
func endedStatus(st PodStatus, local, remote *corev1.Pod, deleted bool) PodStatus {
	st = reported(st, local, remote)
	st.InitContainers, st.Containers = endedStatuses(remote, st.InitContainers, st.Containers, deleted)
	return st
}

// pythonMeshContainer is the sidecar the Python plugin added to pods with a mesh script; a pod it
// offloaded before the switch still runs it.
const pythonMeshContainer = "mesh-setup"

// localOnly keeps the statuses of the containers the local pod has (none, when it has none). The
// plugin's own sidecar never is one, nor the Python plugin's; a local pod sent without its spec
// (specSent false) gets every other status.
func localOnly(ss []corev1.ContainerStatus, local []corev1.Container, specSent bool) []corev1.ContainerStatus {
	keep := make(map[string]bool, len(local))
	for _, c := range local {
		keep[c.Name] = true
	}
	out := ss[:0]
	for _, s := range ss {
		if s.Name != MeshAgentContainer && (keep[s.Name] || !specSent && s.Name != pythonMeshContainer) {
			out = append(out, s)
		}
	}
	return out
}

func waitingStatuses(cs []corev1.Container, reason, msg string) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(cs))
	for _, c := range cs {
		out = append(out, corev1.ContainerStatus{
			Name:  c.Name,
			Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
		})
	}
	return out
}

func goneStatuses(cs []corev1.Container, msg string) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(cs))
	for _, c := range cs {
		out = append(out, corev1.ContainerStatus{
			Name:  c.Name,
			Image: c.Image,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 255, Reason: ReasonRemotePodGone, Message: msg,
			}},
		})
	}
	return out
}

// withPending returns the remote statuses, completed with a Waiting state for containers the remote
// kubelet has not reported yet; the reason says why (unschedulable, not yet started).
func withPending(spec []corev1.Container, have []corev1.ContainerStatus, pod *corev1.Pod) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, 0, len(spec))
	known := make(map[string]bool, len(have))
	for _, s := range have {
		known[s.Name] = true
		out = append(out, *s.DeepCopy())
	}
	reason, msg := ReasonPending, "the remote pod is "+string(pod.Status.Phase)
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			reason, msg = c.Reason, c.Message
		}
	}
	if pod.Status.Phase == "" {
		msg = "the remote pod is not scheduled yet"
	}
	for _, c := range spec {
		if known[c.Name] {
			continue
		}
		out = append(out, corev1.ContainerStatus{
			Name:  c.Name,
			Image: c.Image,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}},
		})
	}
	return out
}
