package plugin

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func noticeKeys(c FileConfig, level slog.Level) []string {
	var out []string
	for _, n := range c.Notices {
		if n.Level == level {
			out = append(out, n.Option)
		}
	}
	slices.Sort(out)
	return out
}

// The Python plugin's own sample, unchanged, in a working directory laid out as its image's.
func TestLoadConfigPythonSample(t *testing.T) {
	sample, err := os.ReadFile("testdata/python-plugin/config.sample.ini")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	writeFile(t, "private/config.ini", string(sample))
	writeFile(t, "private/k8s/kubeconfig.yaml", "apiVersion: v1\nkind: Config\n")

	c, err := LoadConfig("", envOf(nil)) // no --config, no CONFIG_FILE_PATH: private/config.ini
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != DefaultConfigPath || c.Format != FormatINI {
		t.Errorf("read %q as %q, want %s as ini", c.Path, c.Format, DefaultConfigPath)
	}
	got := []string{c.K8s.KubeconfigPath, c.App.SocketAddress, c.App.LogLevel, c.App.APIDocsPath, c.Offloading.Prefix()}
	want := []string{"private/k8s/kubeconfig.yaml", "unix:///var/run/.plugin.sock", "debug", "/docs", "offloading"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kubeconfig, socket, log level, docs path, prefix (-want +got):\n%s", diff)
	}
	if network, addr, _ := c.App.Listen(); network != "unix" || addr != "/var/run/.plugin.sock" {
		t.Errorf("listen %s %s", network, addr)
	}
	if diff := cmp.Diff([]string{"app.api_versions", "app.description", "app.name", "app.version"}, noticeKeys(c, slog.LevelInfo)); diff != "" {
		t.Errorf("info notices (-want +got):\n%s", diff)
	}
	wantWarn := []string{"log.requests_enabled", "log.rich_enabled", "mesh.init_container", "mesh.slurm_setup_script", "mesh.startup_probe",
		"tcp_tunnel.bastion_chart_path", "tcp_tunnel.bastion_namespace", "tcp_tunnel.enabled", "tcp_tunnel.gateway_host", "tcp_tunnel.gateway_port", "tcp_tunnel.gateway_ssh_private_key"}
	if diff := cmp.Diff(wantWarn, noticeKeys(c, slog.LevelWarn)); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	for _, n := range c.Notices {
		if n.Message == "" {
			t.Errorf("notice of %s says nothing", n.Option)
		}
	}
}

func TestLoadConfigINI(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := writeFile(t, filepath.Join(dir, "kube.yaml"), "apiVersion: v1\nkind: Config\n")
	ca := writeFile(t, filepath.Join(dir, "ca.crt"), "x")
	crt := writeFile(t, filepath.Join(dir, "client.crt"), "x")
	key := writeFile(t, filepath.Join(dir, "client.key"), "x")
	file := writeFile(t, filepath.Join(dir, "plugin.conf"), `# no .ini extension: told by its first header
[app]
socket_address=http://0.0.0.0
socket_port=4000
max_body_bytes=2048
[log]
level=WARNING
dir=/data/logs
[k8s]
kubeconfig_path=`+kubeconfig+`
client_configuration={"verify_ssl": false, "ssl_ca_cert": "`+ca+`", "cert_file": "`+crt+`",
    "key_file": "`+key+`", "qps": 20, "burst": 40, "timeout": "10s", "proxy": "http://proxy:3128"}
[offloading]
namespace_prefix_exclusions=["kube-system", "shared"]
node_selector={"nvidia/gpu-model": "T4"}
node_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute", "toleration_seconds": 30}]
orphan_sweep_interval=1m
[mesh]
agent_image=registry.example/mesh-agent:v1
dns_mode=remote
[misc]
typo=1
`)
	c, err := LoadConfig(file, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := FileConfig{
		K8s: K8sOptions{KubeconfigPath: kubeconfig, ClientConfiguration: ClientOptions{
			VerifySSL: new(false), SSLCACert: ca, CertFile: crt, KeyFile: key, QPS: 20, Burst: 40, Timeout: Duration{10 * time.Second}}},
		App: AppOptions{SocketAddress: "http://0.0.0.0", SocketPort: 4000, MaxBodyBytes: 2048, LogLevel: "warn"},
		Offloading: OffloadingOptions{
			NamespacePrefix: new(""), NamespacePrefixExclusions: []string{"kube-system", "shared"},
			NodeSelector:        map[string]string{"nvidia/gpu-model": "T4"},
			NodeTolerations:     []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64(30))}},
			OrphanSweepInterval: Duration{time.Minute},
		},
	}
	got := c
	got.Mesh, got.Notices, got.Path, got.Format = MeshOptions{}, nil, "", ""
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	if c.Mesh.AgentImage != "registry.example/mesh-agent:v1" || c.Mesh.DNSMode != "remote" || c.Format != FormatINI {
		t.Errorf("mesh %+v format %q", c.Mesh, c.Format)
	}
	if diff := cmp.Diff([]string{"k8s.client_configuration.proxy", "log.dir", "misc.typo"}, noticeKeys(c, slog.LevelWarn)); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestLoadConfigPythonEnvironment(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := writeFile(t, filepath.Join(dir, "kube.yaml"), "apiVersion: v1\nkind: Config\n")
	yamlFile := writeFile(t, filepath.Join(dir, "c.yaml"), "k8s: {kubeconfig_path: "+kubeconfig+"}\noffloading: {namespace_prefix: remote}\n")

	t.Run("empty prefix in the environment means none", func(t *testing.T) {
		c, err := LoadConfig(yamlFile, envOf(map[string]string{"OFFLOADING_NAMESPACE_PREFIX": ""}))
		if err != nil || c.Offloading.Prefix() != "" {
			t.Errorf("prefix %q, %v", c.Offloading.Prefix(), err)
		}
	})
	t.Run("an unset prefix is offloading, and says so without a file", func(t *testing.T) {
		c, err := LoadConfig("", envOf(map[string]string{"K8S_KUBECONFIG_PATH": kubeconfig}))
		if err != nil || c.Offloading.Prefix() != "offloading" {
			t.Fatalf("prefix %q, %v", c.Offloading.Prefix(), err)
		}
		if !slices.Contains(noticeKeys(c, slog.LevelInfo), "offloading.namespace_prefix") {
			t.Errorf("no notice about the default prefix: %+v", c.Notices)
		}
	})
	t.Run("the Python names and JSON values", func(t *testing.T) {
		c, err := LoadConfig(yamlFile, envOf(map[string]string{
			"K8S_CLIENT_CONFIGURATION":               `{"verify_ssl": false, "qps": 5}`,
			"K8S_CLIENT_CONFIGURATION_BURST":         "9",
			"OFFLOADING_NAMESPACE_PREFIX_EXCLUSIONS": `["kube-system"]`,
			"OFFLOADING_NODE_TOLERATIONS":            `[{"key": "a", "operator": "Exists", "toleration_seconds": 5}]`,
			"LOG_LEVEL":                              "ERROR",
			"APP_API_DOCS_PATH":                      "/api/docs",
			"TCP_TUNNEL_ENABLED":                     "True",
			"TCP_TUNNEL_GATEWAY_SSH_PRIVATE_KEY":     "secret-key-material",
			"MESH_INIT_CONTAINER":                    "False",
		}))
		if err != nil {
			t.Fatal(err)
		}
		cc := c.K8s.ClientConfiguration
		if cc.VerifySSL == nil || *cc.VerifySSL || cc.QPS != 5 || cc.Burst != 9 {
			t.Errorf("client configuration %+v", cc)
		}
		if c.App.LogLevel != "error" || c.App.APIDocsPath != "/api/docs" || !slices.Equal(c.Offloading.NamespacePrefixExclusions, []string{"kube-system"}) {
			t.Errorf("log level %q docs %q exclusions %q", c.App.LogLevel, c.App.APIDocsPath, c.Offloading.NamespacePrefixExclusions)
		}
		if ts := c.Offloading.NodeTolerations; len(ts) != 1 || ts[0].TolerationSeconds == nil || *ts[0].TolerationSeconds != 5 {
			t.Errorf("tolerations %+v", ts)
		}
		if diff := cmp.Diff([]string{"mesh.init_container", "tcp_tunnel.enabled", "tcp_tunnel.gateway_ssh_private_key"}, noticeKeys(c, slog.LevelWarn)); diff != "" {
			t.Errorf("warnings (-want +got):\n%s", diff)
		}
		for _, n := range c.Notices {
			if strings.Contains(n.Message, "secret-key-material") {
				t.Errorf("a notice repeats a value: %+v", n)
			}
		}
	})
	t.Run("our name wins over the Python one", func(t *testing.T) {
		c, err := LoadConfig(yamlFile, envOf(map[string]string{"LOG_LEVEL": "ERROR", "APP_LOG_LEVEL": "debug"}))
		if err != nil || c.App.LogLevel != "debug" {
			t.Errorf("log level %q, %v", c.App.LogLevel, err)
		}
	})
}

func TestLoadConfigINIKubeconfigAsPython(t *testing.T) {
	t.Chdir(t.TempDir())
	inline := `{"apiVersion":"v1","kind":"Config","clusters":[],"contexts":[],"users":[]}`
	load := func(t *testing.T, ini string, env map[string]string) FileConfig {
		t.Helper()
		c, err := LoadConfig(writeFile(t, "c.ini", ini), envOf(env))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Run("a path that does not exist gives way to the inline kubeconfig", func(t *testing.T) {
		c := load(t, "[k8s]\nkubeconfig_path=private/k8s/kubeconfig.yaml\n", map[string]string{"K8S_KUBECONFIG": inline})
		if c.K8s.KubeconfigPath != "" || c.K8s.Kubeconfig != inline {
			t.Errorf("path %q inline %q", c.K8s.KubeconfigPath, c.K8s.Kubeconfig)
		}
	})
	writeFile(t, pythonKubeconfigPath, "apiVersion: v1\nkind: Config\n")
	t.Run("an existing path wins over the inline kubeconfig", func(t *testing.T) {
		c := load(t, "[k8s]\nkubeconfig="+inline+"\n", nil)
		if c.K8s.KubeconfigPath != pythonKubeconfigPath || c.K8s.Kubeconfig != "" {
			t.Errorf("path %q inline %q", c.K8s.KubeconfigPath, c.K8s.Kubeconfig)
		}
	})
	t.Run("the default path", func(t *testing.T) {
		c := load(t, "[app]\n", nil)
		if c.K8s.KubeconfigPath != pythonKubeconfigPath {
			t.Errorf("path %q", c.K8s.KubeconfigPath)
		}
	})
}

func TestLoadConfigINIErrorsNameTheOption(t *testing.T) {
	tests := []struct{ name, ini, option string }{
		{"syntax", "[app]\nsocket_port\n", "line 2"},
		{"selector not JSON", "[offloading]\nnode_selector={nvidia: T4}\n", "offloading.node_selector"},
		{"exclusions not a list of strings", "[offloading]\nnamespace_prefix_exclusions=[1]\n", "offloading.namespace_prefix_exclusions"},
		{"unknown toleration key", `[offloading]` + "\n" + `node_tolerations=[{"key": "a", "tolerations_seconds": 5}]` + "\n", "offloading.node_tolerations"},
		{"verify_ssl a string", `[k8s]` + "\n" + `client_configuration={"verify_ssl": "no"}` + "\n", "k8s.client_configuration"},
		{"client configuration not an object", "[k8s]\nclient_configuration=[]\n", "k8s.client_configuration"},
		{"missing CA file", `[k8s]` + "\n" + `client_configuration={"ssl_ca_cert": "/does/not/exist"}` + "\n", "k8s.client_configuration.ssl_ca_cert"},
		{"cert without key", "[k8s]\nclient_configuration={\"cert_file\": \"c.ini\"}\n", "k8s.client_configuration.cert_file"},
		{"log level", "[log]\nlevel=LOUD\n", "log.level"},
		{"bad reference", "[offloading]\nnamespace_prefix=%(nope)s\n", "offloading.namespace_prefix"},
		{"bad prefix", "[offloading]\nnamespace_prefix=Not_Valid\n", "offloading.namespace_prefix"},
		{"docs on an API route", "[app]\napi_docs_path=/status\n", "app.api_docs_path"},
	}
	t.Chdir(t.TempDir())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(writeFile(t, "c.ini", tt.ini), envOf(nil))
			if err == nil || !strings.Contains(err.Error(), tt.option) {
				t.Errorf("error %v does not name %s", err, tt.option)
			}
		})
	}
}

// reach gets the default namespace with the client c configures.
func reach(t *testing.T, c FileConfig) error {
	t.Helper()
	rc, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	k, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{})
	return err
}

// The Python client's TLS options against the real apiserver: a kubeconfig naming only the
// server works once client_configuration gives the CA and the client certificate.
func TestClientConfigurationTLS(t *testing.T) {
	cl := testcluster.Get(t)
	tls := cl.Config.TLSClientConfig
	if tls.CAFile == "" || tls.CertFile == "" || tls.KeyFile == "" {
		t.Skip("the test cluster's kubeconfig does not name its CA and client certificate files")
	}
	bare := writeFile(t, filepath.Join(t.TempDir(), "bare.yaml"), `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+cl.Config.Host+`"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {}}]
current-context: c
`)
	client := func(t *testing.T, clientJSON string) error {
		t.Helper()
		env := map[string]string{"K8S_KUBECONFIG_PATH": bare}
		if clientJSON != "" {
			env["K8S_CLIENT_CONFIGURATION"] = clientJSON
		}
		c, err := LoadConfig("", envOf(env))
		if err != nil {
			t.Fatal(err)
		}
		return reach(t, c)
	}
	files := `"cert_file": "` + tls.CertFile + `", "key_file": "` + tls.KeyFile + `"`
	tests := []struct {
		name, json string
		ok         bool
		errPart    string
	}{
		{"nothing: the server's certificate is unknown", "", false, "certificate"},
		{"CA and client certificate", `{"ssl_ca_cert": "` + tls.CAFile + `", ` + files + `}`, true, ""},
		{"verify_ssl false and client certificate", `{"verify_ssl": false, ` + files + `}`, true, ""},
		{"verify_ssl false alone: anonymous", `{"verify_ssl": false}`, false, "forbidden"},
		{"CA alone: anonymous", `{"ssl_ca_cert": "` + tls.CAFile + `"}`, false, "forbidden"},
	}
	t.Run("YAML file with the same keys", func(t *testing.T) {
		file := writeFile(t, filepath.Join(t.TempDir(), "c.yaml"), "k8s:\n  kubeconfig_path: "+bare+
			"\n  client_configuration: {ssl_ca_cert: "+tls.CAFile+", cert_file: "+tls.CertFile+", key_file: "+tls.KeyFile+"}\n")
		c, err := LoadConfig(file, envOf(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := reach(t, c); err != nil {
			t.Fatalf("get namespace: %v", err)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := client(t, tt.json)
			if tt.ok && err != nil {
				t.Fatalf("get namespace: %v", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(strings.ToLower(err.Error()), tt.errPart)) {
				t.Fatalf("error %v, want one about %q", err, tt.errPart)
			}
		})
	}
}

// The inline kubeconfig as the Python plugin takes it: one JSON object, in the INI file or in
// K8S_KUBECONFIG, reaching the real apiserver.
func TestInlineKubeconfigJSON(t *testing.T) {
	cl := testcluster.Get(t)
	y, err := os.ReadFile(cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(j) || strings.Contains(string(j), "\n") {
		t.Fatalf("not one line of JSON: %s", j)
	}
	t.Chdir(t.TempDir()) // no private/k8s/kubeconfig.yaml here
	for name, load := range map[string]func() (FileConfig, error){
		"INI file": func() (FileConfig, error) {
			return LoadConfig(writeFile(t, "c.ini", "[k8s]\nkubeconfig="+string(j)+"\n"), envOf(nil))
		},
		"environment": func() (FileConfig, error) {
			return LoadConfig("", envOf(map[string]string{"K8S_KUBECONFIG": string(j)}))
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := load()
			if err != nil {
				t.Fatal(err)
			}
			if c.K8s.KubeconfigPath != "" || c.K8s.Kubeconfig != string(j) {
				t.Fatalf("path %q, inline %d bytes", c.K8s.KubeconfigPath, len(c.K8s.Kubeconfig))
			}
			if err := reach(t, c); err != nil {
				t.Fatalf("get namespace through the inline kubeconfig: %v", err)
			}
		})
	}
}
