// Command interlink-k8s-plugin is InterLink's Kubernetes plugin: it serves the InterLink plugin API
// on a unix socket or TCP and runs each pod it receives, whole, in a remote cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "interlink-k8s-plugin: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("interlink-k8s-plugin", flag.ContinueOnError)
	fs.SetOutput(stdout)
	envPath, _ := lookupEnv("CONFIG_FILE_PATH")
	configPath := fs.String("config", envPath, "configuration file, YAML or the Python plugin's INI (env CONFIG_FILE_PATH; default "+plugin.DefaultConfigPath+" if it exists, else the environment alone)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: interlink-k8s-plugin [--config FILE]\n\nServes the InterLink plugin API and runs its pods in a remote Kubernetes cluster.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nOptions (file key, then the environment variable that overrides it):\n")
		for _, o := range plugin.Options() {
			fmt.Fprintf(fs.Output(), "  %-40s %-42s %s\n", o.Key, o.Env(), o.Help)
		}
		fmt.Fprintf(fs.Output(), "\nThe Python plugin's other options (INI file or environment):\n")
		for _, o := range plugin.PythonOptions() {
			fmt.Fprintf(fs.Output(), "  %-40s %-42s %s\n", o.Key, o.Env(), o.Help)
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintf(stdout, "interlink-k8s-plugin %s\n", version)
		return nil
	}
	cfg, err := plugin.LoadConfig(*configPath, lookupEnv)
	if err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.App.LogLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	klog.SetSlogLogger(log.With("component", "client-go"))
	for _, n := range cfg.Notices {
		log.Log(ctx, n.Level, n.Message, "option", n.Option)
	}
	if cfg.Mesh.AgentImage == "" && version != "dev" {
		cfg.Mesh.AgentImage = plugin.MeshAgentImage(version)
	}
	p, err := plugin.NewFromFile(cfg, log)
	if err != nil {
		return err
	}
	network, address, _ := cfg.App.Listen()
	log.Info("starting", "version", version, "listen", network+":"+address, "config", cfg.Path, "format", cfg.Format, "namespace_prefix", cfg.Offloading.Prefix())
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(ctx) })
	g.Go(func() error { return plugin.Serve(ctx, network, address, p.Handler()) })
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}
