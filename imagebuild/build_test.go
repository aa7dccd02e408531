package imagebuild

import (
	"archive/tar"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

// shared holds the outputs of the project build every test of this file inspects (built once per
// test binary: the binaries for two architectures take a while).
var shared struct {
	once    sync.Once
	dir     string
	cfg     Config
	results []Result
	err     error
	skip    string
}

func TestMain(m *testing.M) {
	testcluster.Main(m, func() {
		if shared.dir != "" {
			os.RemoveAll(shared.dir)
		}
	})
}

// cacheDir is IKM_CACHE or its default, as the Makefile has it.
func cacheDir(t *testing.T) string {
	if c := os.Getenv("IKM_CACHE"); c != "" {
		return c
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skipf("no IKM_CACHE and no home directory: %v", err)
	}
	return filepath.Join(home, ".cache", "interlink-k8s-mesh")
}

// projectBuild builds every image of images/images.yaml into a temporary directory, once. It
// skips when the pinned packages are neither cached nor downloadable (not root, no apt).
func projectBuild(t *testing.T) (Config, []Result) {
	t.Helper()
	spec, lock := projectSpec(t)
	cache := cacheDir(t)
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "imagebuild-test-")
		if shared.err != nil {
			return
		}
		meta := testMeta
		meta.Source = "" // the spec's
		shared.cfg = Config{Spec: spec, Lock: lock, Dir: "..", Out: filepath.Join(shared.dir, "a"), Cache: cache, Meta: meta,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
		if err := FetchPackages(t.Context(), shared.cfg); err != nil {
			shared.skip = fmt.Sprintf("the pinned Debian packages are not in %s/debs and cannot be fetched (make debs, as root, fetches them): %v", cache, err)
			return
		}
		shared.results, shared.err = Build(t.Context(), shared.cfg)
	})
	if shared.skip != "" {
		t.Skip(shared.skip)
	}
	if shared.err != nil {
		t.Fatalf("build: %v", shared.err)
	}
	return shared.cfg, shared.results
}

// openBuilt opens the archive of one built image; the archive is closed with the test.
func openBuilt(t *testing.T, name string) *Archive {
	t.Helper()
	cfg, _ := projectBuild(t)
	a, err := OpenArchive(filepath.Join(cfg.Out, name+".tar"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// platformImage returns the image of one platform of an index.
func platformImage(t *testing.T, idx v1.ImageIndex, plat string) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS+"/"+d.Platform.Architecture == plat {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no %s image in the index", plat)
	return nil
}

// rootOf flattens an image's layers into the tree a container sees.
func rootOf(t *testing.T, img v1.Image) *Tree {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	root := NewTree()
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		eachEntry(t, rc, func(h *tar.Header, data []byte) {
			e := Entry{Mode: h.Mode, UID: h.Uid, GID: h.Gid, Target: h.Linkname, Data: data}
			switch h.Typeflag {
			case tar.TypeDir:
				e.Type = Dir
			case tar.TypeSymlink:
				e.Type = Symlink
			case tar.TypeReg:
				e.Type = File
			default:
				t.Fatalf("%s: unexpected tar type %q", h.Name, h.Typeflag)
			}
			root.entries[cleanPath(h.Name)] = &e
		})
		rc.Close()
	}
	return root
}

// fileList renders a root filesystem without file sizes (binaries change with every commit).
func fileList(root *Tree) string {
	var b strings.Builder
	for _, p := range root.Paths() {
		e := root.entries[p]
		fmt.Fprintf(&b, "%s %04o %d:%d %s", [...]string{"d", "f", "l"}[e.Type], e.Mode, e.UID, e.GID, p)
		if e.Type == Symlink {
			fmt.Fprintf(&b, " -> %s", e.Target)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestBuiltImages checks every image of the project: a valid index with exactly linux/amd64 and
// linux/arm64, the config (entrypoint, user, working directory, PATH, labels) and the complete file
// list (testdata/files-<image>.golden: nothing missing, nothing stray), with every ELF file loadable
// from the image's own loader and libraries.
func TestBuiltImages(t *testing.T) {
	cfg, results := projectBuild(t)
	var names []string
	for _, r := range results {
		names = append(names, r.Name)
	}
	if diff := cmp.Diff([]string{"interlink-k8s-plugin", "mesh-agent", "shadow-agent", "pause", "echo-server", "netprobe", "iperf3", "wireguard-go", "shell"}, names); diff != "" {
		t.Errorf("images built (-want +got):\n%s", diff)
	}
	for _, r := range results {
		t.Run(r.Name, func(t *testing.T) {
			spec, _ := cfg.Spec.Image(r.Name)
			a := openBuilt(t, r.Name)
			if want := "ghcr.io/interlink-k8s-mesh/" + r.Name + ":" + testMeta.Version; a.Ref != want || r.Ref != want {
				t.Errorf("archive names %q (result %q), want %q", a.Ref, r.Ref, want)
			}
			if d, _ := a.Index.Digest(); d != r.Digest {
				t.Errorf("archive index %s, build reported %s", d, r.Digest)
			}
			if err := validate.Index(a.Index); err != nil {
				t.Fatalf("invalid index: %v", err)
			}
			im, _ := a.Index.IndexManifest()
			var plats []string
			for _, d := range im.Manifests {
				plats = append(plats, d.Platform.String())
			}
			if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, plats); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}
			if im.Annotations["org.opencontainers.image.revision"] != testMeta.Revision {
				t.Errorf("index annotations %v", im.Annotations)
			}
			for _, plat := range plats {
				img := platformImage(t, a.Index, plat)
				cf, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				c := cf.Config
				wantUser := map[string]string{"interlink-k8s-plugin": "65532:65532", "pause": "65532:65532", "echo-server": "65532:65532", "netprobe": "65532:65532", "iperf3": "65532:65532"}[r.Name]
				if wantUser == "" {
					wantUser = "0:0"
				}
				if c.User != wantUser || cf.Architecture != strings.TrimPrefix(plat, "linux/") || !slices.Equal(c.Entrypoint, spec.entrypoint()) ||
					c.WorkingDir != workingDir(spec.User) || !slices.Equal(c.Env, append([]string{imagePath}, spec.Env...)) {
					t.Errorf("%s config: user %q arch %q entrypoint %q workdir %q env %q", plat, c.User, cf.Architecture, c.Entrypoint, c.WorkingDir, c.Env)
				}
				for k, v := range map[string]string{"source": cfg.Spec.Source, "revision": testMeta.Revision, "version": testMeta.Version} {
					if got := c.Labels["org.opencontainers.image."+k]; got != v {
						t.Errorf("%s label %s = %q, want %q", plat, k, got, v)
					}
				}
				root := rootOf(t, img)
				if err := checkELF(root, cf.Architecture); err != nil {
					t.Errorf("%s: %v", plat, err)
				}
				if plat == "linux/amd64" {
					golden(t, "files-"+r.Name+".golden", []byte(fileList(root)))
				}
			}
		})
	}
}
