package plugin

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// TestInboundEndpoints: an inbound pod's address is written as a serving endpoint of its tunnel
// Service once it has one, once per address (the pod cache reports every status change), again
// when it changes; pods that are not inbound, or have no address yet, are left alone; a slice of
// another pod under the same name is not taken over. The fake client stands in for the apiserver
// here; TestMeshRealPodsInbound proves the same through a real controller and Traefik.
func TestInboundEndpoints(t *testing.T) {
	cs := fake.NewClientset()
	p, err := New(Config{Client: cs, Offloading: Offloading{NamespacePrefix: "offloading"}})
	if err != nil {
		t.Fatal(err)
	}
	e := p.inbound
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { e.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	uid := "0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-" + uid, Namespace: "offloading-team-a", UID: "remote-uid", Annotations: map[string]string{AnnotSourceUID: uid}},
		Spec: corev1.PodSpec{NodeName: "node-1", InitContainers: []corev1.Container{{Name: MeshAgentContainer,
			Ports: []corev1.ContainerPort{{Name: "mesh-agent", ContainerPort: 9101}, {Name: inboundPortName, ContainerPort: 28080}}}}},
	}
	writes := func() int {
		n := 0
		for _, a := range cs.Actions() {
			if a.GetResource().Resource == "endpointslices" && (a.GetVerb() == "create" || a.GetVerb() == "update") {
				n++
			}
		}
		return n
	}
	slice := func() *discoveryv1.EndpointSlice {
		s, err := cs.DiscoveryV1().EndpointSlices(pod.Namespace).Get(t.Context(), ScopedName(inboundName, uid), metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return s
	}

	e.note(pod) // no address yet
	outbound := pod.DeepCopy()
	outbound.Spec.InitContainers[0].Ports = outbound.Spec.InitContainers[0].Ports[:1]
	outbound.Status.PodIP = "10.244.1.9"
	e.note(outbound)
	time.Sleep(50 * time.Millisecond)
	if n := writes(); n != 0 {
		t.Fatalf("%d writes for pods without an address or not inbound", n)
	}

	pod.Status.PodIP = "10.244.1.7"
	e.note(pod)
	polltest.True(t, "the endpoint written", 5*time.Second, func() bool { return slice() != nil })
	s := slice()
	ep := s.Endpoints[0]
	if s.Labels[discoveryv1.LabelServiceName] != ScopedName(inboundName, uid) || s.Labels[discoveryv1.LabelManagedBy] != inboundManagedBy ||
		ep.Addresses[0] != "10.244.1.7" || !*ep.Conditions.Ready || !*ep.Conditions.Serving || *s.Ports[0].Port != 28080 ||
		len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != pod.UID {
		t.Errorf("slice %+v", s)
	}
	for range 3 {
		e.note(pod) // the same address: nothing to write
	}
	time.Sleep(50 * time.Millisecond)
	if n := writes(); n != 1 {
		t.Errorf("%d writes after repeated notes of one address, want 1", n)
	}

	moved := pod.DeepCopy()
	moved.Status.PodIP = "10.244.1.8"
	e.note(moved)
	polltest.True(t, "the new address written", 5*time.Second, func() bool {
		s := slice()
		return s != nil && s.Endpoints[0].Addresses[0] == "10.244.1.8"
	})

	// Another pod's slice under the name is refused, not overwritten.
	e.forget(moved)
	foreign := slice()
	foreign.Annotations[AnnotSourceUID] = "someone-else"
	if _, err := cs.DiscoveryV1().EndpointSlices(pod.Namespace).Update(t.Context(), foreign, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.write(t.Context(), pod); err != ErrForeignObject {
		t.Errorf("write over another pod's slice: %v, want ErrForeignObject", err)
	}
}
