package plugin

import (
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxLastStates bounds the deleted remote pods whose last state the plugin keeps: about 1 KiB each.
const maxLastStates = 4096

// lastStates keeps the last state of remote pods deleted behind the plugin's back (evicted, a drain,
// a user's delete), by local pod UID, so that the local pod ends as the remote one did: with its
// containers' real exit codes and the eviction's reason, not a bare "not found". It forgets the
// oldest beyond maxLastStates; the zero value is ready.
type lastStates struct {
	mu    sync.Mutex
	pods  map[string]*corev1.Pod
	order []string // insertion order, oldest first; may name UIDs forgotten since
}

// put keeps pod's last state, trimmed to what a status reads. Pods of no local pod are ignored.
func (l *lastStates) put(pod *corev1.Pod) {
	uid := pod.Annotations[AnnotSourceUID]
	if uid == "" {
		return
	}
	t := trimForStatus(pod)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pods == nil {
		l.pods = make(map[string]*corev1.Pod)
	}
	if _, ok := l.pods[uid]; !ok {
		l.order = append(l.order, uid)
	}
	l.pods[uid] = t
	for len(l.pods) > maxLastStates && len(l.order) > 0 {
		delete(l.pods, l.order[0])
		l.order = l.order[1:]
	}
	if len(l.order) > 2*maxLastStates { // forgotten UIDs piled up: compact
		kept := l.order[:0]
		for _, u := range l.order {
			if _, ok := l.pods[u]; ok {
				kept = append(kept, u)
			}
		}
		l.order = kept
	}
}

// get returns the last state kept for the local pod uid, or nil. The caller must not modify it.
func (l *lastStates) get(uid string) *corev1.Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pods[uid]
}

// forget drops uid's last state: a remote pod of that local pod exists again.
func (l *lastStates) forget(uid string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.pods, uid)
}

// trimForStatus copies what endedStatus reads of a pod: identity and deletion time, containers'
// names, images, restart policies and memory limits, and the status.
func trimForStatus(pod *corev1.Pod) *corev1.Pod {
	t := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
			DeletionTimestamp: pod.DeletionTimestamp,
			Annotations:       map[string]string{AnnotSourceUID: pod.Annotations[AnnotSourceUID]}},
		Status: *pod.Status.DeepCopy(),
	}
	trim := func(cs []corev1.Container) []corev1.Container {
		out := make([]corev1.Container, 0, len(cs))
		for _, c := range cs {
			k := corev1.Container{Name: c.Name, Image: c.Image, RestartPolicy: c.RestartPolicy}
			if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
				k.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: q}
			}
			out = append(out, k)
		}
		return out
	}
	t.Spec.InitContainers = trim(pod.Spec.InitContainers)
	t.Spec.Containers = trim(pod.Spec.Containers)
	return t
}
