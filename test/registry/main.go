// Command registry is the test clusters' image registry: an OCI distribution registry on a loopback
// port, its blobs on disk, for the tests that install charts whose pods pull their images
// (InterLink's chart names them with imagePullPolicy: Always, which a pre-imported image does not
// satisfy). The real nodes' containerd reaches it over plain HTTP through a hosts.toml that
// test/testcluster/node.sh writes for IKM_NODE_REGISTRY; nothing else may use it.
//
//	registry -dir DIR -addr-file FILE [-listen 127.0.0.1:0]
//
// It writes the address it listens on to FILE once it accepts connections and stops on SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "registry: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on; loopback only")
	dir := flag.String("dir", "", "where the blobs are kept (required)")
	addrFile := flag.String("addr-file", "", "file that receives host:port once the registry accepts connections (required)")
	flag.Parse()
	if *dir == "" || *addrFile == "" || flag.NArg() > 0 {
		flag.Usage()
		return errors.New("-dir and -addr-file are required, and nothing else")
	}
	host, _, err := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: a loopback address and port", *listen)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	logger := log.New(os.Stderr, "registry ", log.LstdFlags|log.Lmsgprefix)
	srv := &http.Server{
		Handler:           registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(*dir)), registry.Logger(logger)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	tmp := *addrFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, *addrFile); err != nil {
		return err
	}
	logger.Printf("serving on %s, blobs in %s", ln.Addr(), *dir)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}
