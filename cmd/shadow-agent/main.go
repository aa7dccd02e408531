// Command shadow-agent runs in the shadow pod of every offloaded pod in the local cluster: it
// terminates the WebSocket tunnel of the offloaded pod's mesh-agent in an embedded wireguard-go
// device and, with iptables DNAT and MASQUERADE, makes the remote pod answer on the shadow pod's
// IP. See shadow-agent --help for the flags and how the VK's template data maps onto them.
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

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/shadowagent"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "shadow-agent: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stdout)
	if err != nil {
		return err
	}
	if o.version {
		fmt.Fprintf(stdout, "shadow-agent %s\n", version)
		return nil
	}
	log, err := newLogger(o.values["log-level"], o.values["log-format"], stderr)
	if err != nil {
		return err
	}
	if name := o.values["name"]; name != "" {
		log = log.With("shadow", name)
	}
	if ns := o.values["namespace"]; ns != "" {
		log = log.With("namespace", ns)
	}
	cfg, err := o.config()
	if err != nil {
		return err
	}
	cfg.Logger = log
	agent, err := shadowagent.New(cfg)
	if err != nil {
		return configFlagError(err)
	}
	log.Info("starting", "version", version, "config", cfg)
	return agent.Run(ctx)
}
