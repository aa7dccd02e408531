package imagebuild

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestPluginImageServesDefaultSocketAsNonRoot runs the amd64 plugin image's binary from its own root
// filesystem as its image user, in its working directory, as a container runtime would: with the
// Python plugin's sample config.ini and a kubeconfig at the paths that config names
// (private/config.ini, private/k8s/kubeconfig.yaml, as `docker run -v ./src/private:<workdir>/private`
// places them) and no environment at all, it serves the default socket /var/run/.plugin.sock as
// uid 65532. The remote apiserver is unreachable (a fresh network namespace): serving the API does
// not wait for it. Root only (chroot, setuid).
func TestPluginImageServesDefaultSocketAsNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root: run as root to execute the plugin image from its root filesystem")
	}
	img := platformImage(t, openBuilt(t, "interlink-k8s-plugin").Index, "linux/amd64")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532" && cf.Config.User != "65532:65532" {
		t.Fatalf("image user %q, want 65532", cf.Config.User)
	}
	dir := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeRoot(t, rootOf(t, img), dir)
	sample, err := os.ReadFile("../plugin/testdata/python-plugin/config.sample.ini")
	if err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(dir, cf.Config.WorkingDir, "private")
	kubeconfig := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n" +
		"contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: x}}]\ncurrent-context: c\n"
	for p, data := range map[string][]byte{"config.ini": sample, "k8s/kubeconfig.yaml": []byte(kubeconfig)} {
		if err := os.MkdirAll(filepath.Join(private, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(private, p), data, 0o644); err != nil { // root's files, readable
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/local/bin/interlink-k8s-plugin")
	cmd.Dir = cf.Config.WorkingDir
	cmd.Env = []string{}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     dir,
		Credential: &syscall.Credential{Uid: nonrootUID, Gid: nonrootUID},
		Cloneflags: syscall.CLONE_NEWNET,
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	socket := filepath.Join(dir, "run", ".plugin.sock") // /var/run → /run in the image
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://plugin/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("the plugin exited: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer on %s within 30 s: %v\n%s", socket, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fi, err := os.Stat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode()&os.ModeSocket == 0 || st.Uid != nonrootUID {
		t.Errorf("%s: mode %v owner %d, want a socket of %d", socket, fi.Mode(), st.Uid, nonrootUID)
	}
	for _, want := range []string{"format=ini", "config=private/config.ini", "listen=unix:/var/run/.plugin.sock"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the plugin's log lacks %q:\n%s", want, out)
		}
	}
	cancel()
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("the plugin did not stop on SIGTERM:\n%s", out)
	}
}
