package ingresstest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRenderIsValidNginx asks nginx itself (nginx -t) whether the configuration holds, with two
// routes, and checks each host is routed to its backend.
func TestRenderIsValidNginx(t *testing.T) {
	dir := t.TempDir()
	c := Config{Dir: dir, Listen: "127.0.0.1:18080", ErrorLog: filepath.Join(dir, "error.log"),
		Routes: map[string]string{"b.mesh.test": "10.0.0.2:28080", "a.mesh.test": "10.0.0.1:28080"}}
	conf := c.Render()
	for host, backend := range c.Routes {
		if !strings.Contains(conf, "server_name "+host+";\n\t\tlocation / {\n\t\t\tproxy_pass http://"+backend+";") {
			t.Errorf("%s is not routed to %s:\n%s", host, backend, conf)
		}
	}
	if !strings.Contains(conf, "access_log off;") {
		t.Error("an access log without AccessLog: the tunnel's path prefix would be written down")
	}
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("no nginx to check the syntax with (apt-get install nginx-light)")
	}
	if err := c.Write(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nginx", "-t", "-c", filepath.Join(dir, "nginx.conf"), "-p", dir).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v: %s", err, out)
	}
}
