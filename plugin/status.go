package plugin

import (
	"context"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// statusBodyFactor is how many times app.max_body_bytes a /status body may be: the VK sends every
// pod it holds in one request, and the pods are decoded one at a time (decodeEach).
const statusBodyFactor = 64

// statusPod is what Status reads of a local pod. The VK sends every pod it holds in full (about
// 2.5 KiB of JSON each); decoding only these fields halves the time one /status of 10,000 pods
// takes, most of which is decoding (docs/scale.md).
type statusPod struct {
	Metadata struct {
		Annotations struct {
			JobID string `json:"JobID"`
		} `json:"annotations"`
		Name              string      `json:"name"`
		Namespace         string      `json:"namespace"`
		UID               types.UID   `json:"uid"`
		CreationTimestamp metav1.Time `json:"creationTimestamp"`
	} `json:"metadata"`
	Spec struct {
		InitContainers []statusContainer `json:"initContainers"`
		Containers     []statusContainer `json:"containers"`
	} `json:"spec"`
}

type statusContainer struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

// pod is the local pod as Status sees it.
func (s *statusPod) pod() *corev1.Pod {
	containers := func(cs []statusContainer) []corev1.Container {
		if cs == nil {
			return nil
		}
		out := make([]corev1.Container, len(cs))
		for i, c := range cs {
			out[i] = corev1.Container{Name: c.Name, Image: c.Image}
		}
		return out
	}
	m := s.Metadata
	var annotations map[string]string
	if m.Annotations.JobID != "" {
		annotations = map[string]string{AnnotVKJobID: m.Annotations.JobID}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, CreationTimestamp: m.CreationTimestamp, Annotations: annotations},
		Spec:       corev1.PodSpec{InitContainers: containers(s.Spec.InitContainers), Containers: containers(s.Spec.Containers)},
	}
}

func (p *Plugin) handleStatus(w http.ResponseWriter, r *http.Request) error {
	var out []PodStatus
	err := decodeEach(r.Body, func(sp *statusPod) error {
		st, err := p.Status(r.Context(), sp.pod())
		if err == nil {
			out = append(out, st)
		}
		return err
	})
	if err != nil {
		return err
	}
	if len(out) == 0 { // the VK's ping
		resp, err := p.Capacity(r.Context())
		if err != nil {
			return err
		}
		return writeJSON(w, resp)
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
			if !p.guard.wasSeen(local.UID) && local.Annotations[AnnotVKJobID] == "" {
				// InterLink's VK polls every pod it holds, also those whose create it has not sent
				// yet: it makes each meshed pod's shadow first, one pod at a time, so a pod can
				// wait minutes in its queue. It records each create's answer on the pod (JobID);
				// a pod without one was never created, whatever its age.
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
	explainStopping(remote, st.InitContainers)
	explainStopping(remote, st.Containers)
	markMeshNotReady(remote, &st, time.Now())
	return st, nil
}
