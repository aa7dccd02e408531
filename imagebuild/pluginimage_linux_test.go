package imagebuild

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/syncbuf"
)

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

	// No environment at all, as the image runs without the runtime adding any.
	proc := startPluginImage(t, dir, cf.Config.WorkingDir, []string{}, syscall.CLONE_NEWNET)
	socket := filepath.Join(dir, "run", ".plugin.sock") // /var/run → /run in the image
	if code, body := proc.get(socket, "/healthz", 30*time.Second); code != http.StatusOK {
		t.Fatalf("no answer on %s within 30 s: %s\n%s", socket, body, proc.out)
	}
	fi, err := os.Stat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode()&os.ModeSocket == 0 || st.Uid != nonrootUID {
		t.Errorf("%s: mode %v owner %d, want a socket of %d", socket, fi.Mode(), st.Uid, nonrootUID)
	}
	for _, want := range []string{"format=ini", "config=private/config.ini", "listen=unix:/var/run/.plugin.sock"} {
		if !strings.Contains(proc.out.String(), want) {
			t.Errorf("the plugin's log lacks %q:\n%s", want, proc.out)
		}
	}
	proc.stop()
}

// pluginProc is the plugin image's binary running from a root filesystem.
type pluginProc struct {
	t      *testing.T
	out    *syncbuf.Buffer
	exited chan error
	cancel context.CancelFunc
}

// startPluginImage runs the plugin's binary chrooted into dir, as the image's user, in workDir,
// with exactly env and the given clone flags, until stop or the test's end.
func startPluginImage(t *testing.T, dir, workDir string, env []string, cloneflags uintptr) *pluginProc {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cmd := exec.CommandContext(ctx, "/usr/local/bin/interlink-k8s-plugin")
	cmd.Dir, cmd.Env = workDir, env
	p := &pluginProc{t: t, out: &syncbuf.Buffer{}, exited: make(chan error, 1), cancel: cancel}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     dir,
		Credential: &syscall.Credential{Uid: nonrootUID, Gid: nonrootUID},
		Cloneflags: cloneflags,
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(p.stop)
	return p
}

// get asks path on the plugin's socket (a path on the host) until it answers 200 or timeout passes,
// and returns the last answer, or why there was none; the plugin exiting fails the test.
func (p *pluginProc) get(socket, path string, timeout time.Duration) (int, string) {
	p.t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	code, body := 0, ""
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case err := <-p.exited:
			p.exited <- err // for stop
			p.t.Fatalf("the plugin exited: %v\n%s", err, p.out)
		default:
		}
		resp, err := client.Get("http://plugin" + path)
		if err != nil {
			body = err.Error()
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
		if code == http.StatusOK {
			break
		}
	}
	return code, body
}

// stop sends SIGTERM and waits for the plugin; it fails the test if the plugin does not stop.
func (p *pluginProc) stop() {
	p.cancel()
	select {
	case err := <-p.exited:
		p.exited <- err // a second stop returns at once
	case <-time.After(15 * time.Second):
		p.t.Errorf("the plugin did not stop on SIGTERM:\n%s", p.out)
	}
}
