package imagebuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// debCache keeps verified .debs in dir, named by their SHA-256, so every clone and every build on
// the machine shares them and a lock change fetches only what changed.
type debCache struct {
	dir string
	log *slog.Logger
}

// errNeedRoot reports a step that changes the machine's apt configuration.
var errNeedRoot = errors.New("needs root")

func (c debCache) path(p Package) string { return filepath.Join(c.dir, p.SHA256+".deb") }

// fileSHA256 returns the hex SHA-256 of a file.
func fileSHA256(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// missing lists the packages without a verified copy in the cache; a corrupt copy is removed.
func (c debCache) missing(pkgs []Package) []Package {
	var out []Package
	for _, p := range pkgs {
		sum, err := fileSHA256(c.path(p))
		if err == nil && sum == p.SHA256 {
			continue
		}
		if err == nil {
			c.log.Warn("removing a cached package whose checksum does not match the lock", "package", p.File())
			os.Remove(c.path(p))
		}
		out = append(out, p)
	}
	return out
}

// ensure downloads, verifies and caches every package of pkgs not cached yet, with apt-get. When a
// foreign architecture is not configured or the package index lacks a pinned version, it configures
// the architecture and updates the index (as root) and tries once more.
func (c debCache) ensure(ctx context.Context, pkgs []Package) error {
	todo := c.missing(pkgs)
	if len(todo) == 0 {
		return nil
	}
	start := time.Now()
	c.log.Info("downloading Debian packages with apt-get (once; cached by checksum)", "count", len(todo), "cache", c.dir)
	specs := make([]string, len(todo))
	var arches []string
	for i, p := range todo {
		specs[i] = p.Name + "=" + p.Version
		if p.Arch != "all" {
			specs[i] = p.Name + ":" + p.Arch + "=" + p.Version
			arches = append(arches, p.Arch)
		}
	}
	files, cleanup, err := c.download(ctx, specs, arches)
	if err != nil {
		return err
	}
	defer cleanup()
	for _, p := range todo {
		src, ok := files[p.File()]
		if !ok {
			return fmt.Errorf("download %s: apt-get did not write it", p.File())
		}
		if err := c.store(src, p.SHA256); err != nil {
			return fmt.Errorf("download %s: %w", p.File(), err)
		}
	}
	c.log.Info("packages cached", "count", len(todo), "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// store moves a downloaded .deb into the cache if its SHA-256 is want.
func (c debCache) store(src, want string) error {
	sum, err := fileSHA256(src)
	if err != nil {
		return err
	}
	if sum != want {
		return fmt.Errorf("checksum %s, the lock pins %s", sum, want)
	}
	return os.Rename(src, filepath.Join(c.dir, sum+".deb"))
}

// download runs apt-get download for specs in a fresh directory of the cache and returns the files
// it wrote by name; cleanup removes what the caller did not move away.
func (c debCache) download(ctx context.Context, specs, arches []string) (files map[string]string, cleanup func(), err error) {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("create package cache: %w", err)
	}
	tmp, err := os.MkdirTemp(c.dir, ".download-")
	if err != nil {
		return nil, nil, fmt.Errorf("create download dir: %w", err)
	}
	cleanup = func() { os.RemoveAll(tmp) }
	// apt's _apt user must be able to write there, or apt warns and downloads as root anyway.
	os.Chmod(tmp, 0o755)
	if err := c.aptDownload(ctx, tmp, specs); err != nil {
		c.log.Info("apt-get download failed; configuring architectures and updating the package index", "error", err)
		if err := prepareApt(ctx, c.log, arches); err != nil {
			cleanup()
			return nil, nil, err
		}
		if err := c.aptDownload(ctx, tmp, specs); err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("%w (is each pinned version still in the archive? \"go run ./cmd/ikm-images lock\" pins the current ones)", err)
		}
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	files = map[string]string{}
	for _, e := range entries {
		files[e.Name()] = filepath.Join(tmp, e.Name())
	}
	return files, cleanup, nil
}

func (c debCache) aptDownload(ctx context.Context, dir string, specs []string) error {
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download", "-q"}, specs...)...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get download: %w: %s", err, lastLines(out.String(), 3))
	}
	return nil
}

// prepareApt adds the foreign architectures apt does not know yet and updates the package index.
func prepareApt(ctx context.Context, log *slog.Logger, arches []string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("configure apt: %w: run as root, or: dpkg --add-architecture arm64 && apt-get update", errNeedRoot)
	}
	known, err := output(ctx, "dpkg", "--print-architecture")
	if err != nil {
		return err
	}
	foreign, err := output(ctx, "dpkg", "--print-foreign-architectures")
	if err != nil {
		return err
	}
	have := strings.Fields(known + " " + foreign)
	slices.Sort(arches)
	for _, a := range slices.Compact(arches) {
		if slices.Contains(have, a) {
			continue
		}
		log.Info("dpkg --add-architecture", "arch", a)
		if _, err := output(ctx, "dpkg", "--add-architecture", a); err != nil {
			return err
		}
	}
	log.Info("apt-get update (a few seconds)")
	_, err = output(ctx, "apt-get", "update", "-qq")
	return err
}

// output runs a command and returns its trimmed standard output.
func output(ctx context.Context, name string, args ...string) (string, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(stderr.String(), 3))
	}
	return strings.TrimSpace(out.String()), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// relock downloads the candidate version of every package for every architecture, caches it and
// returns the lock that pins them.
func (c debCache) relock(ctx context.Context, names, arches []string) (Lock, error) {
	if err := prepareApt(ctx, c.log, arches); err != nil {
		return nil, err
	}
	var specs []string
	for _, n := range names {
		// An architecture-independent package has no candidate under n:arm64; ask for it once.
		a, err := output(ctx, "apt-cache", "show", "--no-all-versions", "-q", n)
		if err != nil {
			return nil, err
		}
		if strings.Contains(a, "\nArchitecture: all\n") {
			specs = append(specs, n)
			continue
		}
		for _, a := range arches {
			specs = append(specs, n+":"+a)
		}
	}
	files, cleanup, err := c.download(ctx, specs, arches)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var l Lock
	for _, f := range files {
		fields, err := output(ctx, "dpkg-deb", "--show", "--showformat=${Package} ${Architecture} ${Version}", f)
		if err != nil {
			return nil, err
		}
		var p Package
		if _, err := fmt.Sscan(fields, &p.Name, &p.Arch, &p.Version); err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		if p.SHA256, err = fileSHA256(f); err != nil {
			return nil, err
		}
		if err := c.store(f, p.SHA256); err != nil {
			return nil, err
		}
		l = append(l, p)
	}
	return l, nil
}
