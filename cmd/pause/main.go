// Command pause holds a pod's namespaces for the project's test clusters: it sleeps until SIGTERM
// or SIGINT and, as PID 1 of a shared PID namespace, reaps the orphans the kernel hands it.
package main

import (
	"context"
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
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "pause: %v\n", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	switch {
	case len(args) == 1 && args[0] == "--version":
		fmt.Fprintf(stdout, "pause %s\n", version)
		return nil
	case len(args) > 0:
		return fmt.Errorf("takes no arguments but --version, got %q", args)
	}
	children := make(chan os.Signal, 1)
	if len(childExit) > 0 {
		signal.Notify(children, childExit...)
	}
	defer signal.Stop(children)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-children:
			reap()
		}
	}
}
