package plugin

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// Direction says which side of the mesh dials the other.
type Direction string

// The mesh directions (option mesh.direction; a pod's AnnotMeshDirection overrides it).
const (
	// DirectionOutbound: the offloaded pod's mesh-agent dials the shadow's tunnel through the
	// local cluster's ingress, which the remote site must reach.
	DirectionOutbound Direction = "outbound"
	// DirectionInbound: the mesh-agent serves the tunnel, published in the remote cluster by a
	// Service and an Ingress that the plugin creates with the pod (and owned by it), and the
	// shadow-agent dials it. The local cluster only dials out: for a local cluster behind NAT or
	// a firewall that admits nothing from the remote site. The VK's shadow template must be an
	// inbound one (manifests/shadow-pod-inbound.tmpl).
	DirectionInbound Direction = "inbound"
)

// AnnotMeshDirection chooses one pod's mesh direction, "outbound" or "inbound", over option
// mesh.direction. It must match the shadow template of the VK that offloads the pod.
const AnnotMeshDirection = "mesh.interlink-k8s-mesh.io/direction"

// Names of the objects that publish an inbound pod's tunnel in the remote cluster.
const (
	// DefaultInboundPort is the mesh-agent's tunnel port in inbound mode (option
	// mesh.inbound_port), the shadow-agent's port in outbound mode.
	DefaultInboundPort = 28080
	// inboundName is the base of the Service's and the Ingress's scoped names.
	inboundName = "mesh-tunnel"
	// inboundPortName names the mesh-agent's tunnel port and the Service's.
	inboundPortName = "mesh-tunnel"
	// wsAppProtocol tells Gateway API implementations that need it that the port carries
	// WebSocket upgrades (Traefik and Envoy pass them anyway).
	wsAppProtocol = "kubernetes.io/ws"
)

// meshDirection is the pod's direction: its AnnotMeshDirection, else m.Direction.
func meshDirection(local *corev1.Pod, m Mesh) (Direction, error) {
	v, ok := local.Annotations[AnnotMeshDirection]
	if !ok {
		return m.Direction, nil
	}
	switch d := Direction(strings.TrimSpace(v)); d {
	case DirectionOutbound, DirectionInbound:
		return d, nil
	}
	return "", &ValidationError{Field: "metadata.annotations[" + AnnotMeshDirection + "]", Reason: fmt.Sprintf("%q: want outbound or inbound", v)}
}

// inboundHost is the host the shadow dials for an inbound pod: the tunnel host the VK gave
// (<name>-<namespace>.<WildcardDNS>, from its Host header or its URL), which in inbound mode names
// the remote cluster's ingress.
func inboundHost(t meshspec.Tunnel) (string, error) {
	host := t.Host
	if host == "" {
		u, err := url.Parse(t.URL)
		if err != nil {
			return "", err
		}
		host = u.Host
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
		return "", fmt.Errorf("the VK's tunnel host %q cannot name an Ingress rule: %s", host, strings.Join(msgs, "; "))
	}
	return host, nil
}

// publishInbound turns spec into an inbound mesh (the mesh-agent serves its tunnel on
// m.InboundPort, dialed by nobody else's settings) and adds to plan the Service and the Ingress
// that publish the tunnel at the host the VK named, in the pod's remote namespace, owned by the
// pod like its other objects. The Service selects nothing: the pod is not ready before its
// mesh-agent's first handshake, which needs the shadow to reach it first, so the plugin writes the
// pod's address as a serving endpoint itself once the pod has one (inboundEndpoints).
func publishInbound(plan *Plan, local *corev1.Pod, spec *meshspec.Spec, m Mesh) error {
	host, err := inboundHost(spec.Tunnel)
	if err != nil {
		return &ValidationError{Field: "mesh tunnel url", Reason: err.Error()}
	}
	for i, c := range plan.Pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.ContainerPort == int32(m.InboundPort) && p.Protocol != corev1.ProtocolUDP && p.Protocol != corev1.ProtocolSCTP {
				return &ValidationError{Field: fmt.Sprintf("pod.spec.containers[%d].ports", i),
					Reason: fmt.Sprintf("port %d is the inbound mesh tunnel's (option mesh.inbound_port)", m.InboundPort)}
			}
		}
	}
	spec.Tunnel = meshspec.Tunnel{
		Listen:      ":" + strconv.Itoa(m.InboundPort),
		PathPrefix:  spec.Tunnel.PathPrefix,
		Destination: spec.Tunnel.Destination,
	}
	uid := string(local.UID)
	name := ScopedName(inboundName, uid)
	port := int32(m.InboundPort)
	svc := &corev1.Service{
		ObjectMeta: scopedMeta(name, plan.Namespace, local),
		// No selector: the plugin writes the pod's EndpointSlice itself, serving from the start
		// (see inboundEndpoints).
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{
				Name: inboundPortName, Protocol: corev1.ProtocolTCP, Port: port,
				TargetPort: intstr.FromInt32(port), AppProtocol: new(wsAppProtocol),
			}},
		},
	}
	ing := &networkingv1.Ingress{
		ObjectMeta: scopedMeta(name, plan.Namespace, local),
		Spec: networkingv1.IngressSpec{
			Rules: []networkingv1.IngressRule{{
				Host: host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path: "/", PathType: new(networkingv1.PathTypePrefix),
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: name, Port: networkingv1.ServiceBackendPort{Name: inboundPortName},
						}},
					}},
				}},
			}},
		},
	}
	if m.InboundIngressClass != "" {
		ing.Spec.IngressClassName = new(m.InboundIngressClass)
	}
	for k, v := range m.InboundIngressAnnotations {
		ing.Annotations[k] = v
	}
	if m.InboundTLS {
		ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: name + "-tls"}}
	}
	plan.Services = append(plan.Services, svc)
	plan.Ingresses = append(plan.Ingresses, ing)
	return nil
}

// inboundTunnelPort is the mesh-agent's tunnel port of an inbound pod.
func inboundTunnelPort(m Mesh) corev1.ContainerPort {
	return corev1.ContainerPort{Name: inboundPortName, ContainerPort: int32(m.InboundPort), Protocol: corev1.ProtocolTCP}
}

// isInbound tells whether a remote pod is an inbound mesh pod: its mesh-agent serves the tunnel.
func isInbound(pod *corev1.Pod) bool { return inboundPort(pod) != 0 }
