// Command echo-server is the test clusters' workload: an HTTP server that answers every request
// with its own hostname and the address the request came from, so a test sees which pod answered
// and whether the mesh kept or masqueraded the client's address.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "echo-server: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("echo-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", cmpOr(getenv("ECHO_LISTEN"), ":8080"), "address to serve on (env ECHO_LISTEN)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _ := os.Hostname()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintf(stderr, "echo-server %s serving on %s\n", version, ln.Addr())
	srv := &http.Server{Handler: handler(host), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// handler answers /healthz with "ok" and anything else with who answered and who asked.
func handler(host string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "host=%s client=%s request=%q\n", host, r.RemoteAddr, r.Method+" "+r.URL.RequestURI())
	})
	return mux
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
