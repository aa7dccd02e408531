package shadowagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netfilter"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/usernet"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// shutdownTimeout bounds the health server's graceful stop.
const shutdownTimeout = 5 * time.Second

// Agent runs the shadow pod's end of one offloaded pod's mesh: the tunnel's WebSocket server (or,
// in the inbound direction, its client dialing the offloaded pod's), an embedded WireGuard device
// behind it, the iptables rules that forward the shadow pod's
// traffic to the offloaded pod, the UAPI socket and the HTTP probes. Build it with New and
// start it with Run.
type Agent struct {
	cfg     Config // with defaults, valid
	log     *slog.Logger
	side    wgdevice.Side
	reg     *prometheus.Registry
	handler http.Handler

	started atomic.Bool
	// Readiness, and the device and kernel while they are up, for the probes and the metrics.
	rulesApplied atomic.Bool
	stopping     atomic.Bool
	eng          wgdevice.Running
	inbound      atomic.Pointer[inbound] // netstack mode
	lost         atomic.Bool             // the mesh was up and is lost (meshLost)

	// listening, when set (tests), replaces the side's Listening.
	listening func() bool

	// lastHandshake, when set (tests), replaces reading the peer's last handshake off the device.
	lastHandshake func() (time.Time, error)
}

// New validates cfg and prepares an Agent. It reads the TLS key pair, if any, and touches
// neither the network nor the kernel. Configuration errors are *ConfigError values, joined with
// errors.Join when there are several.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Logger}
	side, err := a.newSide()
	if err != nil {
		return nil, err
	}
	a.side = side
	a.reg = a.registry()
	a.handler = a.routes()
	return a, nil
}

// Run brings the shadow's end of the mesh up and keeps it up until ctx is done. Then it removes
// the iptables rules, the route and the address it added, closes the device, the UAPI socket
// (deleting its file) and both HTTP servers, and returns once every goroutine it started has
// exited: nil after a clean stop, else the first error (setup, or a server that failed). Run may
// be called once.
//
// Run must be called on a goroutine whose thread is in the shadow pod's network namespace (in a
// pod, any goroutine): the listeners, the TUN device and the netlink socket are created on it,
// and the iptables rules are applied and re-asserted from it for the whole run. A caller that
// switched the thread's namespace must hold runtime.LockOSThread until Run returns.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("run shadow agent: already started")
	}
	start := time.Now()
	hln, err := net.Listen("tcp", a.cfg.HealthAddr)
	if err != nil {
		return fmt.Errorf("listen for health and metrics: %w", err)
	}
	if a.side.Listen != nil {
		if err := a.side.Listen(); err != nil {
			hln.Close()
			return fmt.Errorf("listen for the tunnel: %w", err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	health := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error { return serveHTTP(health, hln, "health") })
	g.Go(func() error { return a.side.Run(gctx) }) // serves the listener, or dials
	g.Go(func() error {
		// At once on cancel: unready while the rest is torn down.
		<-gctx.Done()
		a.stopping.Store(true)
		a.log.Info("shadow stopping")
		return nil
	})

	var undo []func() // teardown steps, run last first
	if a.cfg.Mode == meshspec.ModeNetstack {
		err = a.upNetstack(gctx, g, &undo)
		if err == nil {
			a.log.Info("shadow up", "mode", a.cfg.Mode, "address", a.cfg.Address, "peer", a.cfg.PeerAddress,
				"tcp_ports", fmt.Sprint(a.cfg.TCPPorts), "udp_ports", fmt.Sprint(a.cfg.UDPPorts), "mtu", a.cfg.MTU,
				"tunnel", a.tunnelDesc(), "health", hln.Addr().String(), "uapi", a.cfg.socketPath(),
				"setup", time.Since(start).Round(time.Microsecond))
			<-gctx.Done()
		}
		return a.stop(cancel, health, undo, g, err)
	}
	nf, mainIface, err := a.up(gctx, g, &undo)
	if err == nil {
		a.log.Info("shadow up", "interface", a.cfg.Interface, "address", a.cfg.Address, "peer", a.cfg.PeerAddress,
			"main_interface", mainIface, "pod_ip", orEmpty(a.cfg.PodIP), "mtu", a.cfg.MTU,
			"tunnel", a.tunnelDesc(), "health", hln.Addr().String(), "uapi", a.cfg.socketPath(),
			"setup", time.Since(start).Round(time.Microsecond))
		// On this goroutine, the namespace's: re-asserts until gctx is done, then removes.
		err = nf.Run(gctx)
	}
	if err != nil && gctx.Err() != nil && errors.Is(err, context.Canceled) {
		// Cancelled while applying the rules: a stop, not a failure (g.Wait says why). Both
		// netfilter paths removed the rules; this one says nothing of it.
		a.log.Info("netfilter rules removed", "component", "netfilter", "after", "cancelled apply")
		err = nil
	}
	return a.stop(cancel, health, undo, g, err)
}

// stop ends a run: it cancels, stops the health server, undoes the setup last step first and
// waits for the goroutines; it returns err, or else the first goroutine's error.
func (a *Agent) stop(cancel context.CancelFunc, health *http.Server, undo []func(), g *errgroup.Group, err error) error {
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	if serr := health.Shutdown(sctx); serr != nil {
		health.Close()
	}
	scancel()
	for _, u := range slices.Backward(undo) {
		u()
	}
	if gerr := g.Wait(); err == nil {
		err = gerr
	}
	a.log.Info("shadow stopped", "err", err)
	return err
}

// serveHTTP serves until the server is closed, which is a clean stop.
func serveHTTP(s *http.Server, ln net.Listener, what string) error {
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", what, err)
	}
	return nil
}

// up finds the main interface, brings the engine up on a TUN device and applies the iptables
// rules once, returning the Shadow that keeps them and the main interface. Each step pushes its
// undo before it can fail half-way.
func (a *Agent) up(ctx context.Context, g *errgroup.Group, undo *[]func()) (*netfilter.Shadow, string, error) {
	mainIface, err := a.mainInterface()
	if err != nil {
		return nil, "", err
	}
	e, err := a.eng.Start(a.engineConfig(nil))
	if err != nil {
		return nil, "", err
	}
	*undo = append(*undo, a.eng.Stop)
	g.Go(e.ServeUAPI)

	nf, err := netfilter.New(netfilter.Config{
		MainInterface:      mainIface,
		WireGuardInterface: a.cfg.Interface,
		PodIP:              a.cfg.PodIP,
		Peer:               a.cfg.PeerAddress,
		ExcludeTCP:         a.cfg.excludedTCP(),
		ExcludeUDP:         a.cfg.ExcludeUDP,
		Interval:           a.cfg.ReassertInterval,
		Logger:             a.log.With("component", "netfilter"),
	})
	if err != nil {
		return nil, "", fmt.Errorf("prepare netfilter: %w", err)
	}
	// Applied here once, so that readiness can wait for it; nf.Run then finds it all in place.
	if _, err := nf.Ensure(ctx); err != nil {
		if rerr := nf.Remove(); rerr != nil {
			a.log.Error("remove netfilter rules after failed apply", "err", rerr)
		}
		return nil, "", fmt.Errorf("apply netfilter rules: %w", err)
	}
	a.rulesApplied.Store(true)
	*undo = append(*undo, func() { a.rulesApplied.Store(false) })
	return nf, mainIface, nil
}

// engineConfig is the WireGuard device's configuration: on a user-space stack configured by st
// (its flow limits set here) in netstack mode, on a TUN device (st nil) in kernel mode.
func (a *Agent) engineConfig(st *usernet.Config) wgdevice.Config {
	cfg := wgdevice.Config{Identity: identity(a.cfg), Bind: a.side.Bind, Link: planLink(a.cfg), UAPISocket: a.cfg.socketPath(), Logger: a.log}
	if st != nil {
		st.MaxFlows, st.UDPIdle = a.cfg.MaxFlows, a.cfg.UDPIdle
	}
	cfg.Netstack = st
	return cfg
}

// mainInterface returns the configured main interface, else the one holding PodIP, else the
// default route's, and checks that it exists and, when PodIP is set, warns unless it holds PodIP.
// PodIP's interface comes first: it is where forwarded flows arrive, and a pod need not have a
// default route (seen on a real node whose CNI bridge is no gateway).
func (a *Agent) mainInterface() (string, error) {
	r, err := openRoutes() // reading routes needs no capability: the engine's start checks them
	if err != nil {
		return "", err
	}
	defer r.close()
	return a.mainInterfaceOf(r)
}

func (a *Agent) mainInterfaceOf(r *routes) (string, error) {
	name := a.cfg.MainInterface
	if name == "" && a.cfg.PodIP.IsValid() {
		var err error
		if name, err = r.interfaceWith(a.cfg.PodIP); err != nil {
			return "", fmt.Errorf("find the main interface (set it explicitly): %w", err)
		}
	}
	if name == "" {
		var err error
		if name, err = r.defaultInterface(); err != nil {
			return "", fmt.Errorf("find the main interface (set it explicitly): %w", err)
		}
	}
	addrs, err := r.linkAddrs(name)
	if err != nil {
		return "", fmt.Errorf("main interface: %w", err)
	}
	if a.cfg.PodIP.IsValid() && !slices.Contains(addrs, a.cfg.PodIP) {
		a.log.Warn("pod IP is not an address of the main interface: forwarded flows will not match",
			"pod_ip", a.cfg.PodIP, "main_interface", name, "addresses", fmt.Sprint(addrs))
	}
	return name, nil
}
