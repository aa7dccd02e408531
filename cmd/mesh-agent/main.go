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

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshagent"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "mesh-agent: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stdout)
	if err != nil {
		return err
	}
	if o.version {
		fmt.Fprintf(stdout, "mesh-agent %s\n", version)
		return nil
	}
	log, err := newLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(o.config)
	if err != nil {
		return fmt.Errorf("read mesh spec: %w", err)
	}
	spec, err := meshspec.Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", o.config, err)
	}
	agent, err := meshagent.New(meshagent.Config{
		Spec:       spec,
		ListenAddr: o.listen,
		ReadyFile:  o.readyFile,
		UAPIDir:    o.uapiDir,
		BatchSize:  o.batchSize,
		Logger:     log,
	})
	if err != nil {
		return err
	}
	log.Info("starting", "version", version, "config", o.config, "spec", spec)
	return agent.Run(ctx)
}
