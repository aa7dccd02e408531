package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path"
	"strings"
)

// debFilter decides which files of a package go into an image.
type debFilter struct {
	// only, when set, keeps just these paths (and what lies under them).
	only []string
	// exclude drops these paths (and what lies under them); copyright files are always kept.
	exclude []string
}

// matchAny reports whether p is one of patterns (path.Match syntax) or lies under one.
func matchAny(patterns []string, p string) bool {
	for _, pat := range patterns {
		pat = cleanPath(pat)
		for q := p; q != "."; q = path.Dir(q) {
			if ok, _ := path.Match(pat, q); ok {
				return true
			}
		}
	}
	return false
}

// isCopyright reports a package's license file, which ships with whatever else of it is kept.
func isCopyright(p string) bool {
	return strings.HasPrefix(p, "usr/share/doc/") && path.Base(p) == "copyright" && strings.Count(p, "/") == 4
}

func (f debFilter) keep(p string) bool {
	if isCopyright(p) {
		return true
	}
	if matchAny(f.exclude, p) {
		return false
	}
	return len(f.only) == 0 || matchAny(f.only, p)
}

// addDebTar adds the files of a package's data archive (dpkg-deb --fsys-tarfile) that f keeps to t,
// owned by root. Hard links become copies of their target.
func addDebTar(t *Tree, r io.Reader, f debFilter) error {
	tr := tar.NewReader(r)
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read package archive: %w", err)
		}
		p := cleanPath(h.Name)
		if p == "" || !f.keep(p) {
			continue
		}
		mode := h.Mode & 0o7777
		var e Entry
		switch h.Typeflag {
		case tar.TypeDir:
			e = Entry{Type: Dir, Mode: mode}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
			files[p] = data
			e = Entry{Type: File, Mode: mode, Data: data}
		case tar.TypeSymlink:
			e = Entry{Type: Symlink, Mode: 0o777, Target: h.Linkname}
		case tar.TypeLink:
			data, ok := files[cleanPath(h.Linkname)]
			if !ok {
				return fmt.Errorf("hard link %s: target %s not kept or not seen", p, h.Linkname)
			}
			e = Entry{Type: File, Mode: mode, Data: data}
		default:
			return fmt.Errorf("add %s: unsupported tar type %q", p, h.Typeflag)
		}
		if err := t.Put(p, e); err != nil {
			return err
		}
	}
}

// debData returns the data archive (a tar) of the .deb at file, through dpkg-deb, which any machine
// with apt has; it handles every compression Debian uses.
func debData(ctx context.Context, file string) ([]byte, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", file)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", file, err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}
