// Command ikm-images builds the project's OCI images without a container engine (make images),
// pins the Debian packages they are made of (lock), fetches those packages (fetch) and pushes the
// built indexes to a registry (make push). See ikm-images --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/imagebuild"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "ikm-images: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	cfg, err := o.config(stderr)
	if err != nil {
		return err
	}
	start := time.Now()
	switch o.command {
	case "fetch":
		return imagebuild.FetchPackages(ctx, cfg)
	case "lock":
		lock, err := imagebuild.Relock(ctx, cfg.Spec, cfg.Cache, cfg.Logger)
		if err != nil {
			return err
		}
		return os.WriteFile(o.lock, lock.Format(), 0o644)
	case "build":
		results, err := imagebuild.Build(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-22s %-73s %10s %10s %s\n", "IMAGE", "INDEX DIGEST", "AMD64", "ARM64", "ARCHIVE")
		for _, r := range results {
			fmt.Fprintf(stdout, "%-22s %-73s %10s %10s %s\n", r.Name, r.Digest, mib(r.Sizes["linux/amd64"]), mib(r.Sizes["linux/arm64"]), r.Archive)
		}
		fmt.Fprintf(stdout, "built %d images in %s (sizes: what one platform pulls, compressed)\n", len(results), time.Since(start).Round(100*time.Millisecond))
		return nil
	case "push":
		for _, name := range o.images(cfg.Spec) {
			ref, d, err := imagebuild.Push(ctx, filepath.Join(o.out, name+".tar"), o.registry)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "pushed %s@%s\n", ref, d)
		}
		return nil
	}
	return nil // parseFlags admits only the commands above
}

func mib(n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
