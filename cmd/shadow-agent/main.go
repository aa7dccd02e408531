// Command shadow-agent runs in the shadow pod of every offloaded pod in the local cluster: it terminates
// the WebSocket tunnel of the offloaded pod's mesh-agent in an embedded wireguard-go device and, with
// iptables DNAT and MASQUERADE, makes the remote pod answer on the shadow pod's IP.
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
		fmt.Fprintf(os.Stderr, "shadow-agent: %v\n", err)
		os.Exit(1)
	}
}

func run(_ context.Context, args []string, _ func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("shadow-agent", flag.ContinueOnError)
	fs.SetOutput(stdout)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: shadow-agent [flags]\n\nTerminates an offloaded pod's mesh tunnel and forwards the shadow pod's traffic to it.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintf(stdout, "shadow-agent %s\n", version)
		return nil
	}
	return errors.New("the mesh data path is not built yet: only --help and --version work in this release")
}
