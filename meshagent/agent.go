package meshagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/usernet"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// handshakePoll is how often the agent asks the device for its first handshake; it stops asking
// once there was one.
const handshakePoll = 100 * time.Millisecond

// shutdownTimeout bounds the HTTP server's graceful stop.
const shutdownTimeout = 5 * time.Second

// Agent runs the mesh sidecar of one offloaded pod: an embedded WireGuard device whose datagrams
// travel over the WebSocket tunnel to the pod's shadow, plus its routes, UAPI socket and HTTP
// probes. Build it with New and start it with Run.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	spec    meshspec.Spec // with defaults, valid
	plan    wgdevice.LinkPlan
	sock    string        // UAPI socket path
	side    wgdevice.Side // dials the shadow, or serves the tunnel it dials
	reg     *prometheus.Registry
	handler http.Handler

	started atomic.Bool
	// eng holds the device while it is up, for the probes and the metrics.
	eng   wgdevice.Running
	ready atomic.Bool // a handshake completed
}

// Run brings the mesh up and keeps it up until ctx is done, then removes the routes and the
// address it added, closes the device, the UAPI socket and the HTTP server, deletes the socket
// and ready files, and returns once every goroutine it started has exited. It returns nil after
// a clean stop, or the first error (setup, or a server that failed). Run may be called once.
//
// The TUN device, the netlink socket and the HTTP listener are created on the calling goroutine's
// thread, so they live in that thread's network namespace; the tunnel's TCP connection is dialed
// from other goroutines, in the process's namespace. In a pod both are the pod's.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("run agent: already started")
	}
	start := time.Now()
	if err := removeFile(a.cfg.ReadyFile); err != nil { // a stale one would pass the probe early
		return err
	}
	ln, err := net.Listen("tcp", a.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen for health and metrics: %w", err)
	}
	if a.side.Listen != nil {
		if err := a.side.Listen(); err != nil {
			ln.Close()
			return fmt.Errorf("listen for the tunnel: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error { return a.side.Run(gctx) })

	var undo []func() // teardown steps, run last first
	var setupErr error
	if a.spec.Mode == meshspec.ModeNetstack {
		setupErr = a.upNetstack(gctx, g, &undo)
		if setupErr == nil {
			g.Go(func() error { return a.awaitHandshake(gctx, a.eng.Load(), start) })
		}
	} else {
		setupErr = a.up(gctx, g, &undo, start)
	}
	if setupErr == nil {
		a.log.Info("mesh up", "mode", a.spec.Mode, "dns", a.cfg.DNSListen, "proxy", a.cfg.ProxyListen, "interface", a.spec.Interface, "address", a.spec.Address, "peer", a.spec.PeerAddress,
			"routes", len(a.spec.Routes), "mtu", a.spec.MTU, "listen", ln.Addr().String(), "uapi", a.sock,
			"setup", time.Since(start).Round(time.Microsecond))
		<-gctx.Done()
		a.log.Info("mesh stopping")
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	scancel()
	for i := len(undo) - 1; i >= 0; i-- {
		undo[i]()
	}
	if err := removeFile(a.cfg.ReadyFile); err != nil {
		a.log.Warn("remove ready file", "err", err)
	}
	err = g.Wait()
	if setupErr != nil {
		return setupErr
	}
	return err
}

// up brings the engine up on a TUN device, then starts the goroutines that serve it.
func (a *Agent) up(ctx context.Context, g *errgroup.Group, undo *[]func(), start time.Time) error {
	e, err := a.eng.Start(a.engineConfig(nil))
	if err != nil {
		return err
	}
	*undo = append(*undo, a.eng.Stop)
	g.Go(e.ServeUAPI)
	g.Go(func() error { return a.awaitHandshake(ctx, e, start) })
	return nil
}

// engineConfig is the WireGuard device's configuration: on a user-space stack configured by st
// (its flow limits set here) in netstack mode, on a TUN device (st nil) in kernel mode.
func (a *Agent) engineConfig(st *usernet.Config) wgdevice.Config {
	cfg := wgdevice.Config{Identity: identity(a.spec), Bind: a.side.Bind, Link: a.plan, UAPISocket: a.sock, Logger: a.log}
	if st != nil {
		st.MaxFlows, st.UDPIdle = a.cfg.MaxFlows, a.cfg.UDPIdle
	}
	cfg.Netstack = st
	return cfg
}

// awaitHandshake polls the device until its peer completed a handshake, then marks the agent
// ready and writes the ready file.
func (a *Agent) awaitHandshake(ctx context.Context, e *wgdevice.Engine, start time.Time) error {
	t := time.NewTicker(handshakePoll)
	defer t.Stop()
	var sessionSince, lastWhy time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		p, err := e.Peer()
		if err != nil {
			a.log.Warn("read device state", "err", err)
			continue
		}
		if p.LastHandshake.IsZero() {
			st := a.side.Stats()
			now := time.Now()
			if st.Sessions > 0 && sessionSince.IsZero() {
				sessionSince = now
			}
			if !sessionSince.IsZero() && now.Sub(sessionSince) >= noHandshakeAfter && now.Sub(lastWhy) >= noHandshakeAfter {
				lastWhy = now
				a.log.Warn("tunnel session up but no WireGuard handshake", append([]any{"for", now.Sub(sessionSince).Round(time.Second)},
					noHandshakeWhy(st, a.spec.Tunnel.Unmasked)...)...)
			}
			continue
		}
		// The ready file first: whoever sees /readyz answer 200 finds it.
		if a.cfg.ReadyFile != "" {
			if err := writeReadyFile(a.cfg.ReadyFile, p.LastHandshake); err != nil {
				return err
			}
		}
		a.ready.Store(true)
		a.log.Info("first handshake", "after", time.Since(start).Round(time.Millisecond))
		return nil
	}
}

// noHandshakeAfter is how long a tunnel session may stand without a first handshake before the
// agent says why, and how often it says it again.
const noHandshakeAfter = 10 * time.Second

// noHandshakeWhy gives the log attributes that explain a session with no handshake, from what
// crossed the tunnel: the likely cause and what to check.
func noHandshakeWhy(st tunnel.Stats, unmasked bool) []any {
	attrs := []any{"datagrams_sent", st.TxDatagrams, "datagrams_received", st.RxDatagrams, "sessions", st.Sessions}
	switch {
	case st.TxDatagrams == 0:
		return append(attrs, "why", "no handshake initiation was sent through the tunnel: the device is not sending")
	case st.RxDatagrams == 0 && !unmasked:
		return append(attrs, "why", "initiations go out and nothing comes back. This agent masks its frames (RFC 6455); "+
			"a wstunnel server started without --websocket-mask-frame does not unmask them and hands garbage to WireGuard. "+
			"Set the tunnel's unmasked option for a stock wstunnel server, or check that the shadow-agent holds the key "+
			"whose public half this pod was given")
	case st.RxDatagrams == 0:
		return append(attrs, "why", "initiations go out and nothing comes back: the server behind the tunnel does not answer "+
			"(wrong WireGuard port behind it, or a shadow that does not hold the key whose public half this pod was given)")
	default:
		return append(attrs, "why", "datagrams come back but no handshake completes: the keys do not pair "+
			"(this pod's peer public key is not the shadow's, or the shadow expects another client key)")
	}
}

func removeFile(path string) error {
	if path == "" {
		return nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// rehandshake renews the WireGuard keys when a new tunnel session comes up after the first
// handshake: the shadow-agent behind it may have restarted, or answered another client with the
// same key meanwhile, and would drop our data until WireGuard's own timers renew the keys (15 s
// or more). The current keys stay valid for receiving until the new ones arrive. Before the
// first handshake there is nothing to renew: the device's initial handshake is under way.
func (a *Agent) rehandshake() {
	e := a.eng.Load()
	if e == nil || !a.ready.Load() {
		return
	}
	if err := e.Rehandshake(a.spec.PeerPublicKey); err != nil {
		a.log.Debug("handshake after reconnect", "err", err)
	}
}
