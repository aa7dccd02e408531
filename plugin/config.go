package plugin

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// FileConfig is the plugin's configuration file, with the Python plugin's option names, in YAML or
// in that plugin's INI form (see LoadConfig). Every option can be overridden by an environment
// variable named after its path: `app.socket_port` is APP_SOCKET_PORT,
// `k8s.client_configuration.qps` is K8S_CLIENT_CONFIGURATION_QPS.
type FileConfig struct {
	K8s        K8sOptions        `json:"k8s"`
	App        AppOptions        `json:"app"`
	Offloading OffloadingOptions `json:"offloading"`
	Mesh       MeshOptions       `json:"mesh"`

	// Path is the file read ("" for none) and Format its form: FormatYAML, FormatINI or "".
	Path   string `json:"-"`
	Format string `json:"-"`
	// Notices are what the plugin reports at start about the configuration: options of the Python
	// plugin that this plugin replaces, ignores or reads differently, and unknown INI keys.
	Notices []Notice `json:"-"`
}

// The forms of the configuration file.
const (
	FormatYAML = "yaml"
	FormatINI  = "ini"
)

// DefaultConfigPath is read, relative to the working directory, when no file is named and it
// exists: where the Python plugin reads its config.ini.
const DefaultConfigPath = "private/config.ini"

// K8sOptions say how to reach the remote cluster. With neither a path nor an inline kubeconfig the
// plugin uses its in-cluster service account.
type K8sOptions struct {
	KubeconfigPath      string        `json:"kubeconfig_path,omitempty"`
	Kubeconfig          string        `json:"kubeconfig,omitempty"`
	ClientConfiguration ClientOptions `json:"client_configuration"`
}

// ClientOptions tune the client-go client of the remote cluster. VerifySSL, SSLCACert, CertFile
// and KeyFile are the Python client's names; set, they take precedence over the kubeconfig's own.
type ClientOptions struct {
	// VerifySSL false accepts any server certificate (the kubeconfig's CA is then not used).
	VerifySSL *bool `json:"verify_ssl,omitempty"`
	// SSLCACert is the file of the CA that signed the apiserver's certificate.
	SSLCACert string `json:"ssl_ca_cert,omitempty"`
	// CertFile and KeyFile are the client certificate and its key, both PEM files.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// QPS is the sustained request rate to the remote apiserver (default 1000: a create takes
	// about 8 requests and InterLink sends creates 20 and more at a time; at 200 the limiter
	// capped creates at 25.6/s, a quarter of what the apiserver took, BenchmarkScale). The
	// apiserver's own priority and fairness protects it from a busier plugin.
	QPS float32 `json:"qps,omitempty"`
	// Burst is the short burst above QPS (default 2000).
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
	// APIDocsPath also serves the API's documentation page at this path (it is always at /docs).
	APIDocsPath string `json:"api_docs_path,omitempty"`
	// Pprof serves Go's profiles at /debug/pprof/ (default false).
	Pprof bool `json:"pprof,omitempty"`
}

// OffloadingOptions shape the remote objects.
type OffloadingOptions struct {
	// NamespacePrefix makes the remote namespace <prefix>-<namespace>; empty: the local name
	// (default "offloading" in YAML and the environment; in the INI form, as in the Python
	// plugin, none).
	NamespacePrefix *string `json:"namespace_prefix,omitempty"`
	// NamespacePrefixExclusions are local namespaces kept as they are remotely.
	NamespacePrefixExclusions []string `json:"namespace_prefix_exclusions,omitempty"`
	// NodeSelector and NodeTolerations are added to every offloaded pod.
	NodeSelector    map[string]string   `json:"node_selector,omitempty"`
	NodeTolerations []corev1.Toleration `json:"node_tolerations,omitempty"`
	// LocalKubeconfigPath, when set, gives read-only access to the local cluster so an orphan sweep
	// removes remote pods whose local pod is gone.
	LocalKubeconfigPath string `json:"local_kubeconfig_path,omitempty"`
	// LocalInCluster gives the same access through the pod's own ServiceAccount, for a plugin that
	// runs in the local cluster (InterLink's chart: beside the VK); exclusive with
	// LocalKubeconfigPath. Bind manifests/local-sweep-rbac.yaml to that ServiceAccount.
	LocalInCluster bool `json:"local_in_cluster,omitempty"`
	// OrphanSweepInterval is how often the sweep runs (default 5m).
	OrphanSweepInterval Duration `json:"orphan_sweep_interval,omitempty"`
	// ShadowLeftovers is what the sweep does, with LocalKubeconfigPath, with the shadow Secrets
	// the VK leaves behind: delete (default), dry-run or off.
	ShadowLeftovers string `json:"shadow_leftovers,omitempty"`
	// MeshEvents, with local access, records MeshLost and MeshReady Events on the offloaded pods
	// from their shadow pods' readiness (default true).
	MeshEvents *bool `json:"mesh_events,omitempty"`
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
	// Mode is the sidecar's mode, kernel or netstack (default kernel); a pod's
	// mesh.interlink-k8s-mesh.io/mode annotation overrides it.
	Mode string `json:"mode,omitempty"`
	// ClusterDomain is the local cluster's DNS domain (default cluster.local).
	ClusterDomain string `json:"cluster_domain,omitempty"`
	// RemotePodCIDR and RemoteServiceCIDR are the remote cluster's ranges, comma-separated
	// CIDRs; mesh routes overlapping them are refused. Empty: not checked.
	RemotePodCIDR     string `json:"remote_pod_cidr,omitempty"`
	RemoteServiceCIDR string `json:"remote_service_cidr,omitempty"`
	// TunnelAddress is an IP:port the sidecars dial for the tunnel instead of the ingress host
	// (which still goes in the Host header and the TLS server name). Empty: the host is resolved.
	TunnelAddress string `json:"tunnel_address,omitempty"`
	// TunnelNameservers resolve the tunnel's host in the sidecars of pods whose resolv.conf names
	// the local cluster's DNS (dns_mode local): comma-separated IPs, "auto" (the default: the
	// remote cluster's kube-system/kube-dns Service, looked up at start) or "none" (the pod's
	// resolv.conf).
	TunnelNameservers string `json:"tunnel_nameservers,omitempty"`
	// TunnelScheme is auto (the default: the scheme the VK's mesh script gives) or wss: the
	// sidecars dial the ingress over TLS (wss://, port 443 for the script's 80) whatever the
	// script says, for VKs that render no Network.IngressTLS.
	TunnelScheme string `json:"tunnel_scheme,omitempty"`
	// TunnelCA is a PEM file of CA certificates that verify the ingress's wss:// certificate,
	// besides the sidecar image's public roots (a private CA, or cert-manager's own issuer).
	// Read at start; each mesh pod gets a copy in its mesh Secret.
	TunnelCA string `json:"tunnel_ca,omitempty"`
	// Direction is outbound (the default: the sidecars dial the local cluster's ingress) or
	// inbound (the sidecars serve the tunnel, published in the remote cluster by a Service and an
	// Ingress per pod, and the shadows dial it); a pod's mesh.interlink-k8s-mesh.io/direction
	// annotation overrides it. The VK's shadow template must match.
	Direction string `json:"direction,omitempty"`
	// InboundPort is the sidecar's tunnel port in inbound mode (default 28080).
	InboundPort int `json:"inbound_port,omitempty"`
	// InboundIngressClass is the IngressClass of the inbound Ingresses (default: the remote
	// cluster's default class).
	InboundIngressClass string `json:"inbound_ingress_class,omitempty"`
	// InboundIngressAnnotations are added to every inbound Ingress.
	InboundIngressAnnotations map[string]string `json:"inbound_ingress_annotations,omitempty"`
	// InboundTLS gives every inbound Ingress a TLS section (Secret <ingress>-tls) so that the
	// shadows dial wss:// (default false).
	InboundTLS *bool `json:"inbound_tls,omitempty"`
}

// The values of option mesh.direction.
const (
	DirectionOptOutbound = string(DirectionOutbound)
	DirectionOptInbound  = string(DirectionInbound)
)

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

// Prefix is the namespace prefix, "" for none.
func (o OffloadingOptions) Prefix() string {
	if o.NamespacePrefix == nil {
		return ""
	}
	return *o.NamespacePrefix
}

// The special values of option mesh.tunnel_nameservers.
const (
	TunnelNameserversAuto = "auto" // the remote cluster's kube-system/kube-dns, looked up at start
	TunnelNameserversNone = "none" // the pod's own resolv.conf
)

// The values of option mesh.tunnel_scheme.
const (
	TunnelSchemeAuto = "auto" // the scheme of the VK's mesh script
	TunnelSchemeWSS  = "wss"  // always wss://
)

// maxTunnelCA bounds option mesh.tunnel_ca's file: it is copied into every mesh pod's Secret.
const maxTunnelCA = 256 << 10

// readTunnelCA reads option mesh.tunnel_ca: a PEM file holding at least one CA certificate and
// nothing else that is not a certificate.
func readTunnelCA(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) > maxTunnelCA {
		return nil, fmt.Errorf("%s: %d bytes, at most %d", path, len(data), maxTunnelCA)
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: a %q PEM block; only CERTIFICATE blocks belong in a CA file", path, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", path, n+1, err)
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return data, nil
}

// parseNameservers reads option mesh.tunnel_nameservers: comma-separated unicast IPs, at most
// meshspec.MaxNameservers; auto and none give no address.
func parseNameservers(v string) ([]netip.Addr, error) {
	if v == TunnelNameserversAuto || v == TunnelNameserversNone || v == "" {
		return nil, nil
	}
	var out []netip.Addr
	for _, f := range splitList(v) {
		a, err := netip.ParseAddr(f)
		if err != nil || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not a unicast IP address", f)
		}
		out = append(out, a)
	}
	if len(out) > meshspec.MaxNameservers {
		return nil, fmt.Errorf("%d addresses, at most %d", len(out), meshspec.MaxNameservers)
	}
	return out, nil
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

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Notice is something the plugin reports at start about its configuration, naming the option
// (section.key) and what replaces it. A notice never stops the plugin.
type Notice struct {
	Option  string
	Level   slog.Level
	Message string
}
