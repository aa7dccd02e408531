package main

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/buildtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/logtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
)

// syncBuffer collects a child's output while the test reads it.
type syncBuffer = logtest.Buffer

// TestBinaryInNamespace runs the real binary in a fresh namespace, with its secrets in files as
// a Secret mount gives them: it becomes ready, and SIGTERM makes it remove its rules, interface
// and socket and exit 0. Its JSON logs hold no secret.
func TestBinaryInNamespace(t *testing.T) {
	netnstest.Require(t, "ip", "iptables", "iptables-save")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping: needs /dev/net/tun: %v", err)
	}
	dir := t.TempDir()
	bin := buildtest.Binary(t, ".")
	peer, shadow := netnstest.New(t), netnstest.New(t)
	netnstest.Veth(peer, "p0", shadow, "eth0")
	peer.MustExec("ip", "addr", "add", "192.168.70.1/24", "dev", "p0")
	shadow.MustExec("ip", "addr", "add", "192.168.70.2/24", "dev", "eth0")
	shadow.MustExec("ip", "route", "add", "default", "via", "192.168.70.1")

	priv, peerPub := keys(t)
	prefixFile, keyFile := filepath.Join(dir, "prefix"), filepath.Join(dir, "privatekey")
	if err := os.WriteFile(prefixFile, []byte(sekritPrefix+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(b64(priv)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd := exec.Command("ip", "netns", "exec", shadow.Name, bin, "--path-prefix-file", prefixFile, "--private-key-file", keyFile,
		"--uapi-dir", dir, "--log-format", "json", "--name", "shadow-demo", "--namespace", "default")
	cmd.Env = append(os.Environ(), "SHADOW_PEER_PUBLIC_KEY="+b64(peerPub), "POD_IP=192.168.70.2")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			<-done
		}
	})

	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := peer.Do(func() (err error) { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return })
			return c, err
		},
	}}
	for i := 0; ; i++ {
		resp, err := hc.Get("http://192.168.70.2:9102/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			exited = true
			t.Fatalf("shadow-agent exited before ready: %v\n%s", err, logs.String())
		default:
		}
		if i == 1000 || time.Since(start) > 20*time.Second {
			t.Fatalf("not ready within 20s: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("binary start to ready: %v", time.Since(start).Round(time.Millisecond))
	if testing.Verbose() {
		defer func() { t.Logf("logs:\n%s", logs.String()) }()
	}
	if save := shadow.MustExec("iptables-save"); !strings.Contains(save, "IKM-SHADOW-PREROUTING") || !strings.Contains(save, "-d 192.168.70.2/32") {
		t.Errorf("rules while running:\n%s", save)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		exited = true
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit within 15s of SIGTERM\n%s", logs.String())
	}
	if save := shadow.MustExec("iptables-save"); strings.Contains(save, "IKM-") || strings.Contains(save, "interlink-k8s-mesh") {
		t.Errorf("rules left after exit:\n%s", save)
	}
	if out, err := shadow.Exec("ip", "link", "show", "wg0"); err == nil {
		t.Errorf("wg0 left after exit:\n%s", out)
	}
	if _, err := os.Lstat(filepath.Join(dir, "wg0.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("UAPI socket left after exit: %v", err)
	}
	text := logs.String()
	for _, want := range []string{`"msg":"starting"`, `"shadow":"shadow-demo"`, `"namespace":"default"`, `"msg":"shadow up"`,
		`"main_interface":"eth0"`, `"msg":"netfilter rules removed"`, `"path_prefix_set":true`} {
		if !strings.Contains(text, want) {
			t.Errorf("logs lack %s:\n%s", want, text)
		}
	}
	for _, s := range []string{sekritPrefix, b64(priv), hex.EncodeToString(priv[:])} {
		if strings.Contains(text, s) {
			t.Errorf("a secret is in the logs:\n%s", text)
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	buildtest.Cleanup()
	os.Exit(code)
}
