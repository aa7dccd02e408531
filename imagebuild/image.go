package imagebuild

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonrootUID is the uid and gid of the image user "nonroot", as in distroless images.
const nonrootUID = 65532

// imagePath is every image's PATH.
const imagePath = "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"

// Meta is what identifies one build: it goes into labels and annotations, and Created is the time
// of every file and of the config, so a build of the same commit is the same bytes.
type Meta struct {
	Version, Revision, Source string
	Created                   time.Time
}

// labels are the OCI labels of an image config and the annotations of its index.
func (m Meta) labels(im ImageSpec) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":    im.Name,
		"org.opencontainers.image.source":   m.Source,
		"org.opencontainers.image.revision": m.Revision,
		"org.opencontainers.image.version":  m.Version,
		"org.opencontainers.image.created":  m.Created.UTC().Format(time.RFC3339),
	}
	if im.Description != "" {
		l["org.opencontainers.image.description"] = im.Description
	}
	return l
}

// baseTree holds what every image has: the users root (0) and nonroot (65532), name service
// configuration, /tmp, and /run (with /var/run pointing at it) owned by the image's user so that a
// non-root process can create its sockets there (the plugin's default is /var/run/.plugin.sock).
func baseTree(user int) (*Tree, error) {
	t := NewTree()
	files := []struct {
		path string
		e    Entry
	}{
		{"etc/passwd", Entry{Type: File, Mode: 0o644, Data: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
				"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")}},
		{"etc/group", Entry{Type: File, Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")}},
		{"etc/nsswitch.conf", Entry{Type: File, Mode: 0o644, Data: []byte("hosts: files dns\n")}},
		{"root", Entry{Type: Dir, Mode: 0o700}},
		{"home/nonroot", Entry{Type: Dir, Mode: 0o700, UID: nonrootUID, GID: nonrootUID}},
		{"tmp", Entry{Type: Dir, Mode: 0o1777}},
		{"run", Entry{Type: Dir, Mode: 0o755, UID: user, GID: user}},
		{"var/run", Entry{Type: Symlink, Mode: 0o777, Target: "../run"}},
	}
	for _, f := range files {
		if err := t.Put(f.path, f.e); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// workingDir is the user's home.
func workingDir(user int) string {
	if user == nonrootUID {
		return "/home/nonroot"
	}
	return "/"
}

// layer is one layer under assembly and the history line that says what it is.
type layer struct {
	tree    *Tree
	comment string
}

// newImage assembles one platform's image from its layers. Everything is a function of its inputs:
// the same layers and meta give the same digest.
func newImage(im ImageSpec, goarch string, meta Meta, layers []layer) (v1.Image, error) {
	ports := map[string]struct{}{}
	for _, p := range im.Ports {
		ports[p] = struct{}{}
	}
	created := v1.Time{Time: meta.Created.UTC().Truncate(time.Second)}
	cfg := &v1.ConfigFile{
		Architecture: goarch,
		OS:           "linux",
		Created:      created,
		Config: v1.Config{
			Entrypoint:   im.entrypoint(),
			Cmd:          im.Cmd,
			User:         im.userString(),
			WorkingDir:   workingDir(im.User),
			Env:          append([]string{imagePath}, im.Env...),
			ExposedPorts: ports,
			Labels:       meta.labels(im),
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	if len(ports) == 0 {
		cfg.Config.ExposedPorts = nil
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("set config of %s: %w", im.Name, err)
	}
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		raw, err := l.tree.Tar(meta.Created)
		if err != nil {
			return nil, fmt.Errorf("write layer of %s: %w", im.Name, err)
		}
		gl, err := gzipLayer(raw)
		if err != nil {
			return nil, fmt.Errorf("compress layer of %s: %w", im.Name, err)
		}
		adds = append(adds, mutate.Addendum{Layer: gl, History: v1.History{Created: created, CreatedBy: "ikm-images: " + l.comment}})
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers of %s: %w", im.Name, err)
	}
	return img, nil
}

// gzipLayer compresses a layer once, with a header free of names and times, so its digest depends
// on its content (and Go's compress/gzip) only.
func gzipLayer(raw []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	gz := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// newIndex puts one image per platform into an OCI index annotated like the images' labels.
func newIndex(images map[string]v1.Image, annotations map[string]string) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var adds []mutate.IndexAddendum
	for _, plat := range slices.Sorted(maps.Keys(images)) {
		goos, goarch, err := splitPlatform(plat)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        images[plat],
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: goos, Architecture: goarch}},
		})
	}
	idx = mutate.AppendManifests(idx, adds...)
	return mutate.Annotations(idx, annotations).(v1.ImageIndex), nil
}
