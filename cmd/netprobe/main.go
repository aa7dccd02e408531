// Command netprobe is the test clusters' network probe. `netprobe serve` echoes TCP and UDP on one
// port; the other verbs run inside a pod and measure what a `kubectl exec` per request cannot:
//
//	netprobe rtt   -to ADDR [-n 1000] [-size 64] [-udp]   round trips over one flow (p50/p95/p99)
//	netprobe setup -to ADDR [-n 200]                      flow setup: dial to the first echoed byte
//	netprobe hold  -to ADDR -flows 10000 [-hold 5s]       open that many flows at once, hold, check each, close
//
// Each prints one JSON object on stdout; a flow that fails makes the exit status 1, with the
// object still printed (hold says how many failed and the first error).
package main

import (
	"context"
	"encoding/json"
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
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "netprobe: %v\n", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: netprobe serve|rtt|setup|hold [flags] (netprobe <verb> -h for the flags)`

// run dispatches a verb; results go to stdout as one JSON object, diagnostics to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no verb")
	}
	verb, args := args[0], args[1:]
	fs := flag.NewFlagSet("netprobe "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch verb {
	case "serve":
		listen := fs.String("listen", ":7000", "TCP and UDP address to echo on")
		if err := fs.Parse(args); err != nil {
			return err
		}
		return serve(ctx, *listen, stderr)
	case "rtt", "setup", "hold":
	case "version":
		fmt.Fprintln(stdout, version)
		return nil
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown verb %q", verb)
	}
	to := fs.String("to", "", "the echo server, host:port (required)")
	n := fs.Int("n", 0, "rtt: round trips (default 1000); setup: flows, one after another (default 200)")
	size := fs.Int("size", 64, "rtt: bytes per round trip")
	udp := fs.Bool("udp", false, "rtt: over UDP instead of TCP")
	flows := fs.Int("flows", 1000, "hold: concurrent flows")
	parallel := fs.Int("parallel", 64, "hold: dials in progress at once")
	hold := fs.Duration("hold", 0, "hold: how long to keep every flow open before checking them")
	timeout := fs.Duration("timeout", defaultTimeout, "give up on the whole measurement after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" {
		return errors.New("-to host:port is required")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var res any
	var err error
	switch verb {
	case "rtt":
		res, err = measureRTT(ctx, *to, orDefault(*n, 1000), *size, *udp)
	case "setup":
		res, err = measureSetup(ctx, *to, orDefault(*n, 200))
	case "hold":
		res, err = holdFlows(ctx, holdConfig{To: *to, Flows: *flows, Parallel: *parallel, Hold: *hold})
	}
	if res != nil {
		if jerr := json.NewEncoder(stdout).Encode(res); jerr != nil && err == nil {
			err = jerr
		}
	}
	return err
}

func orDefault(v, d int) int {
	if v > 0 {
		return v
	}
	return d
}
