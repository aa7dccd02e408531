package plugin

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/pkitest"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(`
k8s:
  kubeconfig_path: `+kubeconfig+`
  client_configuration: {qps: 20, burst: 40, timeout: 10s}
app:
  socket_address: http://0.0.0.0
  socket_port: 4000
offloading:
  namespace_prefix: remote
  namespace_prefix_exclusions: [kube-system]
  node_selector: {pool: gpu}
  node_tolerations: [{key: gpu, operator: Exists, effect: NoSchedule}]
`), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("file", func(t *testing.T) {
		c, err := LoadConfig(file, envOf(nil))
		if err != nil {
			t.Fatal(err)
		}
		want := FileConfig{
			K8s: K8sOptions{KubeconfigPath: kubeconfig, ClientConfiguration: ClientOptions{QPS: 20, Burst: 40, Timeout: Duration{10 * time.Second}}},
			App: AppOptions{SocketAddress: "http://0.0.0.0", SocketPort: 4000, MaxBodyBytes: 16 << 20, LogLevel: "info"},
			Offloading: OffloadingOptions{
				NamespacePrefix: new("remote"), NamespacePrefixExclusions: []string{"kube-system"},
				NodeSelector:        map[string]string{"pool": "gpu"},
				NodeTolerations:     []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
				OrphanSweepInterval: Duration{5 * time.Minute},
			},
			Mesh: MeshOptions{
				Enabled: new(true), AgentImage: DefaultMeshAgentImage, AgentImagePullPolicy: corev1.PullIfNotPresent,
				AgentResources: &corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
				},
				AgentStartupTimeout: Duration{5 * time.Minute}, DNSMode: "local", Mode: "kernel", ClusterDomain: "cluster.local", TunnelNameservers: "auto", TunnelScheme: "auto", Direction: "outbound", InboundPort: 28080,
			},
		}
		want.Path, want.Format = file, FormatYAML
		if diff := cmp.Diff(want, c); diff != "" {
			t.Errorf("config (-want +got):\n%s", diff)
		}
		network, addr, _ := c.App.Listen()
		if network != "tcp" || addr != "0.0.0.0:4000" {
			t.Errorf("listen %s %s", network, addr)
		}
	})

	t.Run("environment overrides the file", func(t *testing.T) {
		c, err := LoadConfig(file, envOf(map[string]string{
			"APP_SOCKET_ADDRESS":           "unix:///tmp/p.sock",
			"OFFLOADING_NAMESPACE_PREFIX":  "other",
			"OFFLOADING_NODE_SELECTOR":     "a=b, c=d",
			"K8S_CLIENT_CONFIGURATION_QPS": "7.5",
		}))
		if err != nil {
			t.Fatal(err)
		}
		if c.App.SocketAddress != "unix:///tmp/p.sock" || c.Offloading.Prefix() != "other" || c.K8s.ClientConfiguration.QPS != 7.5 {
			t.Errorf("overrides not applied: %+v", c)
		}
		if diff := cmp.Diff(map[string]string{"a": "b", "c": "d"}, c.Offloading.NodeSelector); diff != "" {
			t.Errorf("selector (-want +got):\n%s", diff)
		}
	})

	t.Run("mesh options from the file and the environment", func(t *testing.T) {
		ca := pkitest.NewCA(t, "ingress ca")
		caFile := pkitest.Write(t, dir, "tunnel-ca.pem", ca.PEM)
		file := filepath.Join(dir, "mesh.yaml")
		if err := os.WriteFile(file, []byte(`
k8s: {kubeconfig_path: `+kubeconfig+`}
mesh:
  agent_image: registry.example/mesh-agent:v1
  agent_image_pull_policy: Always
  agent_resources: {requests: {cpu: 50m}, limits: {memory: 64Mi}}
  agent_startup_timeout: 2m
  cluster_domain: corp.local
  remote_pod_cidr: 10.244.0.0/16
  tunnel_address: 192.0.2.10:80
  tunnel_nameservers: 10.43.0.10, fd00:43::a
  tunnel_scheme: wss
  tunnel_ca: `+caFile+`
  inbound_ingress_annotations: {cert-manager.io/cluster-issuer: remote}
  inbound_tls: true
`), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(file, envOf(map[string]string{
			"MESH_DNS_MODE":              "remote",
			"MESH_MODE":                  "netstack",
			"MESH_REMOTE_SERVICE_CIDR":   "10.96.0.0/12, fd00:10:96::/112",
			"MESH_DIRECTION":             "inbound",
			"MESH_INBOUND_PORT":          "30000",
			"MESH_INBOUND_INGRESS_CLASS": "traefik",
		}))
		if err != nil {
			t.Fatal(err)
		}
		want := Mesh{
			AgentImage: "registry.example/mesh-agent:v1", AgentImagePullPolicy: corev1.PullAlways,
			AgentResources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
			},
			DNSMode: DNSRemote, Mode: "netstack", ClusterDomain: "corp.local", StartupTimeout: 2 * time.Minute,
			RemotePodCIDRs:     []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
			RemoteServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:10:96::/112")},
			TunnelAddress:      netip.MustParseAddrPort("192.0.2.10:80"),
			TunnelNameservers:  []netip.Addr{netip.MustParseAddr("10.43.0.10"), netip.MustParseAddr("fd00:43::a")},
			TunnelTLS:          true,
			TunnelCA:           ca.PEM,
			Direction:          DirectionInbound, InboundPort: 30000, InboundIngressClass: "traefik", InboundTLS: true,
			InboundIngressAnnotations: map[string]string{"cert-manager.io/cluster-issuer": "remote"},
		}
		if diff := cmp.Diff(want, c.MeshConfig(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("mesh (-want +got):\n%s", diff)
		}
		c, err = LoadConfig(file, envOf(map[string]string{"MESH_ENABLED": "false"}))
		if err != nil || !c.MeshConfig().Disabled {
			t.Errorf("MESH_ENABLED=false: disabled=%v, %v", c.MeshConfig().Disabled, err)
		}
	})

	t.Run("no file at all", func(t *testing.T) {
		c, err := LoadConfig("", envOf(map[string]string{"K8S_KUBECONFIG_PATH": kubeconfig}))
		if err != nil {
			t.Fatal(err)
		}
		if network, addr, _ := c.App.Listen(); network != "unix" || addr != "/var/run/.plugin.sock" {
			t.Errorf("default listen %s %s", network, addr)
		}
	})
}

func TestLoadConfigErrorsNameTheOption(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		env    map[string]string
		option string
	}{
		{"unknown option", "app:\n  socket_adress: x\n", nil, "socket_adress"},
		{"bad socket scheme", "", map[string]string{"APP_SOCKET_ADDRESS": "tcp://x"}, "app.socket_address"},
		{"http without port", "", map[string]string{"APP_SOCKET_ADDRESS": "http://0.0.0.0"}, "app.socket_address"},
		{"port not a number", "", map[string]string{"APP_SOCKET_PORT": "eighty"}, "app.socket_port"},
		{"missing kubeconfig", "", map[string]string{"K8S_KUBECONFIG_PATH": "/does/not/exist"}, "k8s.kubeconfig_path"},
		{"bad prefix", "", map[string]string{"OFFLOADING_NAMESPACE_PREFIX": "Not_Valid"}, "offloading.namespace_prefix"},
		{"bad selector", "", map[string]string{"OFFLOADING_NODE_SELECTOR": "novalue"}, "offloading.node_selector"},
		{"bad toleration effect", "offloading:\n  node_tolerations: [{key: a, effect: Sometimes}]\n", nil, "offloading.node_tolerations"},
		{"local in cluster not a bool", "", map[string]string{"OFFLOADING_LOCAL_IN_CLUSTER": "yes please"}, "offloading.local_in_cluster"},
		{"local in cluster without a remote kubeconfig", "", map[string]string{"OFFLOADING_LOCAL_IN_CLUSTER": "true"}, "offloading.local_in_cluster"},
		{"bad shadow leftovers mode", "offloading:\n  shadow_leftovers: sometimes\n", nil, "offloading.shadow_leftovers"},
		{"bad log level", "", map[string]string{"APP_LOG_LEVEL": "loud"}, "app.log_level"},
		{"bad duration", "", map[string]string{"K8S_CLIENT_CONFIGURATION_TIMEOUT": "10"}, "k8s.client_configuration.timeout"},
		{"mesh enabled not a bool", "", map[string]string{"MESH_ENABLED": "maybe"}, "mesh.enabled"},
		{"bad pull policy", "", map[string]string{"MESH_AGENT_IMAGE_PULL_POLICY": "Sometimes"}, "mesh.agent_image_pull_policy"},
		{"bad image", "mesh:\n  agent_image: \"a b\"\n", nil, "mesh.agent_image"},
		{"resources not JSON", "", map[string]string{"MESH_AGENT_RESOURCES": "cpu=1"}, "mesh.agent_resources"},
		{"request above limit", "", map[string]string{"MESH_AGENT_RESOURCES": `{"requests":{"memory":"1Gi"},"limits":{"memory":"64Mi"}}`}, "mesh.agent_resources"},
		{"startup timeout too short", "", map[string]string{"MESH_AGENT_STARTUP_TIMEOUT": "500ms"}, "mesh.agent_startup_timeout"},
		{"bad dns mode", "", map[string]string{"MESH_DNS_MODE": "cluster"}, "mesh.dns_mode"},
		{"bad mode", "", map[string]string{"MESH_MODE": "userspace"}, "mesh.mode"},
		{"bad cluster domain", "", map[string]string{"MESH_CLUSTER_DOMAIN": "Not_A_Domain"}, "mesh.cluster_domain"},
		{"bad pod cidr", "", map[string]string{"MESH_REMOTE_POD_CIDR": "10.244.0.0"}, "mesh.remote_pod_cidr"},
		{"service cidr with host bits", "", map[string]string{"MESH_REMOTE_SERVICE_CIDR": "10.96.0.1/12"}, "mesh.remote_service_cidr"},
		{"tunnel address without a port", "", map[string]string{"MESH_TUNNEL_ADDRESS": "192.0.2.10"}, "mesh.tunnel_address"},
		{"tunnel nameserver not an address", "", map[string]string{"MESH_TUNNEL_NAMESERVERS": "10.43.0.10, kube-dns"}, "mesh.tunnel_nameservers"},
		{"too many tunnel nameservers", "", map[string]string{"MESH_TUNNEL_NAMESERVERS": "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4"}, "mesh.tunnel_nameservers"},
	}
	dir := t.TempDir()
	notPEM := pkitest.Write(t, dir, "not.pem", []byte("not a certificate\n"))
	keyPEM := pkitest.Write(t, dir, "key.pem", pkitest.NewCA(t, "ca").Issue(t, pkitest.LeafSpec{Name: "x"}).KeyPEM)
	tests = append(tests, []struct {
		name   string
		file   string
		env    map[string]string
		option string
	}{
		{"tunnel scheme ws", "", map[string]string{"MESH_TUNNEL_SCHEME": "ws"}, "mesh.tunnel_scheme"},
		{"local cluster twice", "offloading:\n  local_in_cluster: true\n  local_kubeconfig_path: " + notPEM + "\n", nil, "offloading.local_in_cluster"},
		{"tunnel CA missing", "", map[string]string{"MESH_TUNNEL_CA": filepath.Join(dir, "absent.pem")}, "mesh.tunnel_ca"},
		{"tunnel CA not PEM", "", map[string]string{"MESH_TUNNEL_CA": notPEM}, "mesh.tunnel_ca"},
		{"tunnel CA holds a key", "", map[string]string{"MESH_TUNNEL_CA": keyPEM}, "mesh.tunnel_ca"},
		{"direction both", "", map[string]string{"MESH_DIRECTION": "both"}, "mesh.direction"},
		{"inbound port out of range", "", map[string]string{"MESH_INBOUND_PORT": "70000"}, "mesh.inbound_port"},
		{"inbound port is the sidecar's health port", "", map[string]string{"MESH_INBOUND_PORT": "9101"}, "mesh.inbound_port"},
		{"inbound ingress class not a name", "", map[string]string{"MESH_INBOUND_INGRESS_CLASS": "Traefik!"}, "mesh.inbound_ingress_class"},
		{"inbound annotation key not a name", "mesh:\n  inbound_ingress_annotations: {\"bad key\": x}\n", nil, "mesh.inbound_ingress_annotations"},
	}...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = filepath.Join(t.TempDir(), "c.yaml")
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := LoadConfig(path, envOf(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.option) {
				t.Errorf("error %v does not name %s", err, tt.option)
			}
		})
	}
}
