package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshagent"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

// options are the command line, each flag defaulting to an environment variable.
type options struct {
	config, listen, readyFile, uapiDir, logLevel, logFormat string
	mode, dnsListen, proxyListen                            string
	version                                                 bool
	batchSize, maxFlows                                     int
	udpIdle                                                 time.Duration
}

const usageHead = `Usage: mesh-agent [flags]

Joins an offloaded pod to its shadow pod's WireGuard mesh over a WebSocket tunnel: creates the
WireGuard interface, its address and routes, serves /healthz, /readyz (200 after the first
handshake) and /metrics, and the UAPI socket for wg(8). Needs CAP_NET_ADMIN, and CAP_MKNOD when
/dev/net/tun is missing. SIGTERM removes what it added.

In netstack mode (spec "mode": "netstack", or --mode) it needs no capability and runs as any
user: WireGuard runs on a user-space IP stack, flows from the mesh reach the workload on the
pod's loopback (127.0.0.1:<same port>), and the workload reaches the local cluster through a DNS
forwarder (--dns-listen) and an HTTP proxy (--proxy-listen, for HTTP_PROXY/HTTPS_PROXY).

Flags (each defaults to the environment variable named in its description):
`

const configHelp = `
Config file (JSON, written by the plugin as mesh.json in the pod's Secret; unknown fields are errors):
  version              "v1" (required)
  mode                 "kernel" (default) or "netstack"
  interface            interface name, at most 15 bytes (default "wg0")
  privateKey           the pod's WireGuard private key, base64 (required)
  peerPublicKey        the shadow pod's WireGuard public key, base64 (required)
  address              the pod's mesh address (default "10.7.0.2/32")
  peerAddress          the shadow's mesh address (default "10.7.0.1")
  mtu                  interface MTU, 576 to 65535 (default 1280)
  persistentKeepalive  keepalive period, whole seconds (default "25s")
  routes               CIDRs routed to the interface and accepted from the peer, e.g. ["10.96.0.0/12"]
  dns                  {"nameservers": [...], "searches": [...]}, for the pod's dnsConfig (optional)
  tunnel.url           "ws://host[:port]" or "wss://host[:port]" of the shadow's tunnel (required)
  tunnel.pathPrefix    secret first path segment of the upgrade request (required)
  tunnel.host          Host header override (optional)
  tunnel.destination   WireGuard listener the server forwards to (default "127.0.0.1:51820")
  tunnel.unmasked      send unmasked frames, for a stock wstunnel server (default false)
  tunnel.caFile        PEM roots for a wss:// server (default: system roots)
  forwards             netstack mode: fixed relays for clients without proxy support,
                       [{"listen": "127.0.0.1:5432", "to": "db.team-a:5432", "protocol": "tcp"}]
`

func parseFlags(args []string, getenv func(string) string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("mesh-agent", flag.ContinueOnError)
	fs.SetOutput(out)
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var o options
	fs.StringVar(&o.config, "config", env("MESH_AGENT_CONFIG", "/etc/mesh-agent/mesh.json"), "mesh spec file (MESH_AGENT_CONFIG)")
	fs.StringVar(&o.listen, "listen", env("MESH_AGENT_LISTEN", meshagent.DefaultListenAddr), "address of /healthz, /readyz and /metrics (MESH_AGENT_LISTEN)")
	fs.StringVar(&o.readyFile, "ready-file", env("MESH_AGENT_READY_FILE", ""), "file written after the first handshake, for a startup probe; empty for none (MESH_AGENT_READY_FILE)")
	fs.StringVar(&o.uapiDir, "uapi-dir", env("MESH_AGENT_UAPI_DIR", meshagent.DefaultUAPIDir), "directory of the UAPI socket <interface>.sock (MESH_AGENT_UAPI_DIR)")
	fs.StringVar(&o.logLevel, "log-level", env("MESH_AGENT_LOG_LEVEL", "info"), "debug, info, warn or error; debug includes wireguard-go (MESH_AGENT_LOG_LEVEL)")
	fs.StringVar(&o.logFormat, "log-format", env("MESH_AGENT_LOG_FORMAT", "text"), "text or json (MESH_AGENT_LOG_FORMAT)")
	batch, err := strconv.Atoi(env("MESH_AGENT_BATCH_SIZE", strconv.Itoa(tunnel.DefaultBatchSize)))
	if err != nil {
		return o, fmt.Errorf("MESH_AGENT_BATCH_SIZE: %w", err)
	}
	fs.IntVar(&o.batchSize, "batch-size", batch, "most datagrams handed to WireGuard at once, 1 to 128: each slot holds a 64 KiB buffer; fewer save memory, more rarely add throughput (MESH_AGENT_BATCH_SIZE)")
	fs.StringVar(&o.mode, "mode", env("MESH_AGENT_MODE", ""), "kernel or netstack, overriding the spec's mode; empty: the spec's (MESH_AGENT_MODE)")
	fs.StringVar(&o.dnsListen, "dns-listen", env("MESH_AGENT_DNS_LISTEN", ""), `netstack mode: DNS forwarder to the mesh nameserver, "none" for none (default `+meshagent.DefaultDNSListen+`) (MESH_AGENT_DNS_LISTEN)`)
	fs.StringVar(&o.proxyListen, "proxy-listen", env("MESH_AGENT_PROXY_LISTEN", ""), `netstack mode: HTTP proxy into the mesh, "none" for none (default `+meshagent.DefaultProxyListen+`) (MESH_AGENT_PROXY_LISTEN)`)
	maxFlows, err := strconv.Atoi(env("MESH_AGENT_MAX_FLOWS", "16384"))
	if err != nil {
		return o, fmt.Errorf("MESH_AGENT_MAX_FLOWS: %w", err)
	}
	fs.IntVar(&o.maxFlows, "max-flows", maxFlows, "netstack mode: flows from the mesh relayed at once; more are refused (MESH_AGENT_MAX_FLOWS)")
	udpIdle, err := time.ParseDuration(env("MESH_AGENT_UDP_IDLE", "60s"))
	if err != nil {
		return o, fmt.Errorf("MESH_AGENT_UDP_IDLE: %w", err)
	}
	fs.DurationVar(&o.udpIdle, "udp-idle", udpIdle, "netstack mode: a UDP flow from the mesh ends after this long without a datagram (MESH_AGENT_UDP_IDLE)")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), configHelp)
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("parse log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}
