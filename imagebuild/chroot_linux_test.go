package imagebuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writeRoot materialises a tree in dir with its owners and modes, as a runtime unpacks layers.
func writeRoot(t *testing.T, root *Tree, dir string) {
	t.Helper()
	for _, p := range root.Paths() {
		e := root.entries[p]
		dst := filepath.Join(dir, filepath.FromSlash(p))
		var err error
		switch e.Type {
		case Dir:
			err = os.Mkdir(dst, 0o755)
		case File:
			err = os.WriteFile(dst, e.Data, 0o644)
		case Symlink:
			err = os.Symlink(e.Target, dst)
		}
		if err == nil {
			err = os.Lchown(dst, e.UID, e.GID)
		}
		if err == nil && e.Type != Symlink {
			err = os.Chmod(dst, os.FileMode(e.Mode&0o777)|modeBits(e.Mode))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func modeBits(m int64) os.FileMode {
	var fm os.FileMode
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// TestRunInChroot runs the amd64 images' programs from their own root filesystems, with nothing of
// the host's: iptables with both backends (its loader, libraries and extensions come from the
// image), a rule added and listed in a fresh network namespace, wg, the Go binaries, and the
// busybox shell with its applets. Root only (chroot, unshare).
func TestRunInChroot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root: run as root to execute the images' programs from their root filesystems")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		t.Skip("no network namespaces")
	}
	tests := []struct {
		image string
		argv  []string
		want  string
	}{
		{"shadow-agent", []string{"/usr/sbin/iptables", "--version"}, "(nf_tables)"},
		{"shadow-agent", []string{"/usr/sbin/iptables-legacy", "--version"}, "(legacy)"},
		{"shadow-agent", []string{"/usr/sbin/ip6tables-save", "--version"}, "(nf_tables)"},
		{"shadow-agent", []string{"sh:", "iptables -t nat -N IKM-TEST && iptables -t nat -A IKM-TEST -p udp --dport 53 -m comment --comment ikm -j DNAT --to-destination 10.7.0.2 && iptables -t nat -S IKM-TEST"}, "-A IKM-TEST -p udp -m udp --dport 53 -m comment --comment ikm -j DNAT --to-destination 10.7.0.2"},
		{"shadow-agent", []string{"/usr/bin/wg", "--version"}, "wireguard-tools v1.0.20210914"},
		{"shadow-agent", []string{"/usr/local/bin/shadow-agent", "--version"}, "shadow-agent " + testMeta.Version},
		{"mesh-agent", []string{"/usr/bin/wg", "--version"}, "wireguard-tools"},
		{"mesh-agent", []string{"/usr/local/bin/mesh-agent", "--version"}, "mesh-agent " + testMeta.Version},
		{"pause", []string{"/usr/local/bin/pause", "--version"}, "pause " + testMeta.Version},
		{"echo-server", []string{"/usr/local/bin/echo-server", "--help"}, "-listen"},
		{"interlink-k8s-plugin", []string{"/usr/local/bin/interlink-k8s-plugin", "--help"}, "socket_address"},
		{"shell", []string{"/bin/sh", "-c", "echo hello from $(uname -s); ls /bin | wc -l"}, "hello from Linux"},
	}
	roots := map[string]string{}
	for _, tt := range tests {
		t.Run(tt.image+" "+strings.Join(tt.argv, " "), func(t *testing.T) {
			dir, ok := roots[tt.image]
			if !ok {
				// One root per image, shared by the subtests (t.TempDir would be the first one's).
				dir = filepath.Join(shared.dir, "root-"+tt.image)
				os.Mkdir(dir, 0o755)
				writeRoot(t, rootOf(t, platformImage(t, openBuilt(t, tt.image).Index, "linux/amd64")), dir)
				roots[tt.image] = dir
			}
			args := append([]string{"--net", "chroot", dir}, tt.argv...)
			if tt.argv[0] == "sh:" {
				// The shadow-agent image has no shell: run the script with the shell image's busybox.
				args = []string{"--net", "chroot", dir, "/busybox", "sh", "-c", "PATH=/usr/sbin:/usr/bin:/bin; " + tt.argv[1]}
				bb := filepath.Join(dir, "busybox")
				copyFromImage(t, "shell", "bin/busybox", bb)
			}
			out, err := exec.CommandContext(t.Context(), "unshare", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %v\n%s", tt.argv, err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("%v printed %q, want %q in it", tt.argv, out, tt.want)
			}
		})
	}
}

// copyFromImage copies one file of an image's amd64 root into dst.
func copyFromImage(t *testing.T, image, p, dst string) {
	t.Helper()
	e, ok := rootOf(t, platformImage(t, openBuilt(t, image).Index, "linux/amd64")).Get(p)
	if !ok {
		t.Fatalf("%s has no %s", image, p)
	}
	if err := os.WriteFile(dst, e.Data, 0o755); err != nil {
		t.Fatal(err)
	}
}
