package plugin

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Reasons of the Events recorded on an offloaded pod when its mesh is lost and when it is back.
const (
	ReasonMeshLost  = "MeshLost"
	ReasonMeshReady = "MeshReady"
)

// eventSource names the plugin in the Events it records.
const eventSource = "interlink-k8s-plugin"

// meshEvents follows the shadow pods in the local cluster and records an Event on the offloaded
// pod when its mesh is lost (its shadow pod deleted or no longer ready: shadow-agent's /readyz
// fails once a mesh that was up has had no handshake for 3 minutes, and while the agent is down)
// and when it is back. The pod's status cannot carry it: InterLink's VK writes the status whole
// from its own copy and undoes any other writer's condition within a second (docs/mesh.md). The
// first readiness of a new pod's shadow records nothing (the shadow is ready before the offloaded
// pod even exists), nor does anything seen in the first list after a start. Only pods this plugin
// offloaded (in its remote cache) get Events, so plugins sharing a local cluster do not repeat
// each other.
type meshEvents struct {
	p        *Plugin
	informer cache.SharedIndexInformer
	events   record.EventBroadcaster
	recorder record.EventRecorder

	mu sync.Mutex
	// pods holds, by local pod "namespace/name", its shadow pods' readiness by name and since when
	// its mesh has been lost (zero while up, or before it was ever up).
	pods map[string]*meshState
}

type meshState struct {
	shadows map[string]bool // shadow pod name → ready
	up      bool            // some shadow pod is ready
	lostAt  time.Time       // when up last went false; zero if never up
}

// newMeshEvents builds the follower on the local client; run starts it.
func newMeshEvents(p *Plugin) *meshEvents {
	selector := labels.Set{labelPartOf: valuePartOf}.String()
	factory := informers.NewSharedInformerFactoryWithOptions(p.cfg.LocalClient, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := factory.Core().V1().Pods().Informer()
	// Keep what readiness needs: a 10,000-pod site holds 10,000 shadow pods.
	_ = inf.SetTransform(func(obj any) (any, error) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return obj, nil
		}
		slim := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			Labels: map[string]string{labelComponent: pod.Labels[labelComponent]}, DeletionTimestamp: pod.DeletionTimestamp,
		}}
		slim.Status.PodIP = pod.Status.PodIP
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady {
				slim.Status.Conditions = []corev1.PodCondition{c}
			}
		}
		return slim, nil
	})
	events := record.NewBroadcaster()
	m := &meshEvents{
		p: p, informer: inf, events: events,
		recorder: events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: eventSource}),
		pods:     map[string]*meshState{},
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(obj any, initial bool) { m.observe(obj, initial) },
		UpdateFunc: func(_, obj any) { m.observe(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				m.change(pod, false, true, false)
			}
		},
	})
	return m
}

// run follows the shadow pods until ctx ends.
func (m *meshEvents) run(ctx context.Context) {
	m.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: m.p.cfg.LocalClient.CoreV1().Events("")})
	defer m.events.Shutdown()
	m.informer.Run(ctx.Done())
}

func (m *meshEvents) observe(obj any, initial bool) {
	if pod, ok := obj.(*corev1.Pod); ok {
		m.change(pod, shadowReady(pod), false, initial)
	}
}

// shadowReady reports whether a shadow pod is ready and not being deleted.
func shadowReady(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// localPodOf names the offloaded pod a shadow pod stands for: InterLink's VK puts a pod's shadow
// in namespace <namespace><suffix>, named (component label) <pod>-<namespace>.
func (p *Plugin) localPodOf(shadow *corev1.Pod) (namespace, name string, ok bool) {
	component := shadow.Labels[labelComponent]
	for _, suffix := range p.cfg.ShadowNamespaceSuffixes {
		ns, found := strings.CutSuffix(shadow.Namespace, suffix)
		if !found || ns == "" {
			continue
		}
		if name, found := strings.CutSuffix(component, "-"+ns); found && name != "" {
			return ns, name, true
		}
	}
	return "", "", false
}

// change records a shadow pod's readiness (gone: it was deleted) and, when its local pod's mesh
// goes from up to down or back, an Event.
func (m *meshEvents) change(shadow *corev1.Pod, ready, gone, initial bool) {
	ns, name, ok := m.p.localPodOf(shadow)
	if !ok {
		return
	}
	key := ns + "/" + name
	m.mu.Lock()
	st := m.pods[key]
	if st == nil {
		if gone {
			m.mu.Unlock()
			return
		}
		st = &meshState{shadows: map[string]bool{}}
		m.pods[key] = st
	}
	if gone {
		delete(st.shadows, shadow.Name)
	} else {
		st.shadows[shadow.Name] = ready
	}
	wasUp, up := st.up, false
	for _, r := range st.shadows {
		up = up || r
	}
	st.up = up
	var lostFor time.Duration
	switch {
	case wasUp && !up:
		st.lostAt = time.Now()
	case !wasUp && up && !st.lostAt.IsZero():
		lostFor = time.Since(st.lostAt)
		st.lostAt = time.Time{}
	}
	if len(st.shadows) == 0 && st.lostAt.IsZero() {
		delete(m.pods, key) // its shadows gone and nothing to report when one comes back
	}
	m.mu.Unlock()

	var alive bool
	switch {
	case initial || wasUp == up || (up && lostFor == 0):
		return
	case !up:
		why := "is not ready"
		switch msg := readyMessage(shadow); {
		case gone:
			why = "was deleted"
		case shadow.DeletionTimestamp != nil:
			why = "is being deleted"
		case msg != "":
			why += " (" + msg + ")"
		}
		alive = m.record(ns, name, corev1.EventTypeWarning, ReasonMeshLost, "", fmt.Sprintf(
			"mesh lost: shadow pod %s/%s %s; traffic between the pod's IP and the remote pod stops until the mesh is back", shadow.Namespace, shadow.Name, why))
	default:
		alive = m.record(ns, name, corev1.EventTypeNormal, ReasonMeshReady, shadow.Status.PodIP, fmt.Sprintf(
			"mesh back through shadow pod %s/%s (%s) after %s", shadow.Namespace, shadow.Name, shadow.Status.PodIP, lostFor.Round(100*time.Millisecond)))
	}
	if !alive {
		// Deleted, or not this plugin's: its shadow went with it, nothing to follow.
		m.mu.Lock()
		if st := m.pods[key]; st != nil && len(st.shadows) == 0 {
			delete(m.pods, key)
		}
		m.mu.Unlock()
	}
}

// readyMessage is the shadow pod's Ready condition's reason and message, if any.
func readyMessage(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return strings.TrimSpace(c.Reason + " " + c.Message)
		}
	}
	return ""
}

// record puts an Event on the local pod namespace/name if this plugin offloaded it and it is not
// being deleted (its shadow goes with it), and reports whether it did. A mesh back on another IP
// (shadowIP) than the pod's says so: InterLink's VK sets the pod's IP once, at create.
func (m *meshEvents) record(ns, name, kind, reason, shadowIP, msg string) bool {
	ctx, cancel := m.p.remoteCtx(context.Background())
	defer cancel()
	local, err := m.p.cfg.LocalClient.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false
	case err != nil:
		m.p.log.Warn("mesh event not recorded: get the local pod", "pod", ns+"/"+name, "reason", reason, "err", err)
		return true
	case local.DeletionTimestamp != nil, m.p.cachedBySourceUID(string(local.UID)) == nil:
		return false
	}
	if shadowIP != "" && local.Status.PodIP != "" && shadowIP != local.Status.PodIP {
		msg += fmt.Sprintf("; the pod's IP is still %s (InterLink's VK sets it once, at create): clients of that IP and of Services selecting the pod stay cut off until the pod is recreated", local.Status.PodIP)
	}
	m.p.log.Info("mesh event", "pod", ns+"/"+name, "reason", reason, "message", msg)
	m.recorder.Event(local, kind, reason, msg)
	return true
}
