package plugin

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/logtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

// TestMeshEvents: on the real test cluster playing both sides, with the local side reached as a
// user holding only manifests/local-sweep-rbac.yaml, the plugin records MeshLost when an
// offloaded pod's ready shadow pod becomes not ready or is deleted, and MeshReady when a shadow is
// ready again (naming the pod's stale IP when the new shadow has another); nothing for what it saw
// ready at start, for a new pod's first readiness, or for a pod it did not offload.
func TestMeshEvents(t *testing.T) {
	c := testcluster.Get(t)
	ctx := t.Context()
	id := strings.ReplaceAll(string(uuid.NewUUID()), "-", "")[:8]
	ns, remoteNS := "me"+id, "me"+id+"-remote"
	shadowNS := ns + "-wstunnel"
	for _, n := range []string{ns, shadowNS, remoteNS} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = c.Client.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), n, metav1.DeleteOptions{})
		})
	}
	// Every pod here is held by a scheduling gate: nothing but the test writes its status.
	gated := func(ns, name string, labels, annotations map[string]string) *corev1.Pod {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations},
			Spec: corev1.PodSpec{
				SchedulingGates: []corev1.PodSchedulingGate{{Name: "test.interlink-k8s-mesh.io/hold"}},
				Containers:      []corev1.Container{{Name: "c", Image: "example.test/none"}},
			},
		}
		p, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	setStatus := func(p *corev1.Pod, ip string, ready corev1.ConditionStatus, reason string) {
		t.Helper()
		cur, err := c.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Status.PodIP, cur.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
		cur.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready, Reason: reason, LastTransitionTime: metav1.Now()}}
		if _, err := c.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("status of %s: %v", p.Name, err)
		}
	}
	shadowLabels := func(local string) map[string]string {
		return map[string]string{labelComponent: local + "-" + ns, labelPartOf: valuePartOf}
	}
	// web and fresh were offloaded by this plugin (a remote pod names each); other was not.
	offloaded := func(name string) *corev1.Pod {
		local := gated(ns, name, nil, nil)
		gated(remoteNS, name, map[string]string{LabelOffloaded: ValueOffloaded}, map[string]string{AnnotSourceUID: string(local.UID)})
		return local
	}
	web, fresh := offloaded("web"), offloaded("fresh")
	other := gated(ns, "other", nil, nil)
	setStatus(web, "10.99.0.5", corev1.ConditionTrue, "")
	s1 := gated(shadowNS, "web-s1", shadowLabels("web"), nil)
	setStatus(s1, "10.99.0.5", corev1.ConditionTrue, "")
	otherShadow := gated(shadowNS, "other-s1", shadowLabels("other"), nil)
	setStatus(otherShadow, "10.99.0.7", corev1.ConditionTrue, "")

	local, md := sweepUser(t, c, id)
	_, log := logtest.New(t)
	p, err := New(Config{Client: c.Client, LocalClient: local, LocalMetadata: md, MeshEvents: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	polltest.Until(t, "the plugin caches web's remote pod and follows the shadow pods", 30*time.Second, func() error {
		if p.cachedBySourceUID(string(web.UID)) == nil || !p.events.informer.HasSynced() {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	events := func(pod *corev1.Pod) []corev1.Event {
		t.Helper()
		sel := fields.Set{"involvedObject.name": pod.Name, "involvedObject.uid": string(pod.UID)}.String()
		l, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	waitEvent := func(reason, contains string) {
		t.Helper()
		polltest.Until(t, "event "+reason+" on web", 20*time.Second, func() error {
			var seen []string
			for _, e := range events(web) {
				if e.Reason == reason && strings.Contains(e.Message, contains) {
					if e.Source.Component != eventSource {
						return fmt.Errorf("event from %q, want %q", e.Source.Component, eventSource)
					}
					return nil
				}
				seen = append(seen, e.Reason+": "+e.Message)
			}
			return fmt.Errorf("events so far: %q", seen)
		})
	}

	// Seen ready at start: no event. Other's shadow lost, fresh's first readiness: no event.
	setStatus(otherShadow, "10.99.0.7", corev1.ConditionFalse, "ContainersNotReady")
	freshShadow := gated(shadowNS, "fresh-s1", shadowLabels("fresh"), nil)
	setStatus(freshShadow, "10.99.0.8", corev1.ConditionTrue, "")

	setStatus(s1, "10.99.0.5", corev1.ConditionFalse, "ContainersNotReady")
	waitEvent(ReasonMeshLost, "shadow pod "+shadowNS+"/web-s1 is not ready (ContainersNotReady)")
	setStatus(s1, "10.99.0.5", corev1.ConditionTrue, "")
	waitEvent(ReasonMeshReady, "mesh back through shadow pod "+shadowNS+"/web-s1 (10.99.0.5) after")
	if err := c.Client.CoreV1().Pods(shadowNS).Delete(ctx, s1.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	// The watch sees the pod being deleted (an update), then gone.
	waitEvent(ReasonMeshLost, "shadow pod "+shadowNS+"/web-s1 is being deleted")
	s2 := gated(shadowNS, "web-s2", shadowLabels("web"), nil)
	setStatus(s2, "10.99.0.6", corev1.ConditionTrue, "")
	waitEvent(ReasonMeshReady, "(10.99.0.6) after")
	waitEvent(ReasonMeshReady, "the pod's IP is still 10.99.0.5")

	for _, e := range events(web) {
		t.Logf("web: %s %s (count %d): %s", e.Type, e.Reason, e.Count, e.Message)
	}
	if n := len(events(web)); n != 4 {
		t.Errorf("web has %d events, want 4 (lost, back, lost, back)", n)
	}
	for _, pod := range []*corev1.Pod{other, fresh} {
		if got := events(pod); len(got) != 0 {
			t.Errorf("%s has events %v, want none", pod.Name, got)
		}
	}
}
