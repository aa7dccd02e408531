package imagebuild

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The annotations by which importers name the image of an OCI archive: containerd (ctr images
// import) reads the first, the OCI spec defines the second as the tag.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

// blobs collects the blobs of an index and everything it references, by digest.
func blobs(idx v1.ImageIndex, out map[v1.Hash][]byte) error {
	raw, err := idx.RawManifest()
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	out[d] = raw
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return fmt.Errorf("image %s: %w", desc.Digest, err)
		}
		if out[desc.Digest], err = img.RawManifest(); err != nil {
			return err
		}
		cd, err := img.ConfigName()
		if err != nil {
			return err
		}
		if out[cd], err = img.RawConfigFile(); err != nil {
			return err
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			ld, err := l.Digest()
			if err != nil {
				return err
			}
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return err
			}
			out[ld] = b
		}
	}
	return nil
}

// archiveTree lays an index out as an OCI image layout whose index.json names it ref (full
// reference, for containerd) and tag (for the OCI ref.name annotation).
func archiveTree(idx v1.ImageIndex, ref, tag string) (*Tree, error) {
	all := map[v1.Hash][]byte{}
	if err := blobs(idx, all); err != nil {
		return nil, fmt.Errorf("collect blobs: %w", err)
	}
	desc, err := describeIndex(idx)
	if err != nil {
		return nil, err
	}
	desc.Annotations = map[string]string{annotationContainerdName: ref, annotationRefName: tag}
	top, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{desc}})
	if err != nil {
		return nil, err
	}
	t := NewTree()
	put := func(p string, b []byte) error { return t.Put(p, Entry{Type: File, Mode: 0o644, Data: b}) }
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	if err := put("index.json", top); err != nil {
		return nil, err
	}
	for h, b := range all {
		if err := put(path.Join("blobs", h.Algorithm, h.Hex), b); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func describeIndex(idx v1.ImageIndex) (v1.Descriptor, error) {
	d, err := idx.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := idx.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: types.OCIImageIndex, Digest: d, Size: size}, nil
}

// writeArchive writes idx as an OCI archive (a tar of an image layout) at file, entries sorted and
// timed at mtime, through a temporary file renamed into place.
func writeArchive(file string, idx v1.ImageIndex, ref, tag string, mtime time.Time) (int64, error) {
	t, err := archiveTree(idx, ref, tag)
	if err != nil {
		return 0, err
	}
	b, err := t.Tar(mtime)
	if err != nil {
		return 0, err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return 0, fmt.Errorf("write archive: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return 0, fmt.Errorf("write archive: %w", err)
	}
	return int64(len(b)), nil
}

// Archive is an OCI archive opened for reading: its index and the name it carries.
type Archive struct {
	Index v1.ImageIndex
	// Ref is the io.containerd.image.name annotation (registry/name:tag).
	Ref string
	dir string
}

// Close removes the extracted layout.
func (a *Archive) Close() error { return os.RemoveAll(a.dir) }

// OpenArchive extracts an archive written by Build into a temporary image layout and opens its
// one index. Close removes the layout.
func OpenArchive(file string) (*Archive, error) {
	dir, err := os.MkdirTemp("", "ikm-archive-")
	if err != nil {
		return nil, err
	}
	a := &Archive{dir: dir}
	if err := extractArchive(file, dir); err != nil {
		a.Close()
		return nil, err
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("open layout of %s: %w", file, err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("open layout of %s: %w", file, err)
	}
	im, err := top.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		a.Close()
		return nil, fmt.Errorf("open layout of %s: want one index in index.json (%v)", file, err)
	}
	a.Ref = im.Manifests[0].Annotations[annotationContainerdName]
	if a.Index, err = top.ImageIndex(im.Manifests[0].Digest); err != nil {
		a.Close()
		return nil, fmt.Errorf("open index of %s: %w", file, err)
	}
	return a, nil
}

// extractArchive writes the regular files of a tar into dir, refusing paths that leave it.
func extractArchive(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", file, err)
		}
		name := cleanPath(h.Name)
		if h.Typeflag != tar.TypeReg || name == "" || strings.HasPrefix(path.Clean(h.Name), "..") {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("extract %s: %w", name, err)
		}
	}
}
