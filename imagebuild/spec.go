package imagebuild

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// Spec is images/images.yaml: every image the project builds and what goes into each.
type Spec struct {
	// Registry prefixes every image name (ghcr.io/interlink-k8s-mesh); make push replaces it.
	Registry string `json:"registry"`
	// Source is the org.opencontainers.image.source label.
	Source string `json:"source"`
	// Platforms are GOOS/GOARCH pairs; each image has one manifest per platform in its index.
	Platforms []string `json:"platforms"`
	// Exclude drops these paths of every package (documentation, locales, gconv…); the packages'
	// copyright files are kept.
	Exclude []string    `json:"exclude"`
	Images  []ImageSpec `json:"images"`
}

// ImageSpec is one image.
type ImageSpec struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Binary is a main package ("./cmd/mesh-agent"), built static (CGO_ENABLED=0) for each platform
	// and installed as /usr/local/bin/<its last element>. Empty for images made of packages only.
	Binary string `json:"binary,omitempty"`
	// File is a prebuilt static executable installed as /usr/local/bin/<its base name>, instead of
	// Binary: for test images of another project's release binaries (InterLink's VK and API
	// server). ${VAR} expands from the build's environment (not in the base name); a relative path
	// is relative to Config.Dir (the current directory by default). A spec with a File has one
	// platform, the file's (the build checks its ELF header).
	File string `json:"file,omitempty"`
	// Entrypoint defaults to the binary.
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	// User is the uid and gid the image runs as; 65532 (nonroot) or 0. /run (and /var/run, a
	// symlink to it) belongs to this user.
	User int `json:"user"`
	// Ports are exposed ports, "4000/tcp".
	Ports []string `json:"ports,omitempty"`
	// Env are the image's environment variables beyond PATH, "NAME=value".
	Env []string `json:"env,omitempty"`
	// Debs are the Debian packages whose files go into the image, pinned in the lock file.
	Debs []DebSpec `json:"debs,omitempty"`
	// Symlinks maps a link path to its target: what a package's maintainer script would have made
	// (update-alternatives), or busybox applets.
	Symlinks map[string]string `json:"symlinks,omitempty"`
}

// DebSpec names a package and, optionally, the only paths of it the image needs.
type DebSpec struct {
	Name string `json:"name"`
	// Paths, when set, keeps only these paths (and what lies under them).
	Paths []string `json:"paths,omitempty"`
}

// UnmarshalJSON accepts a bare package name as well as {name, paths}.
func (d *DebSpec) UnmarshalJSON(b []byte) error {
	var name string
	if json.Unmarshal(b, &name) == nil {
		*d = DebSpec{Name: name}
		return nil
	}
	type plain DebSpec
	return json.Unmarshal(b, (*plain)(d))
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*$`)
	portRE = regexp.MustCompile(`^[0-9]{1,5}/(tcp|udp|sctp)$`)
)

// ParseSpec reads and validates images.yaml; unknown fields are errors.
func ParseSpec(b []byte) (Spec, error) {
	var s Spec
	if err := yaml.UnmarshalStrict(b, &s); err != nil {
		return Spec{}, fmt.Errorf("parse image spec: %w", err)
	}
	return s, s.validate()
}

func (s Spec) validate() error {
	if s.Registry == "" || s.Source == "" || len(s.Platforms) == 0 {
		return fmt.Errorf("image spec: registry, source and platforms are required")
	}
	for _, p := range s.Platforms {
		if _, _, err := splitPlatform(p); err != nil {
			return err
		}
	}
	seen, seenBin := map[string]bool{}, map[string]bool{}
	for _, im := range s.Images {
		if !nameRE.MatchString(im.Name) || seen[im.Name] {
			return fmt.Errorf("image spec: image name %q is invalid or repeated", im.Name)
		}
		seen[im.Name] = true
		if im.Binary == "" && im.File == "" && len(im.Entrypoint) == 0 {
			return fmt.Errorf("image spec: %s: binary, file or entrypoint is required", im.Name)
		}
		if im.Binary != "" && im.File != "" {
			return fmt.Errorf("image spec: %s: binary and file exclude each other", im.Name)
		}
		if im.File != "" {
			if len(s.Platforms) != 1 {
				return fmt.Errorf("image spec: %s: a prebuilt file is one platform's executable; the spec names %d platforms", im.Name, len(s.Platforms))
			}
			if strings.Contains(path.Base(im.File), "$") {
				return fmt.Errorf("image spec: %s: file %q: a variable may name the directory, not the file", im.Name, im.File)
			}
		}
		if im.Binary != "" || im.File != "" {
			if seenBin[im.binaryName()] {
				return fmt.Errorf("image spec: %s: another image already installs a binary named %s", im.Name, im.binaryName())
			}
			seenBin[im.binaryName()] = true
		}
		if im.User != 0 && im.User != nonrootUID {
			return fmt.Errorf("image spec: %s: user must be 0 or %d (the users /etc/passwd has)", im.Name, nonrootUID)
		}
		for _, p := range im.Ports {
			if !portRE.MatchString(p) {
				return fmt.Errorf("image spec: %s: port %q is not like 4000/tcp", im.Name, p)
			}
		}
		for _, e := range im.Env {
			if name, _, ok := strings.Cut(e, "="); !ok || name == "" || name == "PATH" {
				return fmt.Errorf("image spec: %s: env %q is not NAME=value (PATH is the image's own)", im.Name, e)
			}
		}
		for _, d := range im.Debs {
			if d.Name == "" {
				return fmt.Errorf("image spec: %s: a package has no name", im.Name)
			}
		}
		for link, target := range im.Symlinks {
			if !path.IsAbs(link) || target == "" {
				return fmt.Errorf("image spec: %s: symlink %q -> %q: the link must be absolute, the target set", im.Name, link, target)
			}
		}
	}
	return nil
}

// splitPlatform splits "linux/arm64".
func splitPlatform(p string) (goos, goarch string, err error) {
	goos, goarch, ok := strings.Cut(p, "/")
	if !ok || goos != "linux" || debArch(goarch) == "" {
		return "", "", fmt.Errorf("image spec: platform %q: want linux/amd64 or linux/arm64", p)
	}
	return goos, goarch, nil
}

// debArch maps a GOARCH to Debian's name for it.
func debArch(goarch string) string {
	switch goarch {
	case "amd64", "arm64":
		return goarch
	}
	return ""
}

// Image returns the image called name.
func (s Spec) Image(name string) (ImageSpec, bool) {
	i := slices.IndexFunc(s.Images, func(im ImageSpec) bool { return im.Name == name })
	if i < 0 {
		return ImageSpec{}, false
	}
	return s.Images[i], true
}

// Packages lists the lock entries the images need on every platform, or an error naming every
// package the lock lacks.
func (s Spec) Packages(l Lock) ([]Package, error) {
	var out []Package
	var missing []string
	for _, plat := range s.Platforms {
		_, goarch, _ := splitPlatform(plat)
		for _, im := range s.Images {
			for _, d := range im.Debs {
				p, ok := l.Find(d.Name, debArch(goarch))
				if !ok {
					missing = append(missing, d.Name+":"+debArch(goarch))
					continue
				}
				if !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("lock file lacks %s: run go run ./cmd/ikm-images lock", strings.Join(slices.Compact(missing), ", "))
	}
	return out, nil
}

// PackageNames lists every package the images name, sorted.
func (s Spec) PackageNames() []string {
	var names []string
	for _, im := range s.Images {
		for _, d := range im.Debs {
			names = append(names, d.Name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// binaryName is the file name of the image's binary (built or prebuilt).
func (im ImageSpec) binaryName() string {
	if im.File != "" {
		return path.Base(im.File)
	}
	return path.Base(im.Binary)
}

// entrypoint is the configured entrypoint or the installed binary.
func (im ImageSpec) entrypoint() []string {
	if len(im.Entrypoint) > 0 {
		return im.Entrypoint
	}
	return []string{"/usr/local/bin/" + im.binaryName()}
}

// userString is the config's User field, "uid:gid".
func (im ImageSpec) userString() string {
	u := strconv.Itoa(im.User)
	return u + ":" + u
}
