package meshagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// Defaults of Config.
const (
	// DefaultListenAddr serves /healthz, /readyz and /metrics on every address of the pod. 9101
	// sits next to node_exporter's 9100 and clear of the shadow side's 28080 and 51820.
	DefaultListenAddr = ":9101"
	// DefaultUAPIDir is where wg(8) and wgctrl look for userspace WireGuard sockets.
	DefaultUAPIDir = "/var/run/wireguard"
	// DefaultDNSListen is the netstack mode's DNS forwarder, the pod's resolv.conf nameserver.
	DefaultDNSListen = "127.0.0.1:53"
	// DefaultProxyListen is the netstack mode's HTTP proxy, the workload's HTTP_PROXY.
	DefaultProxyListen = "127.0.0.1:3128"
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path minus the NUL).
const maxSocketPath = 107

// Config configures an Agent. The zero value of every optional field selects its default.
type Config struct {
	// Spec is the mesh to join, usually from meshspec.Parse. New applies its defaults and
	// validates it. Required.
	Spec meshspec.Spec
	// ListenAddr is the TCP address of the HTTP server for /healthz, /readyz and /metrics.
	// Default DefaultListenAddr.
	ListenAddr string
	// ReadyFile, when set, is written (atomically, with the handshake time) after the first
	// WireGuard handshake, for an exec startup probe, and removed at start and on shutdown. Its
	// directory must exist; failing to write it ends Run with an error.
	ReadyFile string
	// UAPIDir holds the UAPI socket <UAPIDir>/<interface>.sock, through which wg(8) and wgctrl
	// inspect the embedded device. Default DefaultUAPIDir.
	UAPIDir string
	// Mode, when set, overrides the spec's mode (meshspec.ModeKernel or ModeNetstack).
	Mode meshspec.Mode
	// DNSListen is where, in netstack mode, a DNS forwarder (UDP and TCP) relays queries
	// through the mesh to the spec's first nameserver the routes reach; the plugin points the
	// pod's resolv.conf at it. "none": none. Default DefaultDNSListen in netstack mode.
	DNSListen string
	// ProxyListen is where, in netstack mode, an HTTP proxy (CONNECT and plain HTTP) dials
	// hosts the mesh DNS resolves into the routes through the mesh, and others from the pod;
	// the plugin gives it to the workload as HTTP_PROXY. "none": none. Default
	// DefaultProxyListen in netstack mode.
	ProxyListen string
	// MaxFlows bounds the flows from the mesh relayed at once in netstack mode. Default
	// usernet.DefaultMaxFlows.
	MaxFlows int
	// UDPIdle ends a UDP flow from the mesh without a datagram for this long. Default
	// relay.DefaultIdle.
	UDPIdle time.Duration
	// BatchSize is the most datagrams the tunnel hands WireGuard at once, 1 to 128: memory
	// against throughput (docs/performance.md). Default tunnel.DefaultBatchSize.
	BatchSize int
	// Logger receives the agent's, the tunnel's and wireguard-go's logs (the latter at debug
	// level, its errors at error level); nil discards them. Keys and the path prefix are never
	// logged.
	Logger *slog.Logger
}

// New validates cfg and prepares an Agent; it touches neither the network nor the kernel. It
// reads Spec.Tunnel.CAFile, if any.
func New(cfg Config) (*Agent, error) {
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = DefaultListenAddr
	}
	if cfg.UAPIDir == "" {
		cfg.UAPIDir = DefaultUAPIDir
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	spec := cfg.Spec.WithDefaults()
	if cfg.Mode != "" {
		spec.Mode = cfg.Mode
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("validate mesh spec: %w", err)
	}
	if spec.Mode == "" {
		spec.Mode = meshspec.ModeKernel
	}
	if spec.Mode == meshspec.ModeNetstack {
		for _, l := range []struct {
			addr *string
			def  string
		}{{&cfg.DNSListen, DefaultDNSListen}, {&cfg.ProxyListen, DefaultProxyListen}} {
			switch *l.addr {
			case "":
				*l.addr = l.def
			case "none":
				*l.addr = ""
			}
		}
	}
	if cfg.MaxFlows < 0 || cfg.UDPIdle < 0 {
		return nil, errors.New("max flows and udp idle must not be negative")
	}
	sock := filepath.Join(cfg.UAPIDir, spec.Interface+".sock")
	if len(sock) > maxSocketPath {
		return nil, fmt.Errorf("uapi socket path %s is longer than %d bytes", sock, maxSocketPath)
	}
	if strings.HasSuffix(cfg.ReadyFile, "/") {
		return nil, errors.New("ready file must name a file, not a directory")
	}
	a := &Agent{
		cfg:  cfg,
		log:  cfg.Logger,
		spec: spec,
		plan: planLink(spec),
		sock: sock,
	}
	side, err := a.newSide()
	if err != nil {
		return nil, err
	}
	a.side = side
	a.reg = a.registry()
	a.handler = a.routes()
	return a, nil
}

// newSide builds the agent's end of the tunnel: a client dialing the shadow's tunnel (the
// outbound direction), or with Tunnel.Listen a server the shadow dials through the remote
// cluster's ingress (the inbound direction).
func (a *Agent) newSide() (wgdevice.Side, error) {
	t := a.spec.Tunnel
	log := a.cfg.Logger.With("component", "tunnel")
	if t.Listen != "" {
		if lp, hp := port(t.Listen), port(a.cfg.ListenAddr); lp != "" && lp == hp {
			return wgdevice.Side{}, fmt.Errorf("tunnel listen %s and health listen %s share a port", t.Listen, a.cfg.ListenAddr)
		}
		srv, err := tunnel.NewServer(tunnel.ServerConfig{
			PathPrefix:  string(t.PathPrefix),
			Destination: t.Destination,
			Addr:        t.Listen,
			BatchSize:   a.cfg.BatchSize,
			Logger:      log,
		})
		if err != nil {
			return wgdevice.Side{}, fmt.Errorf("create tunnel server: %w", err)
		}
		return wgdevice.ListenSide(srv), nil
	}
	client, err := tunnel.NewClient(tunnel.ClientConfig{
		URL:         t.URL,
		PathPrefix:  string(t.PathPrefix),
		Destination: t.Destination,
		Host:        t.Host,
		CAFile:      t.CAFile,
		Unmasked:    t.Unmasked,
		Proxy:       tunnel.ProxyFromEnvironment(), // HTTPS_PROXY, HTTP_PROXY, NO_PROXY
		Resolver:    tunnelResolver(t.Nameservers, 53),
		OnSession:   a.rehandshake,
		BatchSize:   a.cfg.BatchSize,
		Logger:      log,
	})
	if err != nil {
		return wgdevice.Side{}, fmt.Errorf("create tunnel client: %w", err)
	}
	return wgdevice.DialSide(client), nil
}

// port returns the port of a host:port, or "".
func port(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

// tunnelResolver asks the tunnel's nameservers (the remote cluster's DNS) on port, each query to
// the next one in turn; nil without nameservers, for the pod's own resolv.conf. The pod's
// resolv.conf may name only the local cluster's DNS, which answers through the tunnel alone.
func tunnelResolver(nameservers []netip.Addr, port uint16) *net.Resolver {
	if len(nameservers) == 0 {
		return nil
	}
	var next atomic.Uint32
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		ns := nameservers[int(next.Add(1)-1)%len(nameservers)]
		var d net.Dialer
		return d.DialContext(ctx, network, netip.AddrPortFrom(ns, port).String())
	}}
}
