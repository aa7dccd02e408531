package imagebuild

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Package is one Debian package pinned in the lock file.
type Package struct {
	Name string
	// Arch is a Debian architecture (amd64, arm64) or "all".
	Arch    string
	Version string
	// SHA256 is the hex digest of the .deb file.
	SHA256 string
}

// File is the name apt gives the .deb (the epoch's colon escaped as apt does).
func (p Package) File() string {
	return fmt.Sprintf("%s_%s_%s.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"), p.Arch)
}

// Lock pins every package the images use, one line per package and architecture:
// "name arch version sha256". Lines starting with # are comments.
type Lock []Package

// ParseLock reads a lock file.
func ParseLock(b []byte) (Lock, error) {
	var l Lock
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("parse lock line %d: want \"name arch version sha256\", got %q", n, line)
		}
		p := Package{Name: f[0], Arch: f[1], Version: f[2], SHA256: f[3]}
		if d, err := hex.DecodeString(p.SHA256); err != nil || len(d) != 32 {
			return nil, fmt.Errorf("parse lock line %d: %q is not a SHA-256", n, p.SHA256)
		}
		if slices.ContainsFunc(l, func(q Package) bool { return q.Name == p.Name && q.Arch == p.Arch }) {
			return nil, fmt.Errorf("parse lock line %d: %s:%s pinned twice", n, p.Name, p.Arch)
		}
		l = append(l, p)
	}
	return l, sc.Err()
}

// lockHeader opens every lock file written by Format.
const lockHeader = `# Debian 12 (bookworm) packages the images are assembled from: name arch version sha256 of the .deb.
# Written by "go run ./cmd/ikm-images lock" from the packages images/images.yaml names; builds
# refuse a .deb whose SHA-256 differs.
`

// Format writes the lock sorted by name and architecture.
func (l Lock) Format() []byte {
	s := slices.Clone(l)
	slices.SortFunc(s, func(a, b Package) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Arch, b.Arch)) })
	var buf bytes.Buffer
	buf.WriteString(lockHeader)
	for _, p := range s {
		fmt.Fprintf(&buf, "%s %s %s %s\n", p.Name, p.Arch, p.Version, p.SHA256)
	}
	return buf.Bytes()
}

// Find returns the package pinned for arch, or its architecture-independent build.
func (l Lock) Find(name, arch string) (Package, bool) {
	for _, want := range []string{arch, "all"} {
		for _, p := range l {
			if p.Name == name && p.Arch == want {
				return p, true
			}
		}
	}
	return Package{}, false
}
