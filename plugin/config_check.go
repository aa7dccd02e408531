package plugin

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// Validate reports the first option with a value the plugin cannot use.
func (c FileConfig) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("option %s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.K8s.KubeconfigPath != "" && c.K8s.Kubeconfig != "" {
		bad("k8s.kubeconfig", "set either k8s.kubeconfig_path or k8s.kubeconfig, not both")
	}
	if c.K8s.KubeconfigPath != "" {
		if _, err := os.Stat(c.K8s.KubeconfigPath); err != nil {
			bad("k8s.kubeconfig_path", "%v", err)
		}
	}
	cc := c.K8s.ClientConfiguration
	for key, path := range map[string]string{"ssl_ca_cert": cc.SSLCACert, "cert_file": cc.CertFile, "key_file": cc.KeyFile} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			bad("k8s.client_configuration."+key, "%v", err)
		}
	}
	if (cc.CertFile == "") != (cc.KeyFile == "") {
		bad("k8s.client_configuration.cert_file", "set both cert_file and key_file, or neither")
	}
	if p := c.App.APIDocsPath; p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, " {}") || reservedPath(p)) {
		bad("app.api_docs_path", "%q must be a path such as /docs, not one of the API's own routes", p)
	}
	if c.K8s.ClientConfiguration.QPS < 0 {
		bad("k8s.client_configuration.qps", "must be positive, got %v", c.K8s.ClientConfiguration.QPS)
	}
	if c.K8s.ClientConfiguration.Burst < 0 {
		bad("k8s.client_configuration.burst", "must be positive, got %d", c.K8s.ClientConfiguration.Burst)
	}
	if _, _, err := c.App.Listen(); err != nil {
		bad("app.socket_address", "%v", err)
	}
	if c.App.MaxBodyBytes < 1024 {
		bad("app.max_body_bytes", "must be at least 1024, got %d", c.App.MaxBodyBytes)
	}
	switch c.App.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("app.log_level", "must be debug, info, warn or error, got %q", c.App.LogLevel)
	}
	if prefix := c.Offloading.Prefix(); prefix == "" {
		// none: remote namespaces carry the local names
	} else if msgs := validation.IsDNS1123Label(prefix); len(msgs) > 0 {
		bad("offloading.namespace_prefix", "%q: %s", prefix, strings.Join(msgs, "; "))
	} else if len(prefix) > 20 {
		bad("offloading.namespace_prefix", "%q is longer than 20 characters, leaving too little of the namespace", prefix)
	}
	for _, ns := range c.Offloading.NamespacePrefixExclusions {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			bad("offloading.namespace_prefix_exclusions", "%q is not a namespace name: %s", ns, strings.Join(msgs, "; "))
		}
	}
	for k, v := range c.Offloading.NodeSelector {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			bad("offloading.node_selector", "key %q: %s", k, strings.Join(msgs, "; "))
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			bad("offloading.node_selector", "value %q: %s", v, strings.Join(msgs, "; "))
		}
	}
	for i, t := range c.Offloading.NodeTolerations {
		switch t.Effect {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			bad("offloading.node_tolerations", "[%d] effect %q is not a taint effect", i, t.Effect)
		}
	}
	if c.Offloading.LocalKubeconfigPath != "" {
		if _, err := os.Stat(c.Offloading.LocalKubeconfigPath); err != nil {
			bad("offloading.local_kubeconfig_path", "%v", err)
		}
		if c.Offloading.LocalInCluster {
			bad("offloading.local_in_cluster", "true together with offloading.local_kubeconfig_path: choose one way to reach the local cluster")
		}
	}
	if c.Offloading.LocalInCluster && c.K8s.KubeconfigPath == "" && c.K8s.Kubeconfig == "" {
		// Both clusters would be the pod's own: every remote pod would look orphaned.
		bad("offloading.local_in_cluster", "true needs the remote cluster's kubeconfig (k8s.kubeconfig_path or k8s.kubeconfig): without one the remote cluster is also the pod's own")
	}
	switch c.Offloading.ShadowLeftovers {
	case "", LeftoversDelete, LeftoversDryRun, LeftoversOff:
	default:
		bad("offloading.shadow_leftovers", "%q is not %s, %s or %s", c.Offloading.ShadowLeftovers, LeftoversDelete, LeftoversDryRun, LeftoversOff)
	}
	c.Mesh.validate(bad)
	return errors.Join(errs...)
}

func (m MeshOptions) validate(bad func(key, format string, args ...any)) {
	if m.AgentImage == "" || strings.ContainsAny(m.AgentImage, " \t\n") {
		bad("mesh.agent_image", "%q is not an image reference", m.AgentImage)
	}
	switch m.AgentImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("mesh.agent_image_pull_policy", "must be Always, IfNotPresent or Never, got %q", m.AgentImagePullPolicy)
	}
	if r := m.AgentResources; r != nil {
		for name, limit := range r.Limits {
			if req, ok := r.Requests[name]; ok && req.Cmp(limit) > 0 {
				bad("mesh.agent_resources", "the %s request %s is above its limit %s", name, req.String(), limit.String())
			}
		}
	}
	if m.AgentStartupTimeout.Duration < time.Second {
		bad("mesh.agent_startup_timeout", "must be at least 1s, got %v", m.AgentStartupTimeout.Duration)
	}
	switch DNSMode(m.DNSMode) {
	case DNSLocal, DNSRemote, DNSNone:
	default:
		bad("mesh.dns_mode", "must be local, remote or none, got %q", m.DNSMode)
	}
	if _, err := meshspec.ParseMode(m.Mode); err != nil {
		bad("mesh.mode", "%v", err)
	}
	if msgs := validation.IsDNS1123Subdomain(m.ClusterDomain); len(msgs) > 0 {
		bad("mesh.cluster_domain", "%q: %s", m.ClusterDomain, strings.Join(msgs, "; "))
	}
	if _, err := parseCIDRList(m.RemotePodCIDR); err != nil {
		bad("mesh.remote_pod_cidr", "%v", err)
	}
	if _, err := parseCIDRList(m.RemoteServiceCIDR); err != nil {
		bad("mesh.remote_service_cidr", "%v", err)
	}
	if m.TunnelAddress != "" {
		if a, err := netip.ParseAddrPort(m.TunnelAddress); err != nil || a.Port() == 0 {
			bad("mesh.tunnel_address", "want an IP:port such as 192.0.2.10:80 or [2001:db8::1]:443, got %q", m.TunnelAddress)
		}
	}
	if _, err := parseNameservers(m.TunnelNameservers); err != nil {
		bad("mesh.tunnel_nameservers", "want auto, none or IP addresses separated by commas: %v", err)
	}
	switch m.TunnelScheme {
	case "", TunnelSchemeAuto, TunnelSchemeWSS:
	default:
		bad("mesh.tunnel_scheme", "want auto or wss, got %q (ws:// cannot be forced: a script that says wss:// is never downgraded)", m.TunnelScheme)
	}
	if m.TunnelCA != "" {
		if _, err := readTunnelCA(m.TunnelCA); err != nil {
			bad("mesh.tunnel_ca", "%v", err)
		}
	}
	switch m.Direction {
	case "", DirectionOptOutbound, DirectionOptInbound:
	default:
		bad("mesh.direction", "want outbound or inbound, got %q", m.Direction)
	}
	switch p := m.InboundPort; {
	case p == 0:
	case p < 1 || p > 65535:
		bad("mesh.inbound_port", "%d is not a port from 1 to 65535", p)
	case p == meshAgentPort:
		bad("mesh.inbound_port", "%d is the sidecar's health and metrics port", p)
	}
	if c := m.InboundIngressClass; c != "" {
		if msgs := validation.IsDNS1123Subdomain(c); len(msgs) > 0 {
			bad("mesh.inbound_ingress_class", "%q: %s", c, strings.Join(msgs, "; "))
		}
	}
	for k := range m.InboundIngressAnnotations {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			bad("mesh.inbound_ingress_annotations", "key %q: %s", k, strings.Join(msgs, "; "))
		}
	}
}

// reservedPath tells whether path is one of the routes the plugin serves.
func reservedPath(path string) bool {
	switch strings.TrimRight(path, "/") {
	case "", "/status", "/getLogs", "/create", "/delete", "/healthz", "/readyz", "/metrics", "/docs/openapi.json":
		return true
	}
	return false
}

// Listen returns the network and address to listen on: ("unix", path) or ("tcp", host:port).
func (a AppOptions) Listen() (network, address string, err error) {
	u, err := url.Parse(a.SocketAddress)
	if err != nil {
		return "", "", err
	}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if u.Host != "" { // unix://relative/path
			path = u.Host + u.Path
		}
		if path == "" {
			return "", "", fmt.Errorf("%q names no socket path", a.SocketAddress)
		}
		return "unix", path, nil
	case "http", "https": // https: plain HTTP all the same, as the Python plugin served it
		if a.SocketPort <= 0 || a.SocketPort > 65535 {
			return "", "", fmt.Errorf("http socket address %q needs app.socket_port in 1..65535, got %d", a.SocketAddress, a.SocketPort)
		}
		return "tcp", fmt.Sprintf("%s:%d", strings.Trim(u.Hostname(), "[]"), a.SocketPort), nil
	default:
		return "", "", fmt.Errorf("%q: scheme must be unix:// or http://", a.SocketAddress)
	}
}
