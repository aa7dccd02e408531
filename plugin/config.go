package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// FileConfig is the plugin's configuration file, with the seed plugin's option names. Every option
// can be overridden by an environment variable named after its path: `app.socket_port` is
// APP_SOCKET_PORT, `k8s.client_configuration.qps` is K8S_CLIENT_CONFIGURATION_QPS.
type FileConfig struct {
	K8s        K8sOptions        `json:"k8s"`
	App        AppOptions        `json:"app"`
	Offloading OffloadingOptions `json:"offloading"`
	Mesh       MeshOptions       `json:"mesh"`
}

// K8sOptions say how to reach the remote cluster. With neither a path nor an inline kubeconfig the
// plugin uses its in-cluster service account.
type K8sOptions struct {
	KubeconfigPath      string        `json:"kubeconfig_path,omitempty"`
	Kubeconfig          string        `json:"kubeconfig,omitempty"`
	ClientConfiguration ClientOptions `json:"client_configuration"`
}

// ClientOptions tune the client-go client of the remote cluster.
type ClientOptions struct {
	// QPS is the sustained request rate to the remote apiserver (default 200: a create takes
	// about 8 requests and InterLink sends creates 20 and more at a time; see BenchmarkLoad).
	QPS float32 `json:"qps,omitempty"`
	// Burst is the short burst above QPS (default 400).
	Burst int `json:"burst,omitempty"`
	// Timeout bounds each non-streaming remote request (default 30s).
	Timeout Duration `json:"timeout,omitempty"`
}

// AppOptions say where the plugin listens.
type AppOptions struct {
	// SocketAddress is unix:///path for a unix socket (default unix:///var/run/.plugin.sock) or
	// http://host for TCP on SocketPort.
	SocketAddress string `json:"socket_address,omitempty"`
	SocketPort    int    `json:"socket_port,omitempty"`
	// MaxBodyBytes limits request bodies (default 16 MiB: a pod with its ConfigMaps and Secrets).
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `json:"log_level,omitempty"`
}

// OffloadingOptions shape the remote objects.
type OffloadingOptions struct {
	// NamespacePrefix makes the remote namespace <prefix>-<namespace> (default "offloading").
	NamespacePrefix string `json:"namespace_prefix,omitempty"`
	// NamespacePrefixExclusions are local namespaces kept as they are remotely.
	NamespacePrefixExclusions []string `json:"namespace_prefix_exclusions,omitempty"`
	// NodeSelector and NodeTolerations are added to every offloaded pod.
	NodeSelector    map[string]string   `json:"node_selector,omitempty"`
	NodeTolerations []corev1.Toleration `json:"node_tolerations,omitempty"`
	// LocalKubeconfigPath, when set, gives read-only access to the local cluster so an orphan sweep
	// removes remote pods whose local pod is gone.
	LocalKubeconfigPath string `json:"local_kubeconfig_path,omitempty"`
	// OrphanSweepInterval is how often the sweep runs (default 5m).
	OrphanSweepInterval Duration `json:"orphan_sweep_interval,omitempty"`
	// EmptyNamespaceTTL is how long a remote namespace the plugin created may hold none of its
	// pods before the plugin deletes it (default 10m; negative, such as -1s: never).
	EmptyNamespaceTTL Duration `json:"empty_namespace_ttl,omitempty"`
}

// MeshOptions shape the mesh-agent sidecar injected into pods that carry mesh annotations (see
// Mesh for what each does).
type MeshOptions struct {
	// Enabled injects the sidecar into pods with mesh annotations (default true).
	Enabled *bool `json:"enabled,omitempty"`
	// AgentImage is the mesh-agent image (default DefaultMeshAgentImage).
	AgentImage string `json:"agent_image,omitempty"`
	// AgentImagePullPolicy is Always, IfNotPresent or Never (default IfNotPresent).
	AgentImagePullPolicy corev1.PullPolicy `json:"agent_image_pull_policy,omitempty"`
	// AgentResources are Kubernetes resource requirements (default requests cpu 10m, memory
	// 32Mi; limits memory 256Mi).
	AgentResources *corev1.ResourceRequirements `json:"agent_resources,omitempty"`
	// AgentStartupTimeout bounds the wait for the first WireGuard handshake before the sidecar
	// is restarted (default 5m).
	AgentStartupTimeout Duration `json:"agent_startup_timeout,omitempty"`
	// DNSMode is local, remote or none (default local).
	DNSMode string `json:"dns_mode,omitempty"`
	// ClusterDomain is the local cluster's DNS domain (default cluster.local).
	ClusterDomain string `json:"cluster_domain,omitempty"`
	// RemotePodCIDR and RemoteServiceCIDR are the remote cluster's ranges, comma-separated
	// CIDRs; mesh routes overlapping them are refused. Empty: not checked.
	RemotePodCIDR     string `json:"remote_pod_cidr,omitempty"`
	RemoteServiceCIDR string `json:"remote_service_cidr,omitempty"`
	// TunnelAddress is an IP:port the sidecars dial for the tunnel instead of the ingress host
	// (which still goes in the Host header and the TLS server name). Empty: the host is resolved.
	TunnelAddress string `json:"tunnel_address,omitempty"`
}

// Duration is a time.Duration written as "30s" in the file and the environment.
type Duration struct{ time.Duration }

// UnmarshalJSON accepts "30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// DefaultSocket is where the plugin listens when nothing says otherwise, as the seed did.
const DefaultSocket = "unix:///var/run/.plugin.sock"

// LoadConfig reads the file at path (none when path is empty), applies environment overrides
// through getenv, fills defaults and validates. Errors name the option at fault.
func LoadConfig(path string, getenv func(string) string) (FileConfig, error) {
	var c FileConfig
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			return c, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	for _, o := range c.options() {
		v := getenv(o.Env())
		if v == "" {
			continue
		}
		if err := o.set(v); err != nil {
			return c, fmt.Errorf("option %s (env %s): %w", o.Key, o.Env(), err)
		}
	}
	c.defaults()
	return c, c.Validate()
}

// Option is one configuration option: its path in the file and how to set it from a string.
type Option struct {
	Key  string
	Help string
	set  func(string) error
}

// Env is the environment variable overriding the option.
func (o Option) Env() string { return strings.ToUpper(strings.ReplaceAll(o.Key, ".", "_")) }

// Options lists every option, for help text and environment overrides.
func Options() []Option { var c FileConfig; return c.options() }

func (c *FileConfig) options() []Option {
	str := func(p *string) func(string) error { return func(v string) error { *p = v; return nil } }
	return []Option{
		{"k8s.kubeconfig_path", "path of the remote cluster's kubeconfig", str(&c.K8s.KubeconfigPath)},
		{"k8s.kubeconfig", "the remote cluster's kubeconfig, inline", str(&c.K8s.Kubeconfig)},
		{"k8s.client_configuration.qps", "remote API requests per second (default 200)", func(v string) error {
			f, err := strconv.ParseFloat(v, 32)
			c.K8s.ClientConfiguration.QPS = float32(f)
			return err
		}},
		{"k8s.client_configuration.burst", "remote API burst (default 400)", intSetter(&c.K8s.ClientConfiguration.Burst)},
		{"k8s.client_configuration.timeout", "timeout of a remote API request (default 30s)", durationSetter(&c.K8s.ClientConfiguration.Timeout)},
		{"app.socket_address", "unix:///path or http://host (default " + DefaultSocket + ")", str(&c.App.SocketAddress)},
		{"app.socket_port", "TCP port with an http:// socket_address", intSetter(&c.App.SocketPort)},
		{"app.max_body_bytes", "request body limit in bytes (default 16777216)", func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			c.App.MaxBodyBytes = n
			return err
		}},
		{"app.log_level", "debug, info, warn or error (default info)", str(&c.App.LogLevel)},
		{"offloading.namespace_prefix", "remote namespace prefix (default offloading)", str(&c.Offloading.NamespacePrefix)},
		{"offloading.namespace_prefix_exclusions", "comma-separated namespaces kept unprefixed", func(v string) error {
			c.Offloading.NamespacePrefixExclusions = splitList(v)
			return nil
		}},
		{"offloading.node_selector", "remote node selector: JSON object or k=v,k=v", func(v string) error {
			m, err := parseSelector(v)
			c.Offloading.NodeSelector = m
			return err
		}},
		{"offloading.node_tolerations", "remote tolerations: JSON list of Kubernetes tolerations", func(v string) error {
			return json.Unmarshal([]byte(v), &c.Offloading.NodeTolerations)
		}},
		{"offloading.local_kubeconfig_path", "read-only local kubeconfig enabling the orphan sweep", str(&c.Offloading.LocalKubeconfigPath)},
		{"offloading.orphan_sweep_interval", "orphan sweep period (default 5m)", durationSetter(&c.Offloading.OrphanSweepInterval)},
		{"offloading.empty_namespace_ttl", "delete a remote namespace the plugin made once it held none of its pods this long (default 10m; negative: never)", durationSetter(&c.Offloading.EmptyNamespaceTTL)},
		{"mesh.enabled", "inject the mesh-agent sidecar into pods with mesh annotations (default true)", func(v string) error {
			b, err := strconv.ParseBool(v)
			c.Mesh.Enabled = &b
			return err
		}},
		{"mesh.agent_image", "mesh-agent image (default " + meshAgentRepository + ":<plugin version>, :latest without one)", str(&c.Mesh.AgentImage)},
		{"mesh.agent_image_pull_policy", "Always, IfNotPresent or Never (default IfNotPresent)", func(v string) error {
			c.Mesh.AgentImagePullPolicy = corev1.PullPolicy(v)
			return nil
		}},
		{"mesh.agent_resources", `sidecar resources: JSON such as {"requests":{"cpu":"10m","memory":"32Mi"},"limits":{"memory":"256Mi"}} (the default)`, func(v string) error {
			c.Mesh.AgentResources = &corev1.ResourceRequirements{}
			return json.Unmarshal([]byte(v), c.Mesh.AgentResources)
		}},
		{"mesh.agent_startup_timeout", "wait for the first WireGuard handshake before the sidecar restarts (default 5m)", durationSetter(&c.Mesh.AgentStartupTimeout)},
		{"mesh.dns_mode", "local (the local cluster's DNS over the mesh), remote or none (default local)", str(&c.Mesh.DNSMode)},
		{"mesh.cluster_domain", "the local cluster's DNS domain (default cluster.local)", str(&c.Mesh.ClusterDomain)},
		{"mesh.remote_pod_cidr", "the remote cluster's pod CIDRs, comma-separated; overlapping mesh routes are refused", str(&c.Mesh.RemotePodCIDR)},
		{"mesh.remote_service_cidr", "the remote cluster's Service CIDRs, comma-separated; overlapping mesh routes are refused", str(&c.Mesh.RemoteServiceCIDR)},
		{"mesh.tunnel_address", "IP:port the sidecars dial for the tunnel instead of resolving the ingress host, which still names the Host header and TLS server (for remote pods that cannot resolve it before the mesh is up); default unset", str(&c.Mesh.TunnelAddress)},
	}
}

func intSetter(p *int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		*p = n
		return err
	}
}

func durationSetter(p *Duration) func(string) error {
	return func(v string) error {
		d, err := time.ParseDuration(v)
		p.Duration = d
		return err
	}
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseSelector(v string) (map[string]string, error) {
	m := map[string]string{}
	if strings.HasPrefix(strings.TrimSpace(v), "{") {
		return m, json.Unmarshal([]byte(v), &m)
	}
	for _, kv := range splitList(v) {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(val)
	}
	return m, nil
}

func (c *FileConfig) defaults() {
	if c.App.SocketAddress == "" {
		c.App.SocketAddress = DefaultSocket
	}
	if c.App.MaxBodyBytes == 0 {
		c.App.MaxBodyBytes = 16 << 20
	}
	if c.App.LogLevel == "" {
		c.App.LogLevel = "info"
	}
	if c.K8s.ClientConfiguration.QPS == 0 {
		c.K8s.ClientConfiguration.QPS = 200
	}
	if c.K8s.ClientConfiguration.Burst == 0 {
		c.K8s.ClientConfiguration.Burst = 400
	}
	if c.K8s.ClientConfiguration.Timeout.Duration == 0 {
		c.K8s.ClientConfiguration.Timeout.Duration = 30 * time.Second
	}
	if c.Offloading.NamespacePrefix == "" {
		c.Offloading.NamespacePrefix = "offloading"
	}
	if c.Offloading.OrphanSweepInterval.Duration == 0 {
		c.Offloading.OrphanSweepInterval.Duration = 5 * time.Minute
	}
	if c.Mesh.Enabled == nil {
		c.Mesh.Enabled = ptrTo(true)
	}
	d := Mesh{}.withDefaults()
	if c.Mesh.AgentImage == "" {
		c.Mesh.AgentImage = d.AgentImage
	}
	if c.Mesh.AgentImagePullPolicy == "" {
		c.Mesh.AgentImagePullPolicy = d.AgentImagePullPolicy
	}
	if c.Mesh.AgentResources == nil {
		c.Mesh.AgentResources = &d.AgentResources
	}
	if c.Mesh.AgentStartupTimeout.Duration == 0 {
		c.Mesh.AgentStartupTimeout.Duration = d.StartupTimeout
	}
	if c.Mesh.DNSMode == "" {
		c.Mesh.DNSMode = string(d.DNSMode)
	}
	if c.Mesh.ClusterDomain == "" {
		c.Mesh.ClusterDomain = d.ClusterDomain
	}
}

// MeshConfig is the mesh part of the configuration, for Offloading.Mesh. It assumes Validate
// passed.
func (c FileConfig) MeshConfig() Mesh {
	m := Mesh{
		Disabled:             c.Mesh.Enabled != nil && !*c.Mesh.Enabled,
		AgentImage:           c.Mesh.AgentImage,
		AgentImagePullPolicy: c.Mesh.AgentImagePullPolicy,
		DNSMode:              DNSMode(c.Mesh.DNSMode),
		ClusterDomain:        c.Mesh.ClusterDomain,
		StartupTimeout:       c.Mesh.AgentStartupTimeout.Duration,
	}
	if c.Mesh.AgentResources != nil {
		m.AgentResources = *c.Mesh.AgentResources
	}
	m.RemotePodCIDRs, _ = parseCIDRList(c.Mesh.RemotePodCIDR)
	m.RemoteServiceCIDRs, _ = parseCIDRList(c.Mesh.RemoteServiceCIDR)
	if c.Mesh.TunnelAddress != "" {
		m.TunnelAddress, _ = netip.ParseAddrPort(c.Mesh.TunnelAddress)
	}
	return m
}

// parseCIDRList reads comma-separated CIDRs, in canonical form (no host bits).
func parseCIDRList(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range splitList(v) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR", f)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("%v has host bits set; did you mean %v?", p, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}

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
	if msgs := validation.IsDNS1123Label(c.Offloading.NamespacePrefix); len(msgs) > 0 {
		bad("offloading.namespace_prefix", "%q: %s", c.Offloading.NamespacePrefix, strings.Join(msgs, "; "))
	} else if len(c.Offloading.NamespacePrefix) > 20 {
		bad("offloading.namespace_prefix", "%q is longer than 20 characters, leaving too little of the namespace", c.Offloading.NamespacePrefix)
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
	case "http":
		if a.SocketPort <= 0 || a.SocketPort > 65535 {
			return "", "", fmt.Errorf("http socket address %q needs app.socket_port in 1..65535, got %d", a.SocketAddress, a.SocketPort)
		}
		return "tcp", fmt.Sprintf("%s:%d", strings.Trim(u.Hostname(), "[]"), a.SocketPort), nil
	default:
		return "", "", fmt.Errorf("%q: scheme must be unix:// or http://", a.SocketAddress)
	}
}
