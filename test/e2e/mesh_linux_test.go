package e2e

import (
	"encoding/base64"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// meshKeys are the secrets the VK generates for one offloaded pod.
type meshKeys struct {
	shadow, pod meshspec.Key
	prefix      string
}

func newMeshKeys(t testing.TB) meshKeys {
	t.Helper()
	var k meshKeys
	var err error
	if k.shadow, err = meshspec.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	if k.pod, err = meshspec.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	k.prefix = "e2e-" + uniqueIface("p") + uniqueIface("q")
	return k
}

// shadowAgent starts the shadow-agent binary in ns the way the shadow-pod template runs it:
// secrets from files, the pod IP from the downward API's POD_IP.
func shadowAgent(t testing.TB, ns *netnstest.NS, k meshKeys, podIP string, more ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := append([]string{
		"--private-key-file", write("private-key", base64Key(k.shadow)),
		"--path-prefix-file", write("prefix", k.prefix),
		"--peer-public-key", publicKey(k.pod),
		"--main-interface", "eth0",
		"--uapi-dir", filepath.Join(dir, "uapi"),
	}, more...)
	p := start(t, ns, []string{"POD_IP=" + podIP}, binary(t, "shadow-agent"), args...)
	polltest.True(t, "shadow-agent ready", 15*time.Second, func() bool {
		code, _, err := httpGet(ns, "http://127.0.0.1:9102/readyz", time.Second)
		return err == nil && code == 200
	})

	return p
}

// meshAgent starts the mesh-agent binary in ns with the mesh.json the plugin would write.
func meshAgent(t testing.TB, ns *netnstest.NS, k meshKeys, url, host string, routes ...string) *proc {
	t.Helper()
	return meshAgentTunnel(t, ns, k, meshspec.Tunnel{URL: url, Host: host}, routes...)
}

// meshAgentTunnel is meshAgent with every tunnel setting (the path prefix is k's).
func meshAgentTunnel(t testing.TB, ns *netnstest.NS, k meshKeys, tunnel meshspec.Tunnel, routes ...string) *proc {
	t.Helper()
	tunnel.PathPrefix = meshspec.Secret(k.prefix)
	spec := meshspec.Spec{PrivateKey: k.pod, PeerPublicKey: k.shadow.PublicKey(), Tunnel: tunnel}
	for _, r := range routes {
		spec.Routes = append(spec.Routes, netip.MustParsePrefix(r))
	}
	b, err := meshspec.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "mesh.json")
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return start(t, ns, nil, binary(t, "mesh-agent"), "--config", cfg, "--uapi-dir", filepath.Join(dir, "uapi"))
}

func meshReady(ns *netnstest.NS) bool {
	code, _, err := httpGet(ns, "http://127.0.0.1:9101/readyz", time.Second)
	return err == nil && code == 200
}

func publicKey(k meshspec.Key) string { return base64Key(k.PublicKey()) }

// base64Key is a key as wg(8) prints it and the agents read it.
func base64Key(k meshspec.Key) string { return base64.StdEncoding.EncodeToString(k[:]) }
