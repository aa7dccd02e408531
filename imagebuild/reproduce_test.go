package imagebuild

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func fileSum(t *testing.T, p string) string {
	t.Helper()
	s, err := fileSHA256(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestReproducible builds everything a second time, binaries included, into another directory:
// every index digest and every archive byte must be the same.
func TestReproducible(t *testing.T) {
	cfg, first := projectBuild(t)
	cfg.Out = filepath.Join(shared.dir, "b")
	second, err := Build(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	digests := func(rs []Result) map[string]string {
		m := map[string]string{}
		for _, r := range rs {
			m[r.Name] = r.Digest.String() + " archive sha256:" + fileSum(t, r.Archive)
		}
		return m
	}
	if diff := cmp.Diff(digests(first), digests(second)); diff != "" {
		t.Errorf("two builds differ (-first +second):\n%s", diff)
	}
}

// TestPushPull pushes every archive to a registry served in-process on loopback and pulls each
// index back: same index digest, same manifests, same layers.
func TestPushPull(t *testing.T) {
	cfg, results := projectBuild(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/ikm/test"
	for _, r := range results {
		ref, d, err := Push(t.Context(), r.Archive, repo)
		if err != nil {
			t.Fatal(err)
		}
		if want := repo + "/" + r.Name + ":" + cfg.Meta.Version; ref.String() != want || d != r.Digest {
			t.Errorf("pushed %s@%s, want %s@%s", ref, d, want, r.Digest)
		}
		pulled, err := remote.Index(ref, remote.WithContext(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := pulled.Digest(); got != r.Digest {
			t.Errorf("%s: pulled index %s, built %s", r.Name, got, r.Digest)
		}
		im, _ := pulled.IndexManifest()
		for _, desc := range im.Manifests {
			img, err := pulled.Image(desc.Digest)
			if err != nil {
				t.Fatal(err)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range layers {
				rc, err := l.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				_, err = io.Copy(h, rc)
				rc.Close()
				ld, _ := l.Digest()
				if err != nil || "sha256:"+hex.EncodeToString(h.Sum(nil)) != ld.String() {
					t.Errorf("%s %s: pulled layer does not hash to %s", r.Name, desc.Platform, ld)
				}
			}
		}
	}
}
