// Command mesh-agent is the sidecar injected into every offloaded pod: it runs an embedded
// wireguard-go device whose datagrams travel over a WebSocket to the pod's shadow pod in the local
// cluster, so the remote pod answers on its local identity and reaches local Services.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "mesh-agent: %v\n", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, _ func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mesh-agent", flag.ContinueOnError)
	fs.SetOutput(stdout)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mesh-agent [flags]\n\nJoins an offloaded pod to its shadow pod's WireGuard mesh over a WebSocket tunnel.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintf(stdout, "mesh-agent %s\n", version)
		return nil
	}
	return errors.New("the mesh data path is not built yet: only --help and --version work in this release")
}
