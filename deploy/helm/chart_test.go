package helm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/goldentest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

const chart = "interlink-k8s-plugin"

// helm runs the Helm built from source with args; it returns stdout, and stderr in the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testcluster.Tool(t, "helm"), args...)
	// No repository, cache or config of the machine's: the test's own.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &helmError{err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

type helmError struct {
	err    error
	stderr string
}

func (e *helmError) Error() string { return e.err.Error() + ": " + e.stderr }

func TestLint(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"defaults", nil},
		{"remote kubeconfig", []string{"--set", "remoteKubeconfig.secretName=remote", "--set", "rbac.create=false"}},
		{"netstack, tag, scheduling", []string{"--set", "config.mesh.mode=netstack", "--set", "image.tag=v1.2.3",
			"--set", "nodeSelector.zone=a", "--set", "podAnnotations.team=x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helm(t, append([]string{"lint", "--strict", chart}, tc.args...)...)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			if !strings.Contains(out, "0 chart(s) failed") {
				t.Errorf("helm lint:\n%s", out)
			}
		})
	}
}

// TestTemplateGolden renders the chart as `helm template` does and holds it against
// testdata/*.golden (-update rewrites them).
func TestTemplateGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"remote-kubeconfig", []string{"--set", "remoteKubeconfig.secretName=remote", "--set", "extraCA.configMapName=corp-ca", "--set", "image.tag=v1.2.3",
			"--set", "config.mesh.mode=netstack", "--set", "tolerations[0].key=dedicated", "--set", "tolerations[0].operator=Exists"}},
		// At the remote site, reached by an InterLink API server elsewhere through the site's ingress.
		{"remote-site", []string{"--set", "ingress.enabled=true", "--set", "ingress.className=traefik", "--set", "ingress.host=plugin.site.example.org",
			"--set", "ingress.tlsSecretName=plugin-tls", "--set", "ingress.annotations.traefik\\.ingress\\.kubernetes\\.io/router\\.middlewares=interlink-plugin-allowlist@kubernetescrd",
			"--set", "env[0].name=HTTPS_PROXY", "--set", "env[0].value=http://proxy.example.org:3128"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := helm(t, append([]string{"template", chart, chart, "--namespace", "interlink"}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".golden")
			goldentest.Check(t, path, []byte(got))
		})
	}
}

// TestSchema: values the schema refuses fail the render with a message naming them.
func TestSchema(t *testing.T) {
	for _, tc := range []struct {
		name, set, want string
	}{
		{"unknown value", "imag.tag=x", "imag"},
		{"pull policy", "image.pullPolicy=Sometimes", "pullPolicy"},
		{"mesh mode", "config.mesh.mode=fast", "mode"},
		{"port", "service.port=70000", "port"},
		{"ingress without host", "ingress.enabled=true", "host"},
		{"env without name", "env[0].value=x", "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helm(t, "template", chart, chart, "--set", tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "schema") {
				t.Errorf("--set %s: %v, want a schema error naming %s", tc.set, err, tc.want)
			}
		})
	}
}

// TestChartMatchesManifests: with its defaults, the chart renders the objects of
// manifests/plugin.yaml (but its Namespace, which `helm install --create-namespace` makes), apart
// from what Helm adds: its labels, the selector's instance label and the configuration's checksum.
func TestChartMatchesManifests(t *testing.T) {
	rendered, err := helm(t, "template", chart, chart, "--namespace", "interlink")
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join("..", "..", "manifests", "plugin.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, want := objects(t, rendered), objects(t, string(manifest))
	delete(want, "Namespace/interlink")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chart against manifests/plugin.yaml (-manifest +chart):\n%s", diff)
	}
}

// objects parses a YAML stream into normalized objects by "Kind/name".
func objects(t *testing.T, stream string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range strings.Split(stream, "\n---") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("parse %q: %v", doc, err)
		}
		if len(o) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: o}
		normalize(u)
		out[u.GetKind()+"/"+u.GetName()] = u.Object
	}
	return out
}

var helmLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"}

func normalize(u *unstructured.Unstructured) {
	strip := func(fields ...string) {
		m, ok, _ := unstructured.NestedStringMap(u.Object, fields...)
		if !ok {
			return
		}
		for _, l := range helmLabels {
			delete(m, l)
		}
		_ = unstructured.SetNestedStringMap(u.Object, m, fields...)
	}
	strip("metadata", "labels")
	strip("spec", "selector")
	strip("spec", "selector", "matchLabels")
	strip("spec", "template", "metadata", "labels")
	if a, ok, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "metadata", "annotations"); ok {
		delete(a, "checksum/config")
		if len(a) == 0 {
			unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "annotations")
		} else {
			_ = unstructured.SetNestedStringMap(u.Object, a, "spec", "template", "metadata", "annotations")
		}
	}
	// The configuration file compared as data, not as text (comments, key order).
	if text, ok, _ := unstructured.NestedString(u.Object, "data", "plugin.yaml"); ok {
		var cfg any
		if err := yaml.Unmarshal([]byte(text), &cfg); err == nil {
			_ = unstructured.SetNestedField(u.Object, cfg, "data", "plugin.yaml")
		}
	}
}

// interLinkChart is InterLink's own chart: INTERLINK_CHART_DIR, else the copy beside the
// repository (../shared/interlink-helm-chart/interlink).
func interLinkChart(t *testing.T) string {
	dir := os.Getenv("INTERLINK_CHART_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "interlink-helm-chart", "interlink")
	}
	if _, err := os.Stat(filepath.Join(dir, "Chart.yaml")); err != nil {
		t.Skipf("skipping: InterLink's chart not found (set INTERLINK_CHART_DIR): %v", err)
	}
	return dir
}

// TestInterLinkValues renders InterLink's own chart with interlink-values.yaml, as docs/install.md
// says: one pod runs the VK, InterLink's API server and this plugin, the plugin on the socket the
// API server is told, with the remote kubeconfig mounted where its configuration looks, the
// project's shadow template and mesh script where the VK reads them; the plugin's configuration
// loads.
func TestInterLinkValues(t *testing.T) {
	out, err := helm(t, "template", "interlink", interLinkChart(t), "--namespace", "interlink", "-f", "interlink-values.yaml",
		"--set-file", "virtualNode.network.customTemplate=../../manifests/shadow-pod.tmpl",
		"--set", "virtualNode.network.wildcardDNS=mesh.example.org")
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string]*unstructured.Unstructured{}
	for _, doc := range strings.Split(out, "\n---") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil || len(o) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: o}
		objs[u.GetKind()+"/"+u.GetName()] = u
	}
	data := func(name, key string) string {
		t.Helper()
		cm := objs["ConfigMap/"+name]
		if cm == nil {
			t.Fatalf("no ConfigMap %s among %d objects", name, len(objs))
		}
		v, _, _ := unstructured.NestedString(cm.Object, "data", key)
		return v
	}
	if il := data("interlink-k8s-interlink-config", "InterLinkConfig.yaml"); !strings.Contains(il, `SidecarURL: "unix:///var/run/plugin.sock"`) {
		t.Errorf("the API server is not sent to the plugin's socket:\n%s", il)
	}
	vk := data("interlink-k8s-virtual-kubelet-config", "InterLinkConfig.yaml")
	for _, want := range []string{"FullMesh: true", `MeshScriptTemplatePath: "/etc/interlink/custom-mesh.sh"`, `WildcardDNS: "mesh.example.org"`} {
		if !strings.Contains(vk, want) {
			t.Errorf("VK configuration lacks %s:\n%s", want, vk)
		}
	}
	tmpl, err := os.ReadFile(filepath.Join("..", "..", "manifests", "shadow-pod.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	if got := data("interlink-k8s-wstunnel-template", "wstunnel.yaml"); strings.TrimSpace(got) != strings.TrimSpace(string(tmpl)) {
		t.Errorf("the VK's shadow template is not manifests/shadow-pod.tmpl (%d bytes, want %d)", len(got), len(tmpl))
	}

	// The plugin's configuration, as the container reads it, loads; the mounted kubeconfig stands
	// in a temporary file.
	const mounted = "/etc/interlink/remote/kubeconfig"
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := data("interlink-k8s-plugin-config", "plugin.yaml")
	if !strings.Contains(text, "kubeconfig_path: "+mounted) {
		t.Errorf("the plugin's configuration does not read the kubeconfig at %s:\n%s", mounted, text)
	}
	cfgPath := filepath.Join(dir, "plugin.yaml")
	if err := os.WriteFile(cfgPath, []byte(strings.ReplaceAll(text, mounted, kc)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := plugin.LoadConfig(cfgPath, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("the plugin's configuration does not load: %v", err)
	}
	if cfg.App.SocketAddress != "unix:///var/run/plugin.sock" {
		t.Errorf("plugin listens on %q", cfg.App.SocketAddress)
	}

	dep := objs["Deployment/interlink-k8s-node"]
	if dep == nil {
		t.Fatal("no Deployment interlink-k8s-node")
	}
	var pod struct {
		Containers []struct {
			Name, Image  string
			Args         []string
			VolumeMounts []struct{ Name, MountPath string } `json:"volumeMounts"`
		}
		Volumes []struct {
			Name   string
			Secret *struct{ SecretName string } `json:"secret"`
		}
	}
	spec, _, _ := unstructured.NestedMap(dep.Object, "spec", "template", "spec")
	b, _ := yaml.Marshal(spec)
	if err := yaml.Unmarshal(b, &pod); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range pod.Containers {
		names = append(names, c.Name)
		if c.Name != "plugin" {
			continue
		}
		if c.Image != "ghcr.io/interlink-k8s-mesh/interlink-k8s-plugin:latest" || !cmp.Equal(c.Args, []string{"--config=/etc/interlink/plugin.yaml"}) {
			t.Errorf("plugin container runs %s %v", c.Image, c.Args)
		}
		mounts := map[string]string{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m.Name
		}
		if mounts["/etc/interlink/remote"] != "interlink-k8s-remote" || mounts["/var/run/"] != "sockets" {
			t.Errorf("plugin container mounts %v, want the remote kubeconfig and the sockets", mounts)
		}
	}
	if !cmp.Equal(names, []string{"plugin", "interlink", "vk"}) {
		t.Errorf("the pod's containers are %v, want plugin, interlink, vk", names)
	}
	found := false
	for _, v := range pod.Volumes {
		found = found || v.Name == "interlink-k8s-remote" && v.Secret != nil && v.Secret.SecretName == "interlink-k8s-remote"
	}
	if !found {
		t.Error("no volume of the Secret interlink-k8s-remote")
	}
}

// TestInterLinkRemotePluginValues renders InterLink's chart with interlink-values.yaml and
// interlink-remote-plugin.yaml over it, as docs/install.md says for the plugin at the remote
// site: the pod holds the VK and the API server alone, the API server dials the endpoint given,
// and nothing of the remote kubeconfig or the plugin's socket is left in it.
func TestInterLinkRemotePluginValues(t *testing.T) {
	out, err := helm(t, "template", "interlink", interLinkChart(t), "--namespace", "interlink",
		"-f", "interlink-values.yaml", "-f", "interlink-remote-plugin.yaml",
		"--set", "interlink.pluginEndpoint.url=http://plugin.site.example.org",
		"--set-file", "virtualNode.network.customTemplate=../../manifests/shadow-pod.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `SidecarURL: "http://plugin.site.example.org"`) || !strings.Contains(out, `SidecarPort: "80"`) {
		t.Errorf("the API server is not sent to the plugin's endpoint:\n%s", out)
	}
	for _, unwanted := range []string{"plugin.sock", "interlink-k8s-remote", "interlink-k8s-plugin:", "plugin.yaml"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("the rendering still names %q", unwanted)
		}
	}
	var containers []string
	for _, doc := range strings.Split(out, "\n---") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil || len(o) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: o}
		if u.GetKind() != "Deployment" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		for _, c := range cs {
			containers = append(containers, c.(map[string]any)["name"].(string))
		}
	}
	if !cmp.Equal(containers, []string{"interlink", "vk"}) {
		t.Errorf("the pod's containers are %v, want interlink, vk", containers)
	}
}

// TestChartInboundMatchesManifests: rbac.inbound adds exactly the objects of
// manifests/plugin-inbound-rbac.yaml to the default rendering.
func TestChartInboundMatchesManifests(t *testing.T) {
	plain, err := helm(t, "template", chart, chart, "--namespace", "interlink")
	if err != nil {
		t.Fatal(err)
	}
	inbound, err := helm(t, "template", chart, chart, "--namespace", "interlink", "--set", "rbac.inbound=true")
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join("..", "..", "manifests", "plugin-inbound-rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := objects(t, inbound)
	for k := range objects(t, plain) {
		delete(got, k)
	}
	if diff := cmp.Diff(objects(t, string(manifest)), got); diff != "" {
		t.Errorf("rbac.inbound against manifests/plugin-inbound-rbac.yaml (-manifest +chart):\n%s", diff)
	}
}
