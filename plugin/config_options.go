package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Option is one configuration option: its path in the file and how to set it from a string (in
// the environment and in the INI form). An option of the Python plugin that this plugin does not
// use has no setter: it is reported (see Notice).
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
		{"k8s.client_configuration", `client options as one JSON object, the Python plugin's form: {"verify_ssl": false, "ssl_ca_cert": "ca.crt", "cert_file": "client.crt", "key_file": "client.key", "qps": 200, "burst": 400, "timeout": "30s"}`, c.setClientJSON},
		{"k8s.client_configuration.verify_ssl", "false: accept any remote apiserver certificate (default true)", func(v string) error {
			b, err := strconv.ParseBool(v)
			c.K8s.ClientConfiguration.VerifySSL = &b
			return err
		}},
		{"k8s.client_configuration.ssl_ca_cert", "CA file for the remote apiserver (default: the kubeconfig's)", str(&c.K8s.ClientConfiguration.SSLCACert)},
		{"k8s.client_configuration.cert_file", "client certificate file (default: the kubeconfig's)", str(&c.K8s.ClientConfiguration.CertFile)},
		{"k8s.client_configuration.key_file", "client key file (default: the kubeconfig's)", str(&c.K8s.ClientConfiguration.KeyFile)},
		{"k8s.client_configuration.qps", "remote API requests per second (default 1000)", func(v string) error {
			f, err := strconv.ParseFloat(v, 32)
			c.K8s.ClientConfiguration.QPS = float32(f)
			return err
		}},
		{"k8s.client_configuration.burst", "remote API burst (default 2000)", intSetter(&c.K8s.ClientConfiguration.Burst)},
		{"k8s.client_configuration.timeout", "timeout of a remote API request (default 30s)", durationSetter(&c.K8s.ClientConfiguration.Timeout)},
		{"app.socket_address", "unix:///path or http://host (default " + DefaultSocket + ")", str(&c.App.SocketAddress)},
		{"app.socket_port", "TCP port with an http:// socket_address", intSetter(&c.App.SocketPort)},
		{"app.max_body_bytes", "request body limit in bytes (default 16777216); a /status body may be 64 times that (the VK sends every pod it holds, decoded one at a time)", func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			c.App.MaxBodyBytes = n
			return err
		}},
		{"app.log_level", "debug, info, warn or error (default info)", str(&c.App.LogLevel)},
		{"app.api_docs_path", "also serve the API documentation page here (always at /docs)", str(&c.App.APIDocsPath)},
		{"app.pprof", "serve Go's profiles at /debug/pprof/ on the API's listener, for a profile of the plugin under load (default false)", func(v string) error {
			b, err := strconv.ParseBool(v)
			c.App.Pprof = b
			return err
		}},
		{"offloading.namespace_prefix", "remote namespace prefix; empty: none (default offloading; none in the INI form)", func(v string) error {
			c.Offloading.NamespacePrefix = &v
			return nil
		}},
		{"offloading.namespace_prefix_exclusions", `namespaces kept unprefixed: JSON list ["a","b"] or a,b`, func(v string) error {
			l, err := parseList(v)
			c.Offloading.NamespacePrefixExclusions = l
			return err
		}},
		{"offloading.node_selector", "remote node selector: JSON object or k=v,k=v", func(v string) error {
			m, err := parseSelector(v)
			c.Offloading.NodeSelector = m
			return err
		}},
		{"offloading.node_tolerations", "remote tolerations: JSON list of Kubernetes tolerations (toleration_seconds as in the Python plugin, or tolerationSeconds)", func(v string) error {
			t, err := parseTolerations(v)
			c.Offloading.NodeTolerations = t
			return err
		}},
		{"offloading.local_kubeconfig_path", "read-only local kubeconfig enabling the orphan sweep", str(&c.Offloading.LocalKubeconfigPath)},
		{"offloading.local_in_cluster", "true: the plugin runs in the local cluster (InterLink's chart) and reaches it with its pod's ServiceAccount, enabling the orphan sweep (default false)", func(v string) error {
			b, err := strconv.ParseBool(v)
			c.Offloading.LocalInCluster = b
			return err
		}},
		{"offloading.orphan_sweep_interval", "orphan sweep period (default 5m)", durationSetter(&c.Offloading.OrphanSweepInterval)},
		{"offloading.shadow_leftovers", "with a local kubeconfig, the shadow Secrets the VK leaves behind: delete (default), dry-run, off", str(&c.Offloading.ShadowLeftovers)},
		{"offloading.mesh_events", "with local access, record MeshLost and MeshReady Events on the offloaded pods when their shadow pods lose the mesh and get it back (default true)", func(v string) error {
			b, err := strconv.ParseBool(v)
			c.Offloading.MeshEvents = &b
			return err
		}},
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
		{"mesh.mode", "kernel (a TUN device, NET_ADMIN) or netstack (a user-space stack, no capability, Pod Security restricted) (default kernel; the pod annotation mesh.interlink-k8s-mesh.io/mode overrides it)", str(&c.Mesh.Mode)},
		{"mesh.dns_mode", "local (the local cluster's DNS over the mesh), remote or none (default local)", str(&c.Mesh.DNSMode)},
		{"mesh.cluster_domain", "the local cluster's DNS domain (default cluster.local)", str(&c.Mesh.ClusterDomain)},
		{"mesh.remote_pod_cidr", "the remote cluster's pod CIDRs, comma-separated; overlapping mesh routes are refused", str(&c.Mesh.RemotePodCIDR)},
		{"mesh.remote_service_cidr", "the remote cluster's Service CIDRs, comma-separated; overlapping mesh routes are refused", str(&c.Mesh.RemoteServiceCIDR)},
		{"mesh.tunnel_nameservers", "the remote cluster's DNS, which the sidecars of dns_mode local pods (whose resolv.conf names the local DNS, reachable only through the mesh) ask for the tunnel's host: IPs separated by commas, auto (the remote kube-system/kube-dns Service, looked up at start) or none (default auto)", str(&c.Mesh.TunnelNameservers)},
		{"mesh.tunnel_scheme", "auto (the scheme of the VK's mesh script) or wss (the sidecars dial the ingress over TLS, port 443 for the script's 80, whatever the script says) (default auto)", str(&c.Mesh.TunnelScheme)},
		{"mesh.tunnel_ca", "PEM file of CA certificates that verify the ingress's wss:// certificate besides the sidecar image's public roots; read at start (default unset)", str(&c.Mesh.TunnelCA)},
		{"mesh.direction", "outbound (the sidecars dial the local cluster's ingress) or inbound (the sidecars serve the tunnel, published by a Service and an Ingress per pod in the remote cluster; the shadows dial it: nothing reaches into the local cluster) (default outbound; the pod annotation mesh.interlink-k8s-mesh.io/direction overrides it; the VK's shadow template must match)", str(&c.Mesh.Direction)},
		{"mesh.inbound_port", "inbound: the sidecar's tunnel port (default 28080)", intSetter(&c.Mesh.InboundPort)},
		{"mesh.inbound_ingress_class", "inbound: the IngressClass of the tunnels' Ingresses (default: the remote cluster's default class)", str(&c.Mesh.InboundIngressClass)},
		{"mesh.inbound_ingress_annotations", "inbound: annotations of the tunnels' Ingresses (a cert-manager issuer, timeouts): JSON object or k=v,k=v", func(v string) error {
			m, err := parseSelector(v)
			c.Mesh.InboundIngressAnnotations = m
			return err
		}},
		{"mesh.inbound_tls", "inbound: give each Ingress a TLS section (Secret <ingress>-tls, which cert-manager fills) so that the shadows dial wss:// (default false)", func(v string) error {
			b, err := strconv.ParseBool(v)
			c.Mesh.InboundTLS = &b
			return err
		}},
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

// parseList reads a JSON list of strings (the Python plugin's form) or a comma-separated list.
func parseList(v string) ([]string, error) {
	if !strings.HasPrefix(strings.TrimSpace(v), "[") {
		return splitList(v), nil
	}
	var l []string
	if err := json.Unmarshal([]byte(v), &l); err != nil {
		return nil, fmt.Errorf("not a JSON list of strings: %w", err)
	}
	return l, nil
}

// parseTolerations reads a JSON list of tolerations. The Python plugin built them from the
// Python client's keyword names, so toleration_seconds is accepted for tolerationSeconds; any
// other unknown key is refused.
func parseTolerations(v string) ([]corev1.Toleration, error) {
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(v), &raw); err != nil {
		return nil, fmt.Errorf("not a JSON list of tolerations: %w", err)
	}
	for _, t := range raw {
		if s, ok := t["toleration_seconds"]; ok {
			t["tolerationSeconds"] = s
			delete(t, "toleration_seconds")
		}
	}
	b, _ := json.Marshal(raw)
	var out []corev1.Toleration
	if err := strictJSON(b, &out); err != nil {
		return nil, err
	}
	return out, nil
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

// setClientJSON reads k8s.client_configuration as one JSON object, the Python plugin's form (it set
// each key on the Python client's Configuration). Keys this plugin has no use for are reported.
func (c *FileConfig) setClientJSON(v string) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	cc := &c.K8s.ClientConfiguration
	for _, k := range slices.Sorted(maps.Keys(m)) {
		raw := m[k]
		var err error
		switch k {
		case "verify_ssl":
			var b bool
			err = json.Unmarshal(raw, &b)
			cc.VerifySSL = &b
		case "ssl_ca_cert":
			err = json.Unmarshal(raw, &cc.SSLCACert)
		case "cert_file":
			err = json.Unmarshal(raw, &cc.CertFile)
		case "key_file":
			err = json.Unmarshal(raw, &cc.KeyFile)
		case "qps":
			err = json.Unmarshal(raw, &cc.QPS)
		case "burst":
			err = json.Unmarshal(raw, &cc.Burst)
		case "timeout":
			var s string
			if err = json.Unmarshal(raw, &s); err == nil {
				cc.Timeout.Duration, err = time.ParseDuration(s)
			}
		default:
			c.Notices = append(c.Notices, Notice{Option: "k8s.client_configuration." + k, Level: slog.LevelWarn,
				Message: "not supported, ignored: this plugin takes verify_ssl, ssl_ca_cert, cert_file, key_file, qps, burst and timeout; the rest comes from the kubeconfig"})
		}
		if err != nil {
			return fmt.Errorf("key %s: %w", k, err)
		}
	}
	return nil
}

// strictJSON decodes exactly one JSON value into v, refusing unknown fields.
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}
