package imagebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Config of a build. Spec, Lock, Out, Cache and Meta are required.
type Config struct {
	Spec Spec
	Lock Lock
	// Dir is the module root where go build runs. Default: the current directory.
	Dir string
	// Out receives one OCI archive per image, <name>.tar (make images: bin/images).
	Out string
	// Cache is the machine-wide cache (IKM_CACHE); verified .debs live in Cache/debs.
	Cache string
	Meta  Meta
	// Images limits the build to these names. Default: every image of the spec.
	Images []string
	// Logger reports progress. Default: discard.
	Logger *slog.Logger
	// Getenv expands ${VAR} in an image's file. Default: os.Getenv.
	Getenv func(string) string
}

// Result describes one image built.
type Result struct {
	Name string
	// Ref is the name the archive gives the index: <registry>/<name>:<version>.
	Ref    string
	Digest v1.Hash
	// Archive is the OCI archive's path and ArchiveSize its size in bytes.
	Archive     string
	ArchiveSize int64
	// Sizes is what one platform pulls (compressed layers, config, manifest), by platform.
	Sizes map[string]int64
}

func (c *Config) validate() error {
	if c.Out == "" || c.Cache == "" || c.Meta.Version == "" || c.Meta.Created.IsZero() {
		return errors.New("build images: Out, Cache, Meta.Version and Meta.Created are required")
	}
	if err := c.Spec.validate(); err != nil {
		return err
	}
	for _, n := range c.Images {
		if _, ok := c.Spec.Image(n); !ok {
			return fmt.Errorf("build images: no image %q in the spec", n)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Meta.Source == "" {
		c.Meta.Source = c.Spec.Source
	}
	return nil
}

// selected returns the spec restricted to the images asked for.
func (c *Config) selected() Spec {
	s := c.Spec
	if len(c.Images) > 0 {
		s.Images = slices.DeleteFunc(slices.Clone(s.Images), func(im ImageSpec) bool { return !slices.Contains(c.Images, im.Name) })
	}
	return s
}

// FetchPackages makes sure every package the spec's images need is in the cache, verified.
func FetchPackages(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	return cfg.fetch(ctx)
}

// fetch is FetchPackages of a validated configuration.
func (c *Config) fetch(ctx context.Context) error {
	pkgs, err := c.selected().Packages(c.Lock)
	if err != nil {
		return err
	}
	return debCache{dir: filepath.Join(c.Cache, "debs"), log: c.Logger}.ensure(ctx, pkgs)
}

// Relock pins the candidate version of every package the spec names, for every platform.
func Relock(ctx context.Context, spec Spec, cache string, log *slog.Logger) (Lock, error) {
	var arches []string
	for _, p := range spec.Platforms {
		_, goarch, err := splitPlatform(p)
		if err != nil {
			return nil, err
		}
		arches = append(arches, debArch(goarch))
	}
	return debCache{dir: filepath.Join(cache, "debs"), log: log}.relock(ctx, spec.PackageNames(), arches)
}

// Build compiles the binaries, assembles every image for every platform, checks that each ELF file
// in it loads, and writes one OCI archive per image into Out.
func Build(ctx context.Context, cfg Config) ([]Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := cfg.fetch(ctx); err != nil {
		return nil, err
	}
	spec := cfg.selected()
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.Out, err)
	}
	debs := debReader{dir: filepath.Join(cfg.Cache, "debs"), data: map[string][]byte{}}
	perImage := map[string]map[string]v1.Image{}
	prebuilt, err := readPrebuilt(cfg, spec)
	if err != nil {
		return nil, err
	}
	for _, plat := range spec.Platforms {
		_, goarch, _ := splitPlatform(plat)
		bins, err := goBuild(ctx, cfg, spec, goarch)
		if err != nil {
			return nil, err
		}
		if bins == nil {
			bins = map[string][]byte{}
		}
		maps.Copy(bins, prebuilt)
		for _, im := range spec.Images {
			layers, err := imageLayers(ctx, im, goarch, spec.Exclude, cfg.Lock, &debs, bins)
			if err != nil {
				return nil, fmt.Errorf("assemble %s for %s: %w", im.Name, plat, err)
			}
			img, err := newImage(im, goarch, cfg.Meta, layers)
			if err != nil {
				return nil, err
			}
			if perImage[im.Name] == nil {
				perImage[im.Name] = map[string]v1.Image{}
			}
			perImage[im.Name][plat] = img
		}
	}
	var results []Result
	for _, im := range spec.Images {
		r, err := writeImage(cfg, spec, im, perImage[im.Name])
		if err != nil {
			return nil, err
		}
		cfg.Logger.Info("image", "ref", r.Ref, "digest", r.Digest.String(), "archive", r.Archive, "bytes", r.ArchiveSize)
		results = append(results, r)
	}
	return results, nil
}

// writeImage indexes one image's platforms and writes its archive.
func writeImage(cfg Config, spec Spec, im ImageSpec, imgs map[string]v1.Image) (Result, error) {
	idx, err := newIndex(imgs, cfg.Meta.labels(im))
	if err != nil {
		return Result{}, err
	}
	r := Result{Name: im.Name, Ref: spec.Registry + "/" + im.Name + ":" + cfg.Meta.Version, Sizes: map[string]int64{}}
	if r.Digest, err = idx.Digest(); err != nil {
		return Result{}, err
	}
	for plat, img := range imgs {
		if r.Sizes[plat], err = pullSize(img); err != nil {
			return Result{}, err
		}
	}
	r.Archive = filepath.Join(cfg.Out, im.Name+".tar")
	if r.ArchiveSize, err = writeArchive(r.Archive, idx, r.Ref, cfg.Meta.Version, cfg.Meta.Created); err != nil {
		return Result{}, fmt.Errorf("write %s: %w", r.Archive, err)
	}
	return r, nil
}

// pullSize is what a runtime downloads for img: manifest, config and compressed layers.
func pullSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// imageLayers assembles the layers of one image for one architecture: the base, the packages with
// the spec's symlinks, the binary. The whole root filesystem is checked with checkELF.
func imageLayers(ctx context.Context, im ImageSpec, goarch string, exclude []string, lock Lock, debs *debReader, bins map[string][]byte) ([]layer, error) {
	base, err := baseTree(im.User)
	if err != nil {
		return nil, err
	}
	layers := []layer{{base, fmt.Sprintf("base: users root and nonroot, /tmp, /run owned by %d", im.User)}}
	if len(im.Debs) > 0 || len(im.Symlinks) > 0 {
		t := NewTree()
		var names []string
		for _, d := range im.Debs {
			p, ok := lock.Find(d.Name, debArch(goarch))
			if !ok {
				return nil, fmt.Errorf("lock file lacks %s:%s", d.Name, debArch(goarch))
			}
			data, err := debs.read(ctx, p)
			if err != nil {
				return nil, err
			}
			if err := addDebTar(t, bytes.NewReader(data), debFilter{only: d.Paths, exclude: exclude}); err != nil {
				return nil, fmt.Errorf("add %s: %w", p.File(), err)
			}
			names = append(names, p.Name+"="+p.Version)
		}
		for _, link := range slices.Sorted(maps.Keys(im.Symlinks)) {
			if err := t.Put(link, Entry{Type: Symlink, Mode: 0o777, Target: im.Symlinks[link]}); err != nil {
				return nil, err
			}
		}
		layers = append(layers, layer{t, "debian packages " + strings.Join(names, " ")})
	}
	if im.Binary != "" || im.File != "" {
		t := NewTree()
		if err := t.Put("usr/local/bin/"+im.binaryName(), Entry{Type: File, Mode: 0o755, Data: bins[im.binaryName()]}); err != nil {
			return nil, err
		}
		how := "go build " + im.Binary
		if im.File != "" {
			how = "prebuilt " + im.binaryName()
		}
		layers = append(layers, layer{t, how})
	}
	root, err := merge(layers)
	if err != nil {
		return nil, err
	}
	if err := checkELF(root, goarch); err != nil {
		return nil, fmt.Errorf("check ELF files: %w", err)
	}
	for _, ep := range im.entrypoint()[:1] {
		if _, e, err := root.Resolve(ep); err != nil || e.Type != File || e.Mode&0o111 == 0 {
			return nil, fmt.Errorf("entrypoint %s is not an executable file in the image", ep)
		}
	}
	return layers, nil
}

// merge flattens layers into the root filesystem a container would see (no whiteouts are used).
func merge(layers []layer) (*Tree, error) {
	root := NewTree()
	for _, l := range layers {
		for _, p := range l.tree.Paths() {
			e := l.tree.entries[p]
			if old, ok := root.entries[p]; ok && old.Type == Dir && e.Type == Dir {
				continue // a later layer's implicit parent keeps the earlier directory's owner
			}
			root.entries[p] = e
		}
	}
	return root, nil
}

// debReader reads the data archives of cached packages once each.
type debReader struct {
	dir  string
	data map[string][]byte
}

func (r *debReader) read(ctx context.Context, p Package) ([]byte, error) {
	if b, ok := r.data[p.SHA256]; ok {
		return b, nil
	}
	b, err := debData(ctx, filepath.Join(r.dir, p.SHA256+".deb"))
	if err != nil {
		return nil, err
	}
	r.data[p.SHA256] = b
	return b, nil
}

// readPrebuilt reads the images' prebuilt files, by installed name.
func readPrebuilt(cfg Config, spec Spec) (map[string][]byte, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	out := map[string][]byte{}
	for _, im := range spec.Images {
		if im.File == "" {
			continue
		}
		var unset []string
		file := os.Expand(im.File, func(k string) string {
			v := getenv(k)
			if v == "" {
				unset = append(unset, k)
			}
			return v
		})
		if len(unset) > 0 {
			return nil, fmt.Errorf("image %s: file %s: %s unset", im.Name, im.File, strings.Join(unset, ", "))
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(cfg.Dir, file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.Name, err)
		}
		out[im.binaryName()] = b
	}
	return out, nil
}

// goBuild builds the images' binaries for goarch, static and reproducible (-trimpath, no VCS
// stamp, version from Meta), into Out/.build/<goarch>, and returns them by name.
func goBuild(ctx context.Context, cfg Config, spec Spec, goarch string) (map[string][]byte, error) {
	var pkgs []string
	for _, im := range spec.Images {
		if im.Binary != "" {
			pkgs = append(pkgs, im.Binary)
		}
	}
	if len(pkgs) == 0 {
		return nil, nil
	}
	dir := filepath.Join(cfg.Out, ".build", goarch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	start := time.Now()
	cfg.Logger.Info("go build", "goarch", goarch, "packages", strings.Join(pkgs, " "))
	args := append([]string{"build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.version=" + cfg.Meta.Version, "-o", dir + string(filepath.Separator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = cfg.Dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	stop := heartbeat(cfg.Logger, "go build "+goarch, start)
	err := cmd.Run()
	stop()
	if err != nil {
		return nil, fmt.Errorf("go build for %s: %w: %s", goarch, err, lastLines(stderr.String(), 10))
	}
	cfg.Logger.Info("go build done", "goarch", goarch, "elapsed", time.Since(start).Round(time.Millisecond))
	bins := map[string][]byte{}
	for _, im := range spec.Images {
		if im.Binary == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, im.binaryName()))
		if err != nil {
			return nil, fmt.Errorf("read built binary: %w", err)
		}
		bins[im.binaryName()] = b
	}
	return bins, nil
}

// heartbeat logs every 30 s while a long step runs; stop ends it.
func heartbeat(log *slog.Logger, what string, start time.Time) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(30 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				log.Info("still running", "step", what, "elapsed", time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done); <-exited }
}
