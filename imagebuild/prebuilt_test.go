package imagebuild

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrebuiltFile builds an image of a prebuilt static executable, as the test images of
// InterLink's VK and API server are made: the file, named through ${VAR}, lands at
// /usr/local/bin/<name> as the entrypoint, byte for byte; an unset variable, a missing file and an
// executable of another architecture are refused with the reason.
func TestPrebuiltFile(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "pause")
	build := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", exe, "./cmd/pause")
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	want, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	spec := func(platform, file string) Spec {
		return Spec{Registry: "registry.test/other", Source: "https://example.org/other", Platforms: []string{platform},
			Images: []ImageSpec{{Name: "other-pause", File: file, User: 0}}}
	}
	getenv := func(k string) string {
		if k == "OTHER_BIN_DIR" {
			return dir
		}
		return ""
	}
	cfg := func(s Spec) Config {
		return Config{Spec: s, Dir: "..", Out: filepath.Join(t.TempDir(), "out"), Cache: t.TempDir(), Meta: testMeta, Getenv: getenv}
	}

	c := cfg(spec("linux/amd64", "${OTHER_BIN_DIR}/pause"))
	results, err := Build(t.Context(), c)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if len(results) != 1 || results[0].Ref != "registry.test/other/other-pause:"+testMeta.Version {
		t.Fatalf("results = %+v", results)
	}
	a, err := OpenArchive(results[0].Archive)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	img := platformImage(t, a.Index, "linux/amd64")
	root := rootOf(t, img)
	_, e, err := root.Resolve("/usr/local/bin/pause")
	if err != nil || e.Type != File || e.Mode != 0o755 || !bytes.Equal(e.Data, want) {
		t.Errorf("/usr/local/bin/pause in the image: err %v, entry %+v; want the prebuilt file, mode 0755", err, e)
	}
	conf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(conf.Config.Entrypoint, " "); got != "/usr/local/bin/pause" {
		t.Errorf("entrypoint %q, want /usr/local/bin/pause", got)
	}

	for _, tt := range []struct{ name, platform, file, wantErr string }{
		{"unset variable", "linux/amd64", "${NOT_SET}/pause", "NOT_SET unset"},
		{"missing file", "linux/amd64", "${OTHER_BIN_DIR}/absent", "absent"},
		{"another architecture", "linux/arm64", "${OTHER_BIN_DIR}/pause", "ELF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(t.Context(), cfg(spec(tt.platform, tt.file)))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Build error = %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
}
