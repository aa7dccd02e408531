package imagebuild

import (
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

// TestPluginImageTrustsCAs runs the amd64 plugin image's binary from its own root filesystem, as
// its image user and with the image's environment, against the test cluster's real apiserver
// through a kubeconfig that names no CA (as one for a public CA's certificate does): the
// apiserver's certificate chains to the cluster's CA, which the image trusts only where the test
// puts it. In the image's CA bundle (a copy with the cluster's CA added), and as a mounted file in
// /etc/interlink-k8s-plugin/ca, the plugin is ready (its /readyz asks the apiserver); in neither,
// it refuses the certificate. Root only (chroot, setuid).
func TestPluginImageTrustsCAs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root: run as root to execute the plugin image from its root filesystem")
	}
	cluster := testcluster.Get(t)
	img := platformImage(t, openBuilt(t, "interlink-k8s-plugin").Index, "linux/amd64")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	root := rootOf(t, img)

	// The cluster's CA, and a kubeconfig for the apiserver without it.
	kc, err := clientcmd.LoadFromFile(cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var ca []byte
	for _, c := range kc.Clusters {
		ca = c.CertificateAuthorityData
		if len(ca) == 0 && c.CertificateAuthority != "" {
			if ca, err = os.ReadFile(c.CertificateAuthority); err != nil {
				t.Fatal(err)
			}
		}
		c.CertificateAuthorityData, c.CertificateAuthority = nil, ""
	}
	if b, _ := pem.Decode(ca); b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("the test cluster's kubeconfig holds no CA certificate")
	}
	for _, u := range kc.AuthInfos { // inline what the image's root cannot read from the host
		if u.ClientCertificate != "" {
			if u.ClientCertificateData, err = os.ReadFile(u.ClientCertificate); err != nil {
				t.Fatal(err)
			}
			u.ClientCertificate = ""
		}
		if u.ClientKey != "" {
			if u.ClientKeyData, err = os.ReadFile(u.ClientKey); err != nil {
				t.Fatal(err)
			}
			u.ClientKey = ""
		}
	}
	noCA, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name            string
		bundle, mounted bool
		ready           bool
	}{
		{"in the image's bundle", true, false, true},
		{"in a mounted CA file", false, true, true},
		{"in neither", false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "root")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			writeRoot(t, root, dir)
			files := map[string][]byte{"etc/interlink-k8s-plugin/kubeconfig": noCA}
			if tc.bundle {
				files["usr/share/ca-certificates/mozilla/ikm-test-cluster.crt"] = ca
			}
			if tc.mounted {
				files["etc/interlink-k8s-plugin/ca/ca.crt"] = ca
			}
			for p, data := range files {
				if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			env := append(append([]string{}, cf.Config.Env...), "K8S_KUBECONFIG_PATH=/etc/interlink-k8s-plugin/kubeconfig",
				"APP_SOCKET_ADDRESS=unix:///var/run/p.sock")
			proc := startPluginImage(t, dir, cf.Config.WorkingDir, env, 0)
			code, body := proc.get(filepath.Join(dir, "run", "p.sock"), "/readyz", 20*time.Second)
			logs := proc.out.String()
			switch {
			case tc.ready && code != http.StatusOK:
				t.Errorf("/readyz %d %q, want 200\n%s", code, body, logs)
			case !tc.ready && (code == http.StatusOK || !strings.Contains(body+logs, "certificate signed by unknown authority")):
				t.Errorf("/readyz %d %q, want the apiserver's certificate refused\n%s", code, body, logs)
			}
		})
	}
}
