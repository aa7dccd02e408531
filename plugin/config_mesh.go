package plugin

import (
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// The mesh-agent's image.
const (
	// DefaultMeshAgentImage is the default of option mesh.agent_image for a plugin built without a
	// version; a released plugin defaults to MeshAgentImage(its version), the sidecar of its release.
	DefaultMeshAgentImage = meshAgentRepository + ":latest"
	// meshAgentRepository is where `make push` publishes the mesh-agent (images/images.yaml).
	meshAgentRepository = "ghcr.io/interlink-k8s-mesh/mesh-agent"
)

// DNSMode says which DNS an offloaded mesh pod uses.
type DNSMode string

// The DNS modes (option mesh.dns_mode; a pod's AnnotMeshDNS overrides it).
const (
	// DNSLocal resolves through the local cluster's DNS, reached over the mesh: dnsPolicy None,
	// the mesh nameservers and the search list of the pod's local namespace, so Service names
	// resolve as they would at home. A pod whose author chose dnsPolicy None keeps its own
	// setting, and a mesh without a nameserver the routes reach leaves the remote DNS in place.
	DNSLocal DNSMode = "local"
	// DNSRemote keeps the remote cluster's DNS; mesh.json still records the mesh nameservers.
	DNSRemote DNSMode = "remote"
	// DNSNone keeps the remote cluster's DNS and records no DNS in mesh.json.
	DNSNone DNSMode = "none"
)

// Mesh shapes the mesh-agent sidecar injected into every pod that carries mesh annotations (see
// AnnotPreExec, AnnotWGSnippet, AnnotMeshSpec). The zero value is the default configuration.
type Mesh struct {
	// Disabled offloads every pod without the mesh, mesh annotations or not (they are still
	// stripped). Option mesh.enabled: false.
	Disabled bool
	// AgentImage is the mesh-agent image (default DefaultMeshAgentImage).
	AgentImage string
	// AgentImagePullPolicy is its pull policy (default IfNotPresent).
	AgentImagePullPolicy corev1.PullPolicy
	// AgentResources are the sidecar's requests and limits (default: requests cpu 10m and
	// memory 32Mi, limit memory 256Mi). Native sidecars count towards the pod's requests.
	AgentResources corev1.ResourceRequirements
	// DNSMode selects the pod's DNS (default DNSLocal).
	DNSMode DNSMode
	// Mode is the sidecar's mode unless the pod's AnnotMeshMode says otherwise: kernel (a
	// TUN device; NET_ADMIN) or netstack (a user-space stack; no capability, admitted by Pod
	// Security "restricted"). Option mesh.mode; default meshspec.ModeKernel.
	Mode meshspec.Mode
	// ClusterDomain is the local cluster's DNS domain, for the search list (default
	// cluster.local).
	ClusterDomain string
	// RemotePodCIDRs and RemoteServiceCIDRs are the remote cluster's own ranges: a mesh route,
	// address or nameserver inside them would cut the pod off from the remote cluster, so such
	// a pod is refused. Empty: not checked.
	RemotePodCIDRs, RemoteServiceCIDRs []netip.Prefix
	// StartupTimeout is how long the sidecar may take to complete its first WireGuard handshake
	// before the kubelet restarts it; the application containers wait meanwhile (default 5m).
	StartupTimeout time.Duration
	// TunnelAddress, when valid, is the address the sidecar dials for the tunnel instead of the
	// tunnel URL's host, which moves to the Host header (and TLS server name) unless the spec
	// already names one. For remote pods that cannot resolve the ingress host before the mesh is
	// up: with DNSLocal their only nameserver is the local cluster's, reached through the mesh.
	TunnelAddress netip.AddrPort
	// TunnelNameservers resolve the tunnel URL's host in the sidecar (mesh.json
	// tunnel.nameservers), instead of the pod's resolv.conf, when that names the local cluster's
	// DNS (DNSLocal), reachable only through the mesh, and no TunnelAddress replaces the host: the
	// remote cluster's DNS (option mesh.tunnel_nameservers, by default the remote kube-dns
	// Service). Empty: the pod's resolv.conf, which cannot resolve a name before the mesh is up.
	TunnelNameservers []netip.Addr
	// TunnelTLS makes the sidecar dial the tunnel over wss:// whatever the mesh script says:
	// ws://host:80 becomes wss://host:443 (another port is kept). Option mesh.tunnel_scheme wss.
	TunnelTLS bool
	// TunnelCA is PEM CA certificates that verify a wss:// tunnel besides the sidecar's public
	// roots: copied into each pod's mesh Secret (tunnel.caFile). Option mesh.tunnel_ca.
	TunnelCA []byte
	// Direction says which side dials unless the pod's AnnotMeshDirection says otherwise
	// (default DirectionOutbound). Option mesh.direction.
	Direction Direction
	// InboundPort is the mesh-agent's tunnel port in inbound mode (default DefaultInboundPort).
	InboundPort int
	// InboundIngressClass is the class of the inbound Ingresses; empty: the remote cluster's
	// default class.
	InboundIngressClass string
	// InboundIngressAnnotations are added to every inbound Ingress (a cert-manager issuer, a
	// controller's timeouts).
	InboundIngressAnnotations map[string]string
	// InboundTLS gives every inbound Ingress a TLS section for its host with the Secret
	// <ingress>-tls (which cert-manager fills when an issuer annotation asks it to; without the
	// Secret, controllers serve their default certificate): the shadow dials wss://.
	InboundTLS bool
}

// MeshAgentImage is the mesh-agent image that `make images` tags with version, the version the
// plugin binary of the same build carries: plugin and sidecar come from one commit.
func MeshAgentImage(version string) string {
	return meshAgentRepository + ":" + version
}

func (m Mesh) withDefaults() Mesh {
	if m.AgentImage == "" {
		m.AgentImage = DefaultMeshAgentImage
	}
	if m.AgentImagePullPolicy == "" {
		m.AgentImagePullPolicy = corev1.PullIfNotPresent
	}
	if m.AgentResources.Requests == nil && m.AgentResources.Limits == nil && m.AgentResources.Claims == nil {
		m.AgentResources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		}
	}
	if m.DNSMode == "" {
		m.DNSMode = DNSLocal
	}
	if m.Mode == "" {
		m.Mode = meshspec.ModeKernel
	}
	if m.ClusterDomain == "" {
		m.ClusterDomain = "cluster.local"
	}
	if m.Direction == "" {
		m.Direction = DirectionOutbound
	}
	if m.InboundPort == 0 {
		m.InboundPort = DefaultInboundPort
	}
	if m.StartupTimeout <= 0 {
		m.StartupTimeout = 5 * time.Minute
	}
	return m
}
