package imagebuild

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

var testMeta = Meta{Version: "v1.2.3", Revision: "0123456789abcdef", Source: "https://example.org/repo", Created: epoch}

// testImage assembles a two-layer image from fixed inputs.
func testImage(t *testing.T, goarch string) v1.Image {
	t.Helper()
	im := ImageSpec{Name: "demo", Binary: "./cmd/demo", User: nonrootUID, Ports: []string{"8080/tcp"}}
	base, err := baseTree(im.User)
	if err != nil {
		t.Fatal(err)
	}
	bin := NewTree()
	if err := bin.Put("usr/local/bin/demo", Entry{Type: File, Mode: 0o755, Data: []byte("binary for " + goarch)}); err != nil {
		t.Fatal(err)
	}
	img, err := newImage(im, goarch, testMeta, []layer{{base, "base"}, {bin, "go build ./cmd/demo"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestImageGolden pins the digests of the pure assembly: the base layer, a binary layer, the config
// and the index. A change here changes every image's digest; say why in the commit.
func TestImageGolden(t *testing.T) {
	var b strings.Builder
	imgs := map[string]v1.Image{}
	for _, plat := range []string{"linux/arm64", "linux/amd64"} {
		img := testImage(t, strings.TrimPrefix(plat, "linux/"))
		imgs[plat] = img
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		fmt.Fprintf(&b, "%s manifest %s %s\n", plat, m.MediaType, d)
		fmt.Fprintf(&b, "%s config %s %s\n", plat, m.Config.MediaType, m.Config.Digest)
		for _, l := range m.Layers {
			fmt.Fprintf(&b, "%s layer %s %s %d\n", plat, l.MediaType, l.Digest, l.Size)
		}
	}
	idx, err := newIndex(imgs, testMeta.labels(ImageSpec{Name: "demo"}))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	fmt.Fprintf(&b, "index %s\n", d)
	im, _ := idx.IndexManifest()
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s", im.MediaType)
	}
	for _, m := range im.Manifests {
		fmt.Fprintf(&b, "index entry %s/%s %s\n", m.Platform.OS, m.Platform.Architecture, m.Digest)
	}
	cfg, err := imgs["linux/amd64"].RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var pretty map[string]any
	json.Unmarshal(cfg, &pretty)
	out, _ := json.MarshalIndent(pretty, "", "  ")
	golden(t, "image.golden", []byte(b.String()+string(out)+"\n"))
}

func TestBaseTree(t *testing.T) {
	for _, user := range []int{0, nonrootUID} {
		base, err := baseTree(user)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base.Tar(epoch)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, fmt.Sprintf("base-%d.golden", user), []byte(listing(t, raw)))
		// The user's socket directory, reached through /var/run as the plugin's default does.
		p, e, err := base.Resolve("/var/run")
		if err != nil || p != "run" || e.Type != Dir || e.UID != user || e.Mode&0o200 == 0 {
			t.Errorf("user %d: /var/run resolves to %q %+v %v; want run, a directory the user can write", user, p, e, err)
		}
	}
}
