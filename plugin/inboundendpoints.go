package plugin

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// inboundManagedBy marks the EndpointSlices the plugin writes, so that the endpoint controllers
// leave them alone.
const inboundManagedBy = "plugin.interlink-k8s-mesh.io"

// inboundEndpoints publishes each inbound pod's address behind its tunnel Service, as soon as the
// pod has one. The Service has no selector: the endpoint controllers would mark the pod's address
// serving only once the pod is ready, and it is not ready before its mesh-agent's first handshake,
// which needs the shadow to come in through the ingress first (Traefik, like most controllers,
// routes serving endpoints only). The mesh-agent serves the tunnel from its start.
//
// The pod cache tells it of every pod it receives (note, never blocking); one goroutine writes.
type inboundEndpoints struct {
	p *Plugin

	mu      sync.Mutex
	pending map[string]*corev1.Pod // by namespace/name, the newest state
	written map[string]string      // by namespace/name, the address last written
	wake    chan struct{}
}

func newInboundEndpoints(p *Plugin) *inboundEndpoints {
	return &inboundEndpoints{p: p, pending: map[string]*corev1.Pod{}, written: map[string]string{}, wake: make(chan struct{}, 1)}
}

// note queues an inbound pod that has an address not yet written; it returns at once.
func (e *inboundEndpoints) note(pod *corev1.Pod) {
	if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil || !isInbound(pod) {
		return
	}
	key := pod.Namespace + "/" + pod.Name
	e.mu.Lock()
	if e.written[key] == pod.Status.PodIP {
		e.mu.Unlock()
		return
	}
	e.pending[key] = pod
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// forget drops what is known of a deleted pod.
func (e *inboundEndpoints) forget(pod *corev1.Pod) {
	key := pod.Namespace + "/" + pod.Name
	e.mu.Lock()
	delete(e.written, key)
	delete(e.pending, key)
	e.mu.Unlock()
}

// run writes the queued pods' EndpointSlices until ctx ends. A failed write stays queued for the
// next pod update (the pod cache relists within minutes at the latest).
func (e *inboundEndpoints) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		}
		e.mu.Lock()
		batch := e.pending
		e.pending = map[string]*corev1.Pod{}
		e.mu.Unlock()
		for key, pod := range batch {
			if err := e.write(ctx, pod); err != nil {
				e.p.log.Warn("publish the inbound tunnel's endpoint", "pod", key, "err", err)
				continue
			}
			e.mu.Lock()
			e.written[key] = pod.Status.PodIP
			e.mu.Unlock()
			e.p.log.Info("inbound tunnel endpoint published", "pod", key, "address", pod.Status.PodIP)
		}
	}
}

// write creates or updates the pod's EndpointSlice: its address, ready and serving, on the tunnel
// port. The slice is owned by the pod.
func (e *inboundEndpoints) write(ctx context.Context, pod *corev1.Pod) error {
	uid := pod.Annotations[AnnotSourceUID]
	port := inboundPort(pod)
	if uid == "" || port == 0 {
		return fmt.Errorf("pod %s/%s: no source UID or tunnel port", pod.Namespace, pod.Name)
	}
	name := ScopedName(inboundName, uid)
	want := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: pod.Namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: name,
				discoveryv1.LabelManagedBy:   inboundManagedBy,
				LabelOffloaded:               ValueOffloaded,
				LabelSourceUID:               sanitizeLabelValue(uid),
			},
			Annotations:     map[string]string{AnnotSourceUID: uid},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{pod.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: new(true), Serving: new(true), Terminating: new(false)},
			NodeName:   nonEmpty(pod.Spec.NodeName),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: new(inboundPortName), Protocol: new(corev1.ProtocolTCP), Port: new(port), AppProtocol: new(wsAppProtocol)}},
	}
	if pod.Status.PodIP != "" && !isIPv4(pod.Status.PodIP) {
		want.AddressType = discoveryv1.AddressTypeIPv6
	}
	rctx, cancel := e.p.remoteCtx(ctx)
	defer cancel()
	slices := e.p.client.DiscoveryV1().EndpointSlices(pod.Namespace)
	_, err := slices.Create(rctx, want, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	have, err := slices.Get(rctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if have.Annotations[AnnotSourceUID] != uid {
		return ErrForeignObject
	}
	want.ResourceVersion = have.ResourceVersion
	_, err = slices.Update(rctx, want, metav1.UpdateOptions{})
	return err
}

// inboundPort is the mesh-agent's tunnel port of an inbound pod, 0 if none.
func inboundPort(pod *corev1.Pod) int32 {
	for _, c := range pod.Spec.InitContainers {
		if c.Name != MeshAgentContainer {
			continue
		}
		for _, p := range c.Ports {
			if p.Name == inboundPortName {
				return p.ContainerPort
			}
		}
	}
	return 0
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func isIPv4(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}
