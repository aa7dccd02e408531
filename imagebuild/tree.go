package imagebuild

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// EntryType is the kind of a Tree entry.
type EntryType int

// The kinds of entries a layer holds. Hard links from .debs become regular files.
const (
	Dir EntryType = iota
	File
	Symlink
)

// Entry is one file of a Tree. Owner and mode are the whole story: layers carry no timestamps of
// their own (every entry gets the build's fixed time) and no user or group names.
type Entry struct {
	Type EntryType
	// Mode holds the permission bits, setuid, setgid and sticky (0o1777 for /tmp).
	Mode     int64
	UID, GID int
	// Data is a regular file's content.
	Data []byte
	// Target is a symlink's target, as written (absolute or relative).
	Target string
}

// Tree is a root filesystem under assembly. Paths are slash-separated and relative to / ("usr/bin/wg").
// Missing parent directories are created as root-owned 0755 directories.
type Tree struct {
	entries map[string]*Entry
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{entries: map[string]*Entry{}} }

// errConflict reports two different entries for one path.
var errConflict = errors.New("conflicting entries")

// cleanPath turns "./usr/bin/" or "/usr/bin" into "usr/bin"; "" is the root itself.
func cleanPath(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

// Put adds e at p. Adding an identical entry again is a no-op, a directory may be re-added with new
// metadata (the last one wins, as with tar extraction); any other clash is an error.
func (t *Tree) Put(p string, e Entry) error {
	p = cleanPath(p)
	if p == "" {
		return fmt.Errorf("put %q: the root is implicit", p)
	}
	if err := t.parents(p); err != nil {
		return err
	}
	if old, ok := t.entries[p]; ok {
		switch {
		case old.Type == Dir && e.Type == Dir:
		case old.Type == e.Type && old.Mode == e.Mode && old.UID == e.UID && old.GID == e.GID &&
			bytes.Equal(old.Data, e.Data) && old.Target == e.Target:
		default:
			return fmt.Errorf("put %s: %w", p, errConflict)
		}
	}
	t.entries[p] = &e
	return nil
}

// parents makes sure every ancestor of p exists and is a directory.
func (t *Tree) parents(p string) error {
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		if old, ok := t.entries[dir]; ok {
			if old.Type != Dir {
				return fmt.Errorf("put %s: parent %s: %w", p, dir, errConflict)
			}
			continue
		}
		t.entries[dir] = &Entry{Type: Dir, Mode: 0o755}
	}
	return nil
}

// Get returns the entry at p itself (symlinks not followed).
func (t *Tree) Get(p string) (Entry, bool) {
	e, ok := t.entries[cleanPath(p)]
	if !ok {
		return Entry{}, false
	}
	return *e, true
}

// Paths lists every path in lexical order, the order a layer writes them.
func (t *Tree) Paths() []string {
	ps := make([]string, 0, len(t.entries))
	for p := range t.entries {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// maxSymlinks bounds symlink resolution, as the kernel's ELOOP does.
const maxSymlinks = 40

// Resolve follows symlinks in every component of p, inside the tree (an absolute target starts at
// the tree's root, as in the running container), and returns the final path and its entry.
func (t *Tree) Resolve(p string) (string, Entry, error) {
	rest := strings.Split(cleanPath(p), "/")
	cur := ""
	hops := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		next := cleanPath(path.Join(cur, name))
		e, ok := t.entries[next]
		if !ok {
			return "", Entry{}, fmt.Errorf("resolve %s: %s does not exist", p, next)
		}
		if e.Type != Symlink {
			cur = next
			continue
		}
		if hops++; hops > maxSymlinks {
			return "", Entry{}, fmt.Errorf("resolve %s: too many symlinks", p)
		}
		target := e.Target
		if !strings.HasPrefix(target, "/") {
			target = path.Join(cur, target)
		}
		rest = append(strings.Split(cleanPath(target), "/"), rest...)
		cur = ""
	}
	e, ok := t.entries[cur]
	if !ok {
		return "", Entry{}, fmt.Errorf("resolve %s: nothing there", p)
	}
	return cur, *e, nil
}

// Tar writes the tree as an uncompressed layer: entries in lexical order (parents first), every time
// set to mtime, owners numeric only, no PAX time records. The same tree always gives the same bytes.
func (t *Tree) Tar(mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime = mtime.UTC().Truncate(time.Second)
	for _, p := range t.Paths() {
		e := t.entries[p]
		h := &tar.Header{Name: p, Mode: e.Mode, Uid: e.UID, Gid: e.GID, ModTime: mtime, Format: tar.FormatPAX}
		switch e.Type {
		case Dir:
			h.Typeflag, h.Name = tar.TypeDir, p+"/"
		case File:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.Data))
		case Symlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.Target
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
		if e.Type == File {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, fmt.Errorf("write %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer: %w", err)
	}
	return buf.Bytes(), nil
}
