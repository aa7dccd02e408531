package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/buildtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

func TestMain(m *testing.M) { testcluster.Main(m, buildtest.Cleanup) }

// vkPod is a pod as the VK offloads it with the full mesh: its mesh script (one of the two
// template variants the plugin reads, rendered in vkmesh/testdata/mesh) and its WireGuard
// snippet, with this test's keys, prefix and ingress host in place of the rendered ones.
type vkPod struct {
	name            string
	script, snippet string // files in vkmesh/testdata/mesh
	host, prefix    string // what the rendering put there
}

var vkPods = []vkPod{
	{"vk-default", "vk-default.sh", "vk-default.snippet", "web-0-team-a-team-a-wstunnel.mesh.example.org", "8b447dc024ce4941beea979206cc6cdf"},
	{"seed-custom", "seed-custom.sh", "seed-custom.snippet", "train-mlaas-mlaas-wstunnel.k3s.example.org", "03526a08299e5f48205f407f9a0cfc84"},
}

var (
	privateKeyLine = regexp.MustCompile(`(?m)^PrivateKey = \S+$`)
	publicKeyLine  = regexp.MustCompile(`(?m)^PublicKey = \S+$`)
)

// render reads a rendered template and puts k in: the pod's private key, the shadow's public
// key and the prefix. The ingress host stays: the pod's namespace resolves it to the ingress.
func (v vkPod) render(t *testing.T, file string, k meshKeys) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "vkmesh", "testdata", "mesh", file))
	if err != nil {
		t.Fatal(err)
	}
	s := privateKeyLine.ReplaceAllString(string(b), "PrivateKey = "+base64Key(k.pod))
	s = publicKeyLine.ReplaceAllString(s, "PublicKey = "+publicKey(k.shadow))
	return strings.ReplaceAll(s, v.prefix, k.prefix)
}

// TestMeshFromPlugin proves that the configuration the plugin emits is the one that works:
// a pod carrying a VK mesh annotation (each template variant) is created through the plugin's
// API on the real control plane; the mesh.json of the Secret it made runs the real mesh-agent in
// the offloaded pod's namespace, against a shadow-agent configured from the matching template
// data (.WGPrivateKey, .ClientPublicKey, .RandomPassword) behind nginx; traffic passes both ways.
func TestMeshFromPlugin(t *testing.T) {
	requireRoot(t, "nginx")
	c := testcluster.Get(t)
	prefix := "e2e" + uniqueIface("")[:6]
	p, err := plugin.New(plugin.Config{Client: c.Client, Offloading: plugin.Offloading{NamespacePrefix: prefix}})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "plugin.sock")
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- plugin.Serve(ctx, "unix", sock, p.Handler()) }()
	t.Cleanup(func() { cancel(); <-served })
	// Serve listens in its goroutine: the first request must not race it (seen once in CI).
	polltest.True(t, "the plugin serving on "+sock, 10*time.Second, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	api := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}

	for _, v := range vkPods {
		t.Run(v.name, func(t *testing.T) {
			k := newMeshKeys(t)
			uid := types.UID(fmt.Sprintf("%s-%s", uniqueIface("")[:8], "4d2c-4b8e-9a51-6f0e2d7c1a33"))
			pod := corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team-" + v.name, UID: uid, Annotations: map[string]string{
					plugin.AnnotPreExec:   v.render(t, v.script, k),
					plugin.AnnotWGSnippet: v.render(t, v.snippet, k),
				}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			}
			reqBody, _ := json.Marshal(plugin.RetrievedPodData{Pod: pod, Containers: []plugin.RetrievedContainer{{Name: "web"}}})
			resp, err := api.Post("http://plugin/create", "application/json", bytes.NewReader(reqBody))
			if err != nil {
				t.Fatal(err)
			}
			var answer bytes.Buffer
			_, _ = answer.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("create: %d %s", resp.StatusCode, answer.String())
			}
			ns := plugin.RemoteNamespace(prefix, nil, pod.Namespace)
			t.Cleanup(func() {
				_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
			})
			secret, err := c.Client.CoreV1().Secrets(ns).Get(t.Context(), plugin.ScopedName("mesh-agent", string(uid)), metav1.GetOptions{})
			if err != nil {
				t.Fatalf("the mesh Secret the plugin made: %v", err)
			}
			spec, err := meshspec.Parse(secret.Data[plugin.MeshSpecKey])
			if err != nil {
				t.Fatalf("its mesh.json: %v", err)
			}
			remote, err := c.Client.CoreV1().Pods(ns).Get(t.Context(), plugin.ScopedName(pod.Name, string(uid)), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := json.Marshal(remote); bytes.Contains(b, []byte(k.prefix)) || bytes.Contains(b, []byte(base64Key(k.pod))) {
				t.Fatal("a secret of the mesh reached the remote pod's spec")
			}

			tp := newTopology(t)
			// The offloaded pod resolves the ingress host the VK wrote into the script to the
			// ingress, as a remote cluster's DNS would: ip netns exec mounts this file as /etc/hosts.
			resolveIn(t, tp.pod, v.host, ingressWAN)
			startNginxFor(t, tp.ingress, ingressWAN, fmt.Sprintf("%s:%d", shadowIP, tunnelPort), v.host)
			serveHTTP(t, tp.pod, ":8080", "offloaded")
			serveHTTP(t, tp.svc, serviceIP+":80", "local-service")
			shadowAgent(t, tp.shadow, k, shadowIP)
			cfg := filepath.Join(t.TempDir(), "mesh.json")
			if err := os.WriteFile(cfg, secret.Data[plugin.MeshSpecKey], 0o600); err != nil {
				t.Fatal(err)
			}
			start(t, tp.pod, nil, binary(t, "mesh-agent"), "--config", cfg, "--uapi-dir", filepath.Join(t.TempDir(), "uapi"))
			polltest.True(t, "mesh-agent ready with the plugin's mesh.json", 15*time.Second, func() bool { return meshReady(tp.pod) })
			polltest.True(t, "client -> shadow IP -> offloaded pod", 10*time.Second, func() bool {
				code, body, err := httpGet(tp.client, "http://"+shadowIP+":8080/", time.Second)
				return err == nil && code == 200 && strings.HasPrefix(body, "hello from offloaded")
			})

			// The Service route comes from the script (10.96.0.0/16 in both variants).
			code, body, err := httpGet(tp.pod, "http://"+serviceIP+"/", 2*time.Second)
			if err != nil || code != 200 || !strings.Contains(body, "you are "+shadowIP+":") {
				t.Fatalf("offloaded pod -> local Service: %d %q %v (routes %v)", code, body, err, spec.Routes)
			}
			t.Logf("mesh from %s: tunnel %s unmasked=%v, mtu %d, routes %v", v.name, spec.Tunnel.URL, spec.Tunnel.Unmasked, spec.MTU, spec.Routes)
		})
	}
}

// resolveIn makes host resolve to addr for processes started with ip netns exec in ns.
func resolveIn(t *testing.T, ns *netnstest.NS, host, addr string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", ns.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	hosts := fmt.Sprintf("127.0.0.1 localhost\n%s %s\n", addr, host)
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
}
