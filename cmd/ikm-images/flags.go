package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/imagebuild"
)

const usage = `Usage: ikm-images <command> [flags]

Builds the images of images/images.yaml as OCI archives (one multi-platform index per image), from
the project's Go packages and the Debian packages pinned in images/debs.lock, with no container
engine. The same commit gives the same digests: every file and the config carry the time of
--source-date-epoch.

Commands:
  build   build the images into --out (make images); fetches missing packages first
  fetch   download and verify the pinned packages into the cache (apt-get; as root it adds the
          arm64 architecture and updates the index when needed)
  lock    pin the current version of every package the spec names, rewriting --lock
  push    push --out/<name>.tar of each image to --registry (make push REGISTRY=host/path)

Flags (each defaults to the environment variable in brackets):
`

// options are the parsed command line.
type options struct {
	command, spec, lock, out, cache, registry string
	version, revision, only                   string
	epoch                                     int64
	verbose                                   bool
	// getenv expands ${VAR} in a spec's prebuilt files.
	getenv func(string) string
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	o := options{getenv: getenv}
	fs := flag.NewFlagSet("ikm-images", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	home, _ := os.UserHomeDir()
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&o.spec, "spec", "images/images.yaml", "the image spec")
	fs.StringVar(&o.lock, "lock", "images/debs.lock", "the package lock file")
	fs.StringVar(&o.out, "out", "bin/images", "where the archives go")
	fs.StringVar(&o.cache, "cache", env("IKM_CACHE", filepath.Join(home, ".cache", "interlink-k8s-mesh")), "machine-wide cache; packages in <cache>/debs [IKM_CACHE]")
	fs.StringVar(&o.version, "version", env("VERSION", "dev"), "image tag and org.opencontainers.image.version [VERSION]")
	fs.StringVar(&o.revision, "revision", env("REVISION", ""), "org.opencontainers.image.revision, the commit [REVISION]")
	epoch := fs.String("source-date-epoch", env("SOURCE_DATE_EPOCH", ""), "Unix time of every file and config, the commit time (required for build) [SOURCE_DATE_EPOCH]")
	fs.StringVar(&o.only, "images", env("IMAGES", ""), "comma-separated image names; empty: all [IMAGES]")
	fs.StringVar(&o.registry, "registry", env("REGISTRY", ""), "push: repository prefix, host[:port]/path [REGISTRY]")
	fs.BoolVar(&o.verbose, "v", false, "log debug details")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fs.Usage()
			return o, flag.ErrHelp
		}
		fs.Usage()
		return o, errors.New("a command is required")
	}
	o.command = args[0]
	if !slices.Contains([]string{"build", "fetch", "lock", "push"}, o.command) {
		return o, fmt.Errorf("unknown command %q (build, fetch, lock or push)", o.command)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *epoch != "" {
		var err error
		if o.epoch, err = strconv.ParseInt(*epoch, 10, 64); err != nil || o.epoch <= 0 {
			return o, fmt.Errorf("--source-date-epoch %q: want a positive Unix time", *epoch)
		}
	}
	if o.command == "build" && o.epoch == 0 {
		return o, errors.New("build: --source-date-epoch (SOURCE_DATE_EPOCH) is required: the commit time, git log -1 --format=%ct")
	}
	if o.command == "push" && o.registry == "" {
		return o, errors.New("push: --registry (REGISTRY) is required, e.g. registry.example:5000/team")
	}
	return o, nil
}

// config reads the spec and the lock and makes the build configuration.
func (o options) config(stderr io.Writer) (imagebuild.Config, error) {
	b, err := os.ReadFile(o.spec)
	if err != nil {
		return imagebuild.Config{}, fmt.Errorf("read spec: %w", err)
	}
	spec, err := imagebuild.ParseSpec(b)
	if err != nil {
		return imagebuild.Config{}, err
	}
	var lock imagebuild.Lock
	if b, err := os.ReadFile(o.lock); err == nil {
		if lock, err = imagebuild.ParseLock(b); err != nil {
			return imagebuild.Config{}, err
		}
	} else if o.command != "lock" {
		return imagebuild.Config{}, fmt.Errorf("read lock: %w", err)
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime}))
	created := time.Unix(max(o.epoch, 1), 0).UTC()
	return imagebuild.Config{
		Spec: spec, Lock: lock, Out: o.out, Cache: o.cache, Images: o.images(spec), Logger: log, Getenv: o.getenv,
		Meta: imagebuild.Meta{Version: o.version, Revision: o.revision, Source: spec.Source, Created: created},
	}, nil
}

// images are the --images names, or every image of the spec.
func (o options) images(spec imagebuild.Spec) []string {
	if o.only != "" {
		return strings.Split(o.only, ",")
	}
	var names []string
	for _, im := range spec.Images {
		names = append(names, im.Name)
	}
	return names
}

// dropTime keeps progress lines short: the time is in the elapsed figures.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
