package manifests

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/goldentest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m) }

// exposedPort is the shape of the VK's ExposedPorts entries.
type exposedPort struct {
	Port     int32
	Name     string
	Protocol string
}

// shadowData has the field names the VK gives a WstunnelTemplatePath template.
type shadowData struct {
	Name, Namespace, RandomPassword, WGPrivateKey, ClientPublicKey, WildcardDNS string
	ExposedPorts                                                                []exposedPort
}

// meshData has the field names and types of the VK's MeshScriptTemplateData
// (interlink-hq/interLink pkg/virtualkubelet/mesh.go, commit 0675fb5c). A template that names a
// field the VK does not have fails at render time, so this struct holds exactly those fields.
type meshData struct {
	WGInterfaceName, WSTunnelExecutableURL, WireguardGoURL, WgToolURL, Slirp4netnsURL string
	WGConfig, DNSServiceIP, RandomPassword, IngressEndpoint                           string
	WGMTU                                                                             int
	PodCIDRCluster, ServiceCIDR, UnshareMode                                          string
}

// vkWGConfig formats .WGConfig as the VK does: client private key, server public key.
func vkWGConfig(clientPriv, serverPub, podCIDR, svcCIDR string, keepalive int) string {
	return fmt.Sprintf("[Interface]\nPrivateKey = %s\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.7.0.1/32,10.0.0.0/8,%s,%s\nEndpoint = 127.0.0.1:51821\nPersistentKeepalive = %d\n",
		clientPriv, serverPub, podCIDR, svcCIDR, keepalive)
}

// vkSnippet formats the interlink.eu/wireguard-client-snippet annotation as the VK does.
func vkSnippet(clientPriv, serverPub string, mtu, keepalive int) string {
	return fmt.Sprintf("\n[Interface]\nAddress = 10.7.0.2/32\nPrivateKey = %s\nDNS = 1.1.1.1\nMTU = %d\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.7.0.1/32, 10.0.0.0/8\nEndpoint = 127.0.0.1:51821\nPersistentKeepalive = %d\n\t\t",
		clientPriv, mtu, serverPub, keepalive)
}

// keyPair returns a fresh private key and its public key, base64.
func keyPair(t *testing.T) (priv, pub string) {
	t.Helper()
	k, err := meshspec.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pk := k.PublicKey()
	return base64.StdEncoding.EncodeToString(k[:]), base64.StdEncoding.EncodeToString(pk[:])
}

func render(t *testing.T, file string, data any) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New(file).Option("missingkey=error").Parse(string(b))
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, data); err != nil {
		t.Fatalf("render %s: %v", file, err)
	}
	return out.String()
}

// docSep splits documents the way the VK splits a rendered shadow template.
var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeAll parses every non-empty document of a multi-document YAML text.
func decodeAll(t *testing.T, name, text string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for i, doc := range docSep.Split(text, -1) {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("%s: document %d: %v", name, i, err)
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "{}" {
			continue // comments only
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatalf("%s: document %d: %v", name, i, err)
		}
		objs = append(objs, u)
	}
	if len(objs) == 0 {
		t.Fatalf("%s: no objects", name)
	}
	return objs
}

// vkDecode reads a rendered shadow template exactly as InterLink's VK does (applyWstunnelManifests
// at interlink-hq/interLink f6321757): it splits the text on the raw string "---" wherever it
// occurs, comments and values included, and decodes each non-blank piece with client-go's universal
// deserializer. A piece the VK cannot decode is skipped there with a warning and its objects are
// lost, so here it fails the test. Only the kinds the VK applies are returned.
func vkDecode(t *testing.T, text string) []*unstructured.Unstructured {
	t.Helper()
	decoder := serializer.NewCodecFactory(scheme.Scheme).UniversalDeserializer()
	var objs []*unstructured.Unstructured
	for i, piece := range strings.Split(text, "---") {
		piece = strings.TrimSpace(piece)
		if piece == "" {
			continue
		}
		obj, gvk, err := decoder.Decode([]byte(piece), nil, nil)
		if err != nil {
			t.Errorf("the VK cannot decode piece %d of the rendered template, so it would drop it: %v\n%s", i, err, piece)
			continue
		}
		switch gvk.Kind {
		case "Deployment", "Service", "Ingress", "ConfigMap", "Secret":
		default:
			t.Errorf("piece %d is a %s, which the VK ignores", i, gvk.Kind)
			continue
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: m}
		u.SetGroupVersionKind(*gvk)
		objs = append(objs, u)
	}
	return objs
}

func sampleShadow(priv, clientPub, ns string) shadowData {
	return shadowData{
		Name:            "web-0-default",
		Namespace:       ns,
		RandomPassword:  "Zq3kX9pL2mN7vB4c",
		WGPrivateKey:    priv,
		ClientPublicKey: clientPub,
		WildcardDNS:     "tunnel.example.com",
		ExposedPorts: []exposedPort{
			{Port: 8080, Name: "http", Protocol: "TCP"},
			{Port: 5353, Protocol: "UDP"},
			{Port: 9000},
		},
	}
}

// shadowGolden renders a shadow template with deterministic keys, compares it with
// testdata/<golden> (-update rewrites it) and returns the data and the text.
func shadowGolden(t *testing.T, file, golden string) (shadowData, string) {
	t.Helper()
	var priv, client meshspec.Key
	for i := range priv {
		priv[i], client[i] = byte(i+1), byte(2*i+7)
	}
	clientPub := client.PublicKey()
	data := sampleShadow(base64.StdEncoding.EncodeToString(priv[:]), base64.StdEncoding.EncodeToString(clientPub[:]), "default")
	got := render(t, file, data)
	golden = filepath.Join("testdata", golden)
	goldentest.Check(t, golden, []byte(got))
	return data, got
}

// TestShadowPodGolden pins the rendered shadow pod (deterministic keys) and checks its shape.
func TestShadowPodGolden(t *testing.T) {
	data, got := shadowGolden(t, "shadow-pod.tmpl", "shadow-pod.golden")

	objs := vkDecode(t, got)
	kinds := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		if _, dup := kinds[o.GetKind()]; dup {
			t.Errorf("two %s objects", o.GetKind())
		}
		kinds[o.GetKind()] = o
	}
	for _, k := range []string{"Secret", "Deployment", "Service", "Ingress"} {
		if kinds[k] == nil {
			t.Fatalf("no %s in the rendered shadow pod", k)
		}
	}
	// The secrets stay in the Secret.
	for _, k := range []string{"Deployment", "Service", "Ingress"} {
		j, _ := kinds[k].MarshalJSON()
		if strings.Contains(string(j), data.WGPrivateKey) || strings.Contains(string(j), data.RandomPassword) {
			t.Errorf("%s holds the private key or the path prefix", k)
		}
	}
	if v, _, _ := unstructured.NestedString(kinds["Secret"].Object, "stringData", "privatekey"); v != data.WGPrivateKey {
		t.Errorf("Secret privatekey = %q, want the VK's .WGPrivateKey", v)
	}
	if v, _, _ := unstructured.NestedString(kinds["Secret"].Object, "stringData", "prefix"); v != data.RandomPassword {
		t.Errorf("Secret prefix = %q, want the VK's .RandomPassword", v)
	}

	var dep struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	j, _ := kinds["Deployment"].MarshalJSON()
	if err := yaml.Unmarshal(j, &dep); err != nil {
		t.Fatal(err)
	}
	pod := dep.Spec.Template
	if got := pod.Labels["app.kubernetes.io/component"]; got != kinds["Deployment"].GetName() {
		t.Errorf("pod label app.kubernetes.io/component = %q, want the Deployment's name %q (the VK waits for it)", got, kinds["Deployment"].GetName())
	}
	if n := len(pod.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	c := pod.Spec.Containers[0]
	for _, want := range []string{"--private-key-file=/etc/shadow/privatekey", "--path-prefix-file=/etc/shadow/prefix", "--peer-public-key=" + data.ClientPublicKey} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %q", c.Args, want)
		}
	}
	if len(c.Env) == 0 || c.Env[0].Name != "POD_IP" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("POD_IP is not the downward API's status.podIP: %+v", c.Env)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Privileged != nil && *sc.Privileged || !slices.Contains(sc.Capabilities.Add, "NET_ADMIN") || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("securityContext %+v: want NET_ADMIN on top of drop ALL, never privileged", sc)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.IntValue() != 9102 {
		t.Errorf("readiness probe %+v, want GET :9102/readyz", c.ReadinessProbe)
	}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
	}
	// A stock kubelet refuses a pod that sets a sysctl outside its safe list (SysctlForbidden):
	// the shadow pod sets none and takes the node's forwarding.
	if sc := pod.Spec.SecurityContext; sc != nil && len(sc.Sysctls) > 0 {
		t.Errorf("the shadow pod sets sysctls %v: a stock kubelet refuses unsafe ones", sc.Sysctls)
	}

	// The ingress must reach a shadow that says the mesh is lost (not ready), or it never comes back.
	if pub, _, _ := unstructured.NestedBool(kinds["Service"].Object, "spec", "publishNotReadyAddresses"); !pub {
		t.Error("the Service does not publish the shadow pod while it is not ready")
	}
	ports, _, _ := unstructured.NestedSlice(kinds["Service"].Object, "spec", "ports")
	var got28080 bool
	seen := map[string]bool{}
	for _, p := range ports {
		m := p.(map[string]any)
		seen[fmt.Sprint(m["port"], "/", m["protocol"])] = true
		got28080 = got28080 || fmt.Sprint(m["port"]) == "28080"
	}
	if !got28080 {
		t.Error("Service does not expose 28080")
	}
	for _, p := range data.ExposedPorts {
		proto := p.Protocol
		if proto == "" {
			proto = "TCP"
		}
		if !seen[fmt.Sprint(p.Port, "/", proto)] {
			t.Errorf("Service does not expose %d/%s", p.Port, proto)
		}
	}
	rules, _, _ := unstructured.NestedSlice(kinds["Ingress"].Object, "spec", "rules")
	if host := rules[0].(map[string]any)["host"]; host != "web-0-default-default.tunnel.example.com" {
		t.Errorf("Ingress host %v", host)
	}
}

// meshCase renders mesh-script.tmpl for one pod and returns what the VK would annotate.
type meshCase struct {
	clientPriv, clientPub, serverPriv, serverPub string
	data                                         meshData
}

func newMeshCase(t *testing.T) meshCase {
	var c meshCase
	c.clientPriv, c.clientPub = keyPair(t)
	c.serverPriv, c.serverPub = keyPair(t)
	c.data = meshData{
		WGInterfaceName:       "wg0a1b2c3d-4e5f",
		WSTunnelExecutableURL: "https://example.com/wstunnel",
		WireguardGoURL:        "https://example.com/wireguard-go",
		WgToolURL:             "https://example.com/wg",
		Slirp4netnsURL:        "https://example.com/slirp4netns",
		WGConfig:              vkWGConfig(c.clientPriv, c.serverPub, "10.244.0.0/16", "10.96.0.0/12", 25),
		DNSServiceIP:          "10.96.0.10",
		RandomPassword:        "Zq3kX9pL2mN7vB4c",
		IngressEndpoint:       "web-0-default-default.tunnel.example.com",
		WGMTU:                 1280,
		PodCIDRCluster:        "10.244.0.0/16",
		ServiceCIDR:           "10.96.0.0/12",
		UnshareMode:           "auto",
	}
	return c
}

// TestMeshScriptAgreesWithPlugin renders mesh-script.tmpl and feeds the result to the plugin's
// real entry point, plugin.Translate, as the VK would annotate the pod.
func TestMeshScriptAgreesWithPlugin(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mutate     func(*meshCase)
		snippet    bool
		keysInJSON bool
		wantKeepal time.Duration
		ownPreExec string
	}{
		{name: "with the VK's snippet", snippet: true, keysInJSON: true, wantKeepal: 30 * time.Second},
		{name: "mesh.json alone", keysInJSON: true, wantKeepal: meshspec.DefaultPersistentKeepalive},
		{name: "pod's own pre-exec appended", snippet: true, keysInJSON: true, wantKeepal: 30 * time.Second, ownPreExec: "echo pod's own pre-exec\n"},
		{
			name: "unknown WGConfig layout: keys from the snippet",
			mutate: func(c *meshCase) {
				c.data.WGConfig = "# a future VK\n" + c.data.WGConfig
			},
			snippet: true, wantKeepal: 30 * time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newMeshCase(t)
			// The keepalive reaches the plugin through the snippet only; 30 s tells it apart from
			// the default.
			c.data.WGConfig = strings.Replace(c.data.WGConfig, "PersistentKeepalive = 25", "PersistentKeepalive = 30", 1)
			if tc.mutate != nil {
				tc.mutate(&c)
			}
			script := render(t, "mesh-script.tmpl", c.data)
			if got := strings.Contains(script, c.clientPriv); got != tc.keysInJSON {
				t.Fatalf("private key in mesh.json: %v, want %v\n%s", got, tc.keysInJSON, script)
			}
			checkScriptRuns(t, script)

			ann := map[string]string{plugin.AnnotPreExec: script + tc.ownPreExec}
			if tc.snippet {
				ann[plugin.AnnotWGSnippet] = vkSnippet(c.clientPriv, c.serverPub, c.data.WGMTU, 30)
			}
			req := &plugin.RetrievedPodData{Pod: corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "default", UID: types.UID("0a1b2c3d-4e5f-6789-abcd-ef0123456789"), Annotations: ann},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
			}}
			plan, err := plugin.Translate(req, plugin.Offloading{NamespacePrefix: "offloading"})
			if err != nil {
				t.Fatalf("Translate: %v\n%s", err, script)
			}
			if plan.Mesh == nil {
				t.Fatal("Translate saw no mesh in the rendered pre-exec")
			}
			m := plan.Mesh.WithDefaults()
			check := func(field string, got, want any) {
				t.Helper()
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s = %v, want %v", field, got, want)
				}
			}
			check("privateKey", base64.StdEncoding.EncodeToString(m.PrivateKey[:]), c.clientPriv)
			check("peerPublicKey", base64.StdEncoding.EncodeToString(m.PeerPublicKey[:]), c.serverPub)
			check("address", m.Address, netip.MustParsePrefix("10.7.0.2/32"))
			check("peerAddress", m.PeerAddress, netip.MustParseAddr("10.7.0.1"))
			check("mtu", m.MTU, 1280)
			check("persistentKeepalive", m.PersistentKeepalive, tc.wantKeepal)
			check("routes", m.Routes, []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/12")})
			check("tunnel.url", m.Tunnel.URL, "ws://web-0-default-default.tunnel.example.com:80")
			check("tunnel.pathPrefix", string(m.Tunnel.PathPrefix), c.data.RandomPassword)
			check("tunnel.host", m.Tunnel.Host, c.data.IngressEndpoint)
			if !slices.Contains(m.DNS.Nameservers, netip.MustParseAddr("10.96.0.10")) {
				t.Errorf("dns.nameservers = %v, want 10.96.0.10 in it", m.DNS.Nameservers)
			}

			// The Secret the mesh-agent reads is the same spec, and the keys are nowhere else.
			var found bool
			for _, s := range plan.Secrets {
				b, ok := s.Data[plugin.MeshSpecKey]
				if !ok {
					b, ok = []byte(s.StringData[plugin.MeshSpecKey]), s.StringData[plugin.MeshSpecKey] != ""
				}
				if !ok {
					continue
				}
				found = true
				parsed, err := meshspec.Parse(b)
				if err != nil {
					t.Fatalf("the mesh Secret's %s: %v", plugin.MeshSpecKey, err)
				}
				if parsed.PrivateKey != m.PrivateKey || parsed.Tunnel.PathPrefix != m.Tunnel.PathPrefix {
					t.Error("the mesh Secret holds other keys than plan.Mesh")
				}
			}
			if !found {
				t.Fatalf("no Secret with %s in the plan", plugin.MeshSpecKey)
			}
			pj, _ := yaml.Marshal(plan.Pod)
			if strings.Contains(string(pj), c.clientPriv) || strings.Contains(string(pj), c.data.RandomPassword) {
				t.Error("the remote pod holds the private key or the path prefix")
			}
		})
	}
}

// checkScriptRuns runs the rendered pre-exec with sh, as a plugin that executes it would, and
// parses the mesh.json it writes.
func checkScriptRuns(t *testing.T, script string) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Log("no sh: the rendered script is not executed")
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(sh, "-eu")
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = []string{"TMPDIR=" + dir, "PATH=" + os.Getenv("PATH")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sh: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "mesh.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s meshspec.Spec
	if err := s.UnmarshalJSON(b); err != nil {
		t.Fatalf("the mesh.json the script writes: %v\n%s", err, b)
	}
}

// TestPluginConfig loads the ConfigMap's configuration with the plugin's own loader.
func TestPluginConfig(t *testing.T) {
	b, err := os.ReadFile("plugin.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range decodeAll(t, "plugin.yaml", string(b)) {
		if o.GetKind() != "ConfigMap" {
			continue
		}
		text, _, _ := unstructured.NestedString(o.Object, "data", "plugin.yaml")
		path := filepath.Join(t.TempDir(), "plugin.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := plugin.LoadConfig(path, func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatalf("plugin.LoadConfig: %v", err)
		}
		if c.App.SocketAddress != "http://0.0.0.0" || c.App.SocketPort != 4000 {
			t.Errorf("socket %s port %d, want http://0.0.0.0 port 4000", c.App.SocketAddress, c.App.SocketPort)
		}
		return
	}
	t.Fatal("no ConfigMap in plugin.yaml")
}

// TestDryRun sends every object of every manifest and rendered template to the real
// apiserver with server-side dry-run: schema, defaulting, validation and admission all run.
func TestDryRun(t *testing.T) {
	cl := testcluster.Get(t)
	ns := cl.Namespace(t)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cl.Client.Discovery()))

	priv, _ := keyPair(t)
	_, clientPub := keyPair(t)
	files := map[string]string{}
	for _, f := range []string{"plugin.yaml", "vk-config-snippet.yaml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		files[f] = string(b)
	}
	files["shadow-pod.tmpl"] = render(t, "shadow-pod.tmpl", sampleShadow(priv, clientPub, ns))
	files["shadow-pod-netstack.tmpl"] = render(t, "shadow-pod-netstack.tmpl", sampleShadow(priv, clientPub, ns))

	// vk-config-snippet.yaml is VK configuration, not Kubernetes objects: it only has to parse.
	var vk struct {
		Network map[string]any `json:"Network"`
	}
	if err := yaml.UnmarshalStrict([]byte(files["vk-config-snippet.yaml"]), &vk); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"FullMesh", "WstunnelTemplatePath", "MeshScriptTemplatePath", "WildcardDNS"} {
		if _, ok := vk.Network[k]; !ok {
			t.Errorf("vk-config-snippet.yaml: no Network.%s", k)
		}
	}

	for _, f := range []string{"plugin.yaml", "shadow-pod.tmpl", "shadow-pod-netstack.tmpl"} {
		for _, o := range decodeAll(t, f, files[f]) {
			name := f + ": " + o.GetKind() + " " + o.GetName()
			gvk := o.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			ri := cl.Dynamic.Resource(mapping.Resource)
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				o.SetNamespace(ns) // the manifests' own namespace does not exist here
				_, err = ri.Namespace(ns).Create(t.Context(), o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
			} else {
				_, err = ri.Create(t.Context(), o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
			}
			if err != nil {
				t.Errorf("%s: server-side dry-run: %v", name, err)
				continue
			}
			t.Logf("%s: accepted (dry-run)", name)
		}
	}
}

// TestClusterRoleLeastPrivilege binds the ClusterRole of plugin.yaml to a ServiceAccount and asks
// the apiserver's RBAC authorizer, call by call, what the plugin may and may not do.
func TestClusterRoleLeastPrivilege(t *testing.T) {
	cl := testcluster.Get(t)
	ns := cl.Namespace(t)
	b, err := os.ReadFile("plugin.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	for _, o := range decodeAll(t, "plugin.yaml", string(b)) {
		if o.GetKind() == "ClusterRole" {
			if err := runtimeConvert(o, &role); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(role.Rules) == 0 {
		t.Fatal("no ClusterRole in plugin.yaml")
	}
	role.ObjectMeta = metav1.ObjectMeta{Name: "ikm-manifests-" + ns}
	rbac := cl.Client.RbacV1()
	if _, err := rbac.ClusterRoles().Create(t.Context(), &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(t.Context(), role.Name, metav1.DeleteOptions{}) })
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "interlink-k8s-plugin", Namespace: ns}},
	}
	if _, err := rbac.ClusterRoleBindings().Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rbac.ClusterRoleBindings().Delete(t.Context(), binding.Name, metav1.DeleteOptions{}) })

	user := "system:serviceaccount:" + ns + ":interlink-k8s-plugin"
	for _, tc := range []struct {
		verb, resource, sub, namespace string
		allowed                        bool
		name                           string // the object, for rules naming theirs
	}{
		{"get", "namespaces", "", "", true, ""},
		{"create", "namespaces", "", "", true, ""},
		{"create", "pods", "", "offloading-x", true, ""},
		{"get", "pods", "", "offloading-x", true, ""},
		{"delete", "pods", "", "offloading-x", true, ""},
		{"patch", "pods", "", "offloading-x", true, ""},
		{"list", "pods", "", "", true, ""},
		{"watch", "pods", "", "", true, ""},
		{"get", "pods", "log", "offloading-x", true, ""},
		{"create", "configmaps", "", "offloading-x", true, ""},
		{"update", "configmaps", "", "offloading-x", true, ""},
		{"deletecollection", "configmaps", "", "offloading-x", true, ""},
		{"create", "secrets", "", "offloading-x", true, ""},
		{"get", "secrets", "", "offloading-x", true, ""},
		{"update", "secrets", "", "offloading-x", true, ""},
		{"delete", "secrets", "", "offloading-x", true, ""},
		{"deletecollection", "secrets", "", "offloading-x", true, ""},
		{"create", "serviceaccounts", "", "offloading-x", true, ""},
		{"get", "serviceaccounts", "", "offloading-x", true, ""},
		{"get", "persistentvolumeclaims", "", "offloading-x", true, ""},
		{"create", "persistentvolumeclaims", "", "offloading-x", true, ""},
		{"delete", "persistentvolumeclaims", "", "offloading-x", true, ""},
		{"list", "nodes", "", "", true, ""},
		{"get", "services", "", "kube-system", true, "kube-dns"},
		// Not needed, so not granted.
		{"delete", "namespaces", "", "", false, ""},
		{"list", "secrets", "", "", false, ""},
		{"watch", "secrets", "", "", false, ""},
		{"update", "pods", "", "offloading-x", false, ""},
		{"create", "pods", "exec", "offloading-x", false, ""},
		{"update", "persistentvolumeclaims", "", "offloading-x", false, ""},
		{"create", "serviceaccounts", "token", "offloading-x", false, ""},
		{"update", "nodes", "", "", false, ""},
		{"create", "clusterrolebindings", "", "", false, ""},
		{"get", "services", "", "kube-system", false, "kubernetes"},
		{"list", "services", "", "kube-system", false, ""},
	} {
		attrs := &authzv1.ResourceAttributes{Verb: tc.verb, Resource: tc.resource, Subresource: tc.sub, Namespace: tc.namespace, Name: tc.name}
		if tc.resource == "clusterrolebindings" {
			attrs.Group = rbacv1.GroupName
		}
		name := fmt.Sprintf("%s %s/%s in %q", tc.verb, tc.resource, tc.sub, tc.namespace)
		// The RBAC authorizer reads bindings from an informer: wait for it to see ours.
		deadline := time.Now().Add(10 * time.Second)
		for {
			sar, err := cl.Client.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authzv1.SubjectAccessReview{
				Spec: authzv1.SubjectAccessReviewSpec{User: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}, ResourceAttributes: attrs},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if sar.Status.Allowed == tc.allowed {
				break
			}
			if !tc.allowed || time.Now().After(deadline) {
				t.Errorf("%s: allowed = %v, want %v (%s)", name, sar.Status.Allowed, tc.allowed, sar.Status.Reason)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// The plugin itself, as that ServiceAccount: a create with a ConfigMap and a claim to make
	// (which releases the pod's scheduling gate with a patch), then its delete.
	rc := rest.CopyConfig(cl.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plugin.New(plugin.Config{Client: client, Offloading: plugin.Offloading{NamespacePrefix: "rbac"}})
	if err != nil {
		t.Fatal(err)
	}
	uid := types.UID(ns + "-pod")
	req := plugin.RetrievedPodData{
		Pod: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, UID: uid, Annotations: map[string]string{plugin.AnnotRemotePVC: "data"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "busybox"}}, Volumes: []corev1.Volume{
				{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "conf"}}}},
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
			}},
		},
		Containers: []plugin.RetrievedContainer{{
			Name:       "web",
			ConfigMaps: []corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: "conf"}, Data: map[string]string{"a": "b"}}},
			PersistentVolumeClaims: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data", Annotations: map[string]string{plugin.AnnotPVCRetain: "delete"}},
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}},
		}},
	}
	t.Cleanup(func() {
		_ = cl.Client.CoreV1().Namespaces().Delete(context.Background(), "rbac-"+ns, metav1.DeleteOptions{})
	})
	if _, err := p.Create(t.Context(), &req); err != nil {
		t.Fatalf("create as the plugin's ServiceAccount: %v", err)
	}
	if err := p.Delete(t.Context(), &req.Pod); err != nil {
		t.Fatalf("delete as the plugin's ServiceAccount: %v", err)
	}
}

func runtimeConvert(u *unstructured.Unstructured, out any) error {
	j, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(j, out); err != nil {
		return err
	}
	return nil
}

// meshDataIngress has the fields VKs since interlink-hq/interLink PR #538 add to
// MeshScriptTemplateData. IngressPort is any: the template prints it, whichever type the VK uses.
type meshDataIngress struct {
	meshData
	IngressProtocol string
	IngressPort     any
}

// TestMeshScriptIngress renders mesh-script-ingress.tmpl as a VK with and without
// Network.IngressTLS would, and checks the plugin dials what the VK serves; the two mesh scripts
// differ in nothing else, and an older VK can render only mesh-script.tmpl.
func TestMeshScriptIngress(t *testing.T) {
	for _, tc := range []struct {
		proto string
		port  any
		want  string
	}{
		{"wss", 443, "wss://web-0-default-default.tunnel.example.com:443"},
		{"ws", "80", "ws://web-0-default-default.tunnel.example.com:80"},
	} {
		t.Run(tc.proto, func(t *testing.T) {
			c := newMeshCase(t)
			script := render(t, "mesh-script-ingress.tmpl", meshDataIngress{c.data, tc.proto, tc.port})
			checkScriptRuns(t, script)
			req := &plugin.RetrievedPodData{Pod: corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "default", UID: types.UID("0a1b2c3d-4e5f-6789-abcd-ef0123456789"),
					Annotations: map[string]string{plugin.AnnotPreExec: script}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
			}}
			plan, err := plugin.Translate(req, plugin.Offloading{NamespacePrefix: "offloading"})
			if err != nil || plan.Mesh == nil {
				t.Fatalf("Translate: mesh %v, err %v\n%s", plan != nil && plan.Mesh != nil, err, script)
			}
			if got := plan.Mesh.Tunnel.URL; got != tc.want {
				t.Errorf("tunnel.url = %s, want %s", got, tc.want)
			}
			if got := plan.Mesh.Tunnel.Host; got != c.data.IngressEndpoint {
				t.Errorf("tunnel.host = %s, want %s (the TLS server name)", got, c.data.IngressEndpoint)
			}
		})
	}

	c := newMeshCase(t)
	old := render(t, "mesh-script.tmpl", c.data)
	// A newer VK renders the older script too, and both say the same for a VK without TLS.
	if got := render(t, "mesh-script.tmpl", meshDataIngress{c.data, "wss", 443}); got != old {
		t.Error("mesh-script.tmpl renders differently with a newer VK's data")
	}
	if got := render(t, "mesh-script-ingress.tmpl", meshDataIngress{c.data, "ws", 80}); got != old {
		t.Errorf("the two mesh scripts differ beyond the tunnel URL:\n%s\n----\n%s", old, got)
	}
	b, _ := os.ReadFile("mesh-script-ingress.tmpl")
	if err := template.Must(template.New("").Parse(string(b))).Execute(io.Discard, c.data); err == nil {
		t.Error("an older VK's data renders mesh-script-ingress.tmpl; its header says it fails")
	}
}

// shadowPodSpec renders a shadow template and returns its Deployment's pod template as a Pod.
func shadowPodSpec(t *testing.T, file string, data shadowData) *corev1.Pod {
	t.Helper()
	for _, o := range vkDecode(t, render(t, file, data)) {
		if o.GetKind() != "Deployment" {
			continue
		}
		tmpl, ok, err := unstructured.NestedMap(o.Object, "spec", "template")
		if err != nil || !ok {
			t.Fatalf("%s: no pod template: %v", file, err)
		}
		var pod corev1.Pod
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &pod); err != nil {
			t.Fatal(err)
		}
		pod.Name = "shadow"
		return &pod
	}
	t.Fatalf("%s: no Deployment", file)
	return nil
}

// TestShadowPodNetstackGolden pins the netstack shadow template and its differences from the
// kernel one: the declared ports as --ports, netstack mode, nothing granted.
func TestShadowPodNetstackGolden(t *testing.T) {
	data, _ := shadowGolden(t, "shadow-pod-netstack.tmpl", "shadow-pod-netstack.golden")
	pod := shadowPodSpec(t, "shadow-pod-netstack.tmpl", data)
	c := pod.Spec.Containers[0]
	for _, arg := range []string{"--mode=netstack", "--ports=8080/TCP,5353/UDP,9000/TCP"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %q lack %s", c.Args, arg)
		}
	}
	if sc := c.SecurityContext; sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("security context %+v, want nonroot with nothing added", sc)
	}
	// The kubelet writes the Secret's files as root: the nonroot agent reads them as their group.
	psc := pod.Spec.SecurityContext
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil && (psc == nil || psc.FSGroup == nil || *psc.FSGroup != 65532 || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o040 == 0) {
			t.Errorf("secret volume %s (mode %v, pod fsGroup %v): user 65532 cannot read it", v.Name, v.Secret.DefaultMode, psc)
		}
	}
}

// TestShadowPodRestricted asks the real apiserver's Pod Security admission (server-side
// dry-run in a namespace enforcing "restricted") about both shadow templates' pods: the
// netstack one is admitted, the kernel one is refused for its capabilities.
func TestShadowPodRestricted(t *testing.T) {
	cl := testcluster.Get(t)
	ns := cl.RestrictedNamespace(t)
	priv, _ := keyPair(t)
	_, clientPub := keyPair(t)
	data := sampleShadow(priv, clientPub, ns)
	for _, tc := range []struct {
		file   string
		refuse string // "": admitted
	}{
		{"shadow-pod-netstack.tmpl", ""},
		{"shadow-pod-inbound-netstack.tmpl", ""},
		{"shadow-pod-inbound.tmpl", "NET_ADMIN"},
		{"shadow-pod.tmpl", "NET_ADMIN"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			pod := shadowPodSpec(t, tc.file, data)
			_, err := cl.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			switch {
			case tc.refuse == "" && err != nil:
				t.Fatalf("refused in a restricted namespace: %v", err)
			case tc.refuse != "" && (err == nil || !strings.Contains(err.Error(), "restricted") || !strings.Contains(err.Error(), tc.refuse)):
				t.Fatalf("admission %v, want a Pod Security refusal naming %s", err, tc.refuse)
			}
		})
	}
}

// TestShadowPodInboundGolden: the inbound template's shadow dials the offloaded pod's Ingress at
// the host the plugin gives it, and nothing of it listens for the remote site: no Ingress, no
// tunnel port on the pod or its Service. The key and the prefix stay in the Secret.
func TestShadowPodInboundGolden(t *testing.T) {
	for _, mode := range []string{"", "-netstack"} {
		t.Run("inbound"+mode, func(t *testing.T) { checkInboundShadow(t, "shadow-pod-inbound"+mode) })
	}
}

func checkInboundShadow(t *testing.T, base string) {
	data, got := shadowGolden(t, base+".tmpl", base+".golden")
	kinds := map[string]bool{}
	for _, o := range vkDecode(t, got) {
		kinds[o.GetKind()] = true
		if o.GetKind() == "Secret" {
			continue
		}
		j, _ := o.MarshalJSON()
		if strings.Contains(string(j), data.WGPrivateKey) || strings.Contains(string(j), data.RandomPassword) {
			t.Errorf("%s holds the private key or the path prefix", o.GetKind())
		}
		if strings.Contains(string(j), "28080") {
			t.Errorf("%s names the tunnel port 28080: the inbound shadow serves no tunnel", o.GetKind())
		}
	}
	if kinds["Ingress"] || !kinds["Deployment"] || !kinds["Service"] || !kinds["Secret"] {
		t.Errorf("kinds %v, want a Secret, a Deployment and a Service, no Ingress", kinds)
	}
	c := shadowPodSpec(t, base+".tmpl", data).Spec.Containers[0]
	want := "--connect=ws://" + data.Name + "-" + data.Namespace + "." + data.WildcardDNS
	if !slices.Contains(c.Args, want) {
		t.Errorf("args %q lack %s", c.Args, want)
	}
}
