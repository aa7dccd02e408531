package plugin

import (
	"context"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Reasons the plugin writes into container states it synthesizes.
const (
	ReasonRemotePodGone = "RemotePodNotFound"
	ReasonPending       = "RemotePodPending"
	ReasonCreating      = "RemotePodCreating"
	ReasonNotCreated    = "RemotePodNotCreated"
)

func (p *Plugin) handleStatus(w http.ResponseWriter, r *http.Request) error {
	var pods []corev1.Pod
	if err := decodeJSON(r, &pods); err != nil {
		return err
	}
	if len(pods) == 0 { // the VK's ping
		resp, err := p.Capacity(r.Context())
		if err != nil {
			return err
		}
		return writeJSON(w, resp)
	}
	out := make([]PodStatus, 0, len(pods))
	for i := range pods {
		st, err := p.Status(r.Context(), &pods[i])
		if err != nil {
			return err
		}
		out = append(out, st)
	}
	return writeJSON(w, out)
}

// Status reports the remote state of one local pod. It answers from the watch-backed cache and asks
// the remote apiserver only when the cache has not seen the pod yet. A pod whose create is in
// flight is reported waiting (RemotePodCreating). A remote pod that is gone is reported with every
// container terminated and a reason, so the local pod never freezes.
//
// Only the local pod's own containers are reported: the VK appends a status for every name it
// does not know, and takes any running init container (the injected mesh-agent sidecar is one) for
// an initialisation that never ends, holding the local pod Pending.
func (p *Plugin) Status(ctx context.Context, local *corev1.Pod) (PodStatus, error) {
	switch {
	case local.UID == "":
		return PodStatus{}, &ValidationError{Field: "[].metadata.uid", Reason: "is required"}
	case local.Name == "":
		return PodStatus{}, &ValidationError{Field: "[].metadata.name", Reason: "is required"}
	case local.Namespace == "":
		return PodStatus{}, &ValidationError{Field: "[].metadata.namespace", Reason: "is required"}
	}
	st := PodStatus{Name: local.Name, UID: string(local.UID), Namespace: local.Namespace}
	remote := p.cachedBySourceUID(string(local.UID))
	if remote == nil && p.guard.creating(local.UID) {
		msg := "the plugin is creating the remote pod"
		st.InitContainers = waitingStatuses(local.Spec.InitContainers, ReasonCreating, msg)
		st.Containers = waitingStatuses(local.Spec.Containers, ReasonCreating, msg)
		return st, nil
	}
	if remote == nil {
		if last := p.pods.lastSeen(string(local.UID)); last != nil {
			// Deleted behind the plugin's back (evicted, a drain, a user): its last state says how
			// it ended, and the VK's pod must end too.
			return endedStatus(st, local, last, true), nil
		}
		ns := RemoteNamespace(p.cfg.Offloading.NamespacePrefix, p.cfg.Offloading.NamespacePrefixExclusions, local.Namespace)
		got, err := p.findRemotePod(ctx, ns, local.Name, local.UID)
		switch {
		case err != nil:
			return PodStatus{}, err
		case got == nil:
			name := ns + "/" + ScopedName(local.Name, string(local.UID))
			if !p.guard.wasSeen(local.UID) && time.Since(local.CreationTimestamp.Time) < p.cfg.NotCreatedGrace {
				// InterLink's VK polls a pod while it is still making its shadow pod, before it
				// sends the create: a young pod never seen remotely is not created yet.
				msg := "the remote pod " + name + " is not created yet (InterLink has not sent its create)"
				st.InitContainers = waitingStatuses(local.Spec.InitContainers, ReasonNotCreated, msg)
				st.Containers = waitingStatuses(local.Spec.Containers, ReasonNotCreated, msg)
				return st, nil
			}
			msg := "the remote pod " + name + " no longer exists"
			st.InitContainers = goneStatuses(local.Spec.InitContainers, msg)
			st.Containers = goneStatuses(local.Spec.Containers, msg)
			return st, nil
		}
		remote = got
		p.guard.markSeen(local.UID)
	}
	if ended(remote) {
		return endedStatus(st, local, remote, false), nil
	}
	st = reported(st, local, remote)
	markMeshNotReady(remote, &st, time.Now())
	return st, nil
}

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
