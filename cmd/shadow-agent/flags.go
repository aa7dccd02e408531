package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netfilter"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/shadowagent"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

// flagSpec is one command-line flag: its environment variable, its default and the Config
// fields it sets, comma-separated ("" for flags that are not Config fields).
type flagSpec struct {
	name, env, def, field, usage string
}

// flagSpecs are every value flag, in --help order.
var flagSpecs = []flagSpec{
	{name: "path-prefix-file", env: "SHADOW_PATH_PREFIX_FILE", field: "PathPrefix", usage: "file holding the tunnel's secret path prefix, the VK's .RandomPassword (preferred: mount it from a Secret)"},
	{name: "path-prefix", env: "SHADOW_PATH_PREFIX", field: "PathPrefix", usage: "the tunnel's secret path prefix itself; visible in the process list, prefer --path-prefix-file"},
	{name: "private-key-file", env: "SHADOW_PRIVATE_KEY_FILE", field: "PrivateKey", usage: "file holding the shadow's WireGuard private key, base64, the VK's .WGPrivateKey (preferred: from a Secret)"},
	{name: "private-key", env: "SHADOW_PRIVATE_KEY", field: "PrivateKey", usage: "the private key itself; visible in the process list, prefer --private-key-file"},
	{name: "peer-public-key", env: "SHADOW_PEER_PUBLIC_KEY", field: "PeerPublicKey", usage: "the offloaded pod's WireGuard public key, base64, the VK's .ClientPublicKey (required)"},
	{name: "mode", env: "SHADOW_MODE", def: string(meshspec.ModeKernel), field: "Mode", usage: "kernel (TUN device and iptables; CAP_NET_ADMIN) or netstack (user-space stack, relays on --ports; no capability, any user)"},
	{name: "ports", env: "SHADOW_PORTS", field: "TCPPorts,UDPPorts", usage: `netstack mode: the offloaded pod's ports, relayed to it, "80,8080/tcp,53/udp" (protocol TCP unless named): the VK's .ExposedPorts`},
	{name: "max-flows", env: "SHADOW_MAX_FLOWS", def: "16384", field: "MaxFlows", usage: "netstack mode: flows relayed at once, each way and per port; more are refused"},
	{name: "udp-idle", env: "SHADOW_UDP_IDLE", def: "60s", field: "UDPIdle", usage: "netstack mode: a relayed UDP flow ends after this long without a datagram"},
	{name: "listen", env: "SHADOW_LISTEN", def: shadowagent.DefaultListenAddr, field: "ListenAddr", usage: "address of the tunnel's WebSocket server; its port is never forwarded"},
	{name: "tls-cert", env: "SHADOW_TLS_CERT", field: "TLSCertFile", usage: "PEM certificate: serve wss:// instead of ws:// (with --tls-key)"},
	{name: "tls-key", env: "SHADOW_TLS_KEY", field: "TLSKeyFile", usage: "PEM private key of --tls-cert"},
	{name: "connect", env: "SHADOW_CONNECT", field: "ConnectURL", usage: "inbound direction: dial the offloaded pod's mesh-agent at this ws:// or wss:// URL (its Ingress in the remote cluster) instead of serving --listen; honours HTTPS_PROXY"},
	{name: "connect-host", env: "SHADOW_CONNECT_HOST", field: "ConnectHost", usage: "with --connect: the Host header and TLS server name, to dial an ingress by address"},
	{name: "ca-file", env: "SHADOW_CA_FILE", field: "CAFile", usage: "with a wss:// --connect: PEM roots that verify the remote ingress, besides the system roots"},
	{name: "destination", env: "SHADOW_DESTINATION", def: tunnel.DefaultDestination.String(), field: "Destination", usage: "the only WireGuard destination clients may claim in their token (stock WireGuard port 51820)"},
	{name: "health-listen", env: "SHADOW_HEALTH_LISTEN", def: shadowagent.DefaultHealthAddr, field: "HealthAddr", usage: "address of /healthz, /readyz and /metrics; its port is never forwarded"},
	{name: "interface", env: "SHADOW_INTERFACE", def: shadowagent.DefaultInterface, field: "Interface", usage: "WireGuard interface name"},
	{name: "address", env: "SHADOW_ADDRESS", def: shadowagent.DefaultAddress.String(), field: "Address", usage: "the shadow's mesh address, on --interface"},
	{name: "peer-address", env: "SHADOW_PEER_ADDRESS", def: shadowagent.DefaultPeerAddress.String(), field: "PeerAddress", usage: "the offloaded pod's mesh address: its only allowed IP, and where flows are forwarded"},
	{name: "mtu", env: "SHADOW_MTU", def: strconv.Itoa(shadowagent.DefaultMTU), field: "MTU", usage: "MTU of --interface, 576 to 65535"},
	{name: "keepalive", env: "SHADOW_KEEPALIVE", def: shadowagent.DefaultPersistentKeepalive.String(), field: "PersistentKeepalive", usage: `persistent keepalive, a duration ("25s") or whole seconds ("25")`},
	{name: "main-interface", env: "SHADOW_MAIN_INTERFACE", field: "MainInterface", usage: "the pod's interface where forwarded flows arrive; empty: the one holding --pod-ip, else the IPv4 default route's"},
	{name: "pod-ip", env: "POD_IP", field: "PodIP", usage: "forward only flows to this address (the downward API's status.podIP); empty: any local address of --main-interface"},
	{name: "exclude-tcp", env: "SHADOW_EXCLUDE_TCP", field: "ExcludeTCP", usage: "comma-separated TCP ports kept by the shadow pod, besides --listen's and --health-listen's"},
	{name: "exclude-udp", env: "SHADOW_EXCLUDE_UDP", field: "ExcludeUDP", usage: "comma-separated UDP ports kept by the shadow pod"},
	{name: "reassert-interval", env: "SHADOW_REASSERT_INTERVAL", def: netfilter.DefaultInterval.String(), field: "ReassertInterval", usage: "how often the iptables rules are checked and repaired"},
	{name: "batch-size", env: "SHADOW_BATCH_SIZE", def: strconv.Itoa(tunnel.DefaultBatchSize), field: "BatchSize", usage: "most datagrams handed to WireGuard at once, 1 to 128: each slot holds a 64 KiB buffer; fewer save memory, more rarely add throughput"},
	{name: "uapi-dir", env: "SHADOW_UAPI_DIR", def: shadowagent.DefaultUAPIDir, field: "UAPIDir", usage: "directory of the UAPI socket <interface>.sock, for wg(8)"},
	{name: "name", env: "SHADOW_NAME", usage: "the shadow's name, the VK's .Name; only added to every log line"},
	{name: "namespace", env: "SHADOW_NAMESPACE", usage: "the shadow's namespace, the VK's .Namespace; only added to every log line"},
	{name: "log-level", env: "SHADOW_LOG_LEVEL", def: "info", usage: "debug, info, warn or error; debug includes wireguard-go"},
	{name: "log-format", env: "SHADOW_LOG_FORMAT", def: "text", usage: "text or json"},
}

// options are the command line: each flag's raw value, its environment variable's if the flag
// is absent, else its default.
type options struct {
	values  map[string]string
	version bool
}

const usageHead = `Usage: shadow-agent [flags]

Runs in the shadow pod of an offloaded pod, in the local cluster: serves the wstunnel-compatible
WebSocket tunnel the offloaded pod's mesh-agent dials, terminates it in an embedded WireGuard
device, and with iptables forwards (DNAT) every TCP and UDP flow that reaches the shadow pod to
the offloaded pod, which answers as the shadow pod's IP and reaches the local cluster as it
(MASQUERADE). Serves /healthz, /readyz (200 once the tunnel listens, the device is up and the
rules are applied; it does not wait for the offloaded pod) and /metrics, and the UAPI socket for
wg(8). Needs CAP_NET_ADMIN, CAP_MKNOD when /dev/net/tun is missing, and net.ipv4.ip_forward=1 or
a writable /proc/sys. SIGTERM removes what it added.

With --connect it serves no tunnel: it dials the offloaded pod's mesh-agent through the remote
cluster's ingress instead (the inbound direction, for a local cluster nothing can reach), re-dialing
with backoff; the rest is the same.

With --mode=netstack it needs none of that and runs as any user: WireGuard runs on a user-space
IP stack, the ports of --ports are ordinary sockets relayed to the offloaded pod, and the
offloaded pod's flows are dialed from this process's sockets.

Flags (each defaults to the environment variable in brackets; a flag or variable holding a
secret and its -file variant are exclusive):
`

const templateHelp = `
The VK's shadow-pod template data (WstunnelTemplatePath) maps onto the flags:
  .RandomPassword   --path-prefix-file, from a Secret key (or --path-prefix, SHADOW_PATH_PREFIX)
  .WGPrivateKey     --private-key-file, from a Secret key (or --private-key, SHADOW_PRIVATE_KEY)
  .ClientPublicKey  --peer-public-key (SHADOW_PEER_PUBLIC_KEY)
  .ExposedPorts     kernel mode: nothing to set, every TCP and UDP port is forwarded to the
                    offloaded pod. Netstack mode: --ports, the only ports relayed, e.g.
                    --ports={{range $i, $p := .ExposedPorts}}{{if $i}},{{end}}{{$p.Port}}/{{or $p.Protocol "TCP"}}{{end}}
                    Neither may use --listen's port (28080) or --health-listen's (9102).
  .Name             --name (SHADOW_NAME), for logs; the Deployment's name and pod label
  .Namespace        --namespace (SHADOW_NAMESPACE), for logs
  .WildcardDNS      outbound: nothing, the Ingress host <name>-<namespace>.<WildcardDNS> routes to
                    --listen. Inbound: --connect=wss://{{.Name}}-{{.Namespace}}.{{.WildcardDNS}},
                    the host the plugin gives the offloaded pod's Ingress in the remote cluster
The stock mesh's constants are the defaults: WebSocket port 28080 (--listen), WireGuard port 51820
(--destination), MTU 1280 (--mtu), keepalive 25 (--keepalive), shadow 10.7.0.1 (--address),
offloaded pod 10.7.0.2 (--peer-address).

Example container args, with the secrets from a Secret mounted at /etc/shadow and POD_IP set from
the downward API (fieldRef status.podIP):
  --path-prefix-file=/etc/shadow/prefix --private-key-file=/etc/shadow/privatekey
  --peer-public-key={{.ClientPublicKey}}
`

func parseFlags(args []string, getenv func(string) string, out io.Writer) (options, error) {
	fs := flag.NewFlagSet("shadow-agent", flag.ContinueOnError)
	fs.SetOutput(out)
	o := options{values: map[string]string{}}
	set := map[string]*string{}
	for _, f := range flagSpecs {
		set[f.name] = fs.String(f.name, f.def, f.usage+" ["+f.env+"]")
	}
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), templateHelp)
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	// Environment defaults are applied after parsing, so that --help never prints a secret.
	for _, f := range flagSpecs {
		v := *set[f.name]
		if !given[f.name] {
			if e := getenv(f.env); e != "" {
				v = e
			}
		}
		o.values[f.name] = v
	}
	return o, nil
}

// config turns the options into a shadowagent.Config, reading the secret files. Errors name the
// flag and its variable and never quote a secret.
func (o options) config() (shadowagent.Config, error) {
	var (
		c    shadowagent.Config
		errs []error
	)
	add := func(name string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", flagRef(name), err))
		}
	}
	prefix, from, err := o.secret("path-prefix")
	add(from, err)
	c.PathPrefix = meshspec.Secret(prefix)
	for _, k := range []struct {
		name string
		dst  *meshspec.Key
	}{{"private-key", &c.PrivateKey}, {"peer-public-key", &c.PeerPublicKey}} {
		s, from, err := o.secret(k.name)
		if err == nil && s != "" {
			*k.dst, err = meshspec.ParseKey(s)
		}
		add(from, err)
	}
	v := o.values
	c.Mode, err = meshspec.ParseMode(v["mode"])
	add("mode", err)
	c.TCPPorts, c.UDPPorts, err = parseProtoPorts(v["ports"])
	add("ports", err)
	c.MaxFlows, err = parseOptional(v["max-flows"], strconv.Atoi)
	add("max-flows", err)
	c.UDPIdle, err = parseOptional(v["udp-idle"], time.ParseDuration)
	add("udp-idle", err)
	c.ListenAddr, c.HealthAddr, c.Interface, c.MainInterface = v["listen"], v["health-listen"], v["interface"], v["main-interface"]
	c.TLSCertFile, c.TLSKeyFile, c.UAPIDir = v["tls-cert"], v["tls-key"], v["uapi-dir"]
	c.ConnectURL, c.ConnectHost, c.CAFile = v["connect"], v["connect-host"], v["ca-file"]
	c.Destination, err = parseOptional(v["destination"], netip.ParseAddrPort)
	add("destination", err)
	c.Address, err = parseOptional(v["address"], netip.ParsePrefix)
	add("address", err)
	c.PeerAddress, err = parseOptional(v["peer-address"], netip.ParseAddr)
	add("peer-address", err)
	c.PodIP, err = parseOptional(v["pod-ip"], netip.ParseAddr)
	add("pod-ip", err)
	c.MTU, err = parseOptional(v["mtu"], strconv.Atoi)
	add("mtu", err)
	c.PersistentKeepalive, err = parseOptional(v["keepalive"], parseSeconds)
	add("keepalive", err)
	c.ReassertInterval, err = parseOptional(v["reassert-interval"], time.ParseDuration)
	add("reassert-interval", err)
	c.BatchSize, err = parseOptional(v["batch-size"], strconv.Atoi)
	add("batch-size", err)
	c.ExcludeTCP, err = parsePorts(v["exclude-tcp"])
	add("exclude-tcp", err)
	c.ExcludeUDP, err = parsePorts(v["exclude-udp"])
	add("exclude-udp", err)
	return c, errors.Join(errs...)
}

// maxSecretFile bounds a secret file: a key is 44 bytes, a prefix at most 256.
const maxSecretFile = 4 << 10

// secret returns the value of flag name, or the content of the file named by name-file
// (surrounding white space trimmed), and which of the two flags it came from; setting both is an
// error. Flags without a -file variant are plain.
func (o options) secret(name string) (value, from string, err error) {
	value, file := o.values[name], o.values[name+"-file"]
	switch {
	case value != "" && file != "":
		return "", name, fmt.Errorf("set it or %s, not both", flagRef(name+"-file"))
	case file == "":
		return value, name, nil
	}
	from = name + "-file"
	f, err := os.Open(file)
	if err != nil {
		return "", from, fmt.Errorf("read secret file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", from, fmt.Errorf("read secret file %s: %w", file, err)
	}
	if len(b) > maxSecretFile {
		return "", from, fmt.Errorf("secret file %s is larger than %d bytes", file, maxSecretFile)
	}
	value = strings.TrimSpace(string(b))
	if value == "" {
		return "", from, fmt.Errorf("secret file %s is empty", file)
	}
	return value, from, nil
}

// flagRef names a flag with its environment variable, as errors show it.
func flagRef(name string) string {
	for _, f := range flagSpecs {
		if f.name == name {
			return "--" + name + " (" + f.env + ")"
		}
	}
	return "--" + name
}

// parseOptional parses s, or returns the zero value (the Config default) when s is empty. It is
// used for non-secret values only: the parsers' errors quote their input.
func parseOptional[T any](s string, parse func(string) (T, error)) (T, error) {
	if s == "" {
		var zero T
		return zero, nil
	}
	return parse(s)
}

// parseSeconds accepts a Go duration or a whole number of seconds, as templates write it.
func parseSeconds(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(s)
}

// parsePorts parses "80,443" into ports; empty is none.
func parsePorts(s string) ([]uint16, error) {
	var ports []uint16
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.ParseUint(f, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("%q is not a port from 1 to 65535", f)
		}
		ports = append(ports, uint16(p))
	}
	return ports, nil
}

// parsePortsProto parses "80,8080/tcp,53/udp" into TCP and UDP ports; a port without a
// protocol is TCP, as in a containerPort.
func parseProtoPorts(s string) (tcp, udp []uint16, err error) {
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		num, proto, _ := strings.Cut(f, "/")
		p, perr := strconv.ParseUint(num, 10, 16)
		if perr != nil || p == 0 {
			return nil, nil, fmt.Errorf("%q is not a port from 1 to 65535", f)
		}
		switch strings.ToLower(proto) {
		case "", "tcp":
			tcp = append(tcp, uint16(p))
		case "udp":
			udp = append(udp, uint16(p))
		default:
			return nil, nil, fmt.Errorf("%q: protocol %q, want tcp or udp (SCTP is not relayed)", f, proto)
		}
	}
	return tcp, udp, nil
}

// configFlagError renames the Config fields in New's errors to the flags that set them.
func configFlagError(err error) error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs := joined.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = configFlagError(e)
		}
		return errors.Join(out...)
	}
	var ce *shadowagent.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	var names []string
	for _, f := range flagSpecs {
		if slices.Contains(strings.Split(f.field, ","), ce.Field) {
			names = append(names, flagRef(f.name))
		}
	}
	if len(names) == 0 {
		return err
	}
	return fmt.Errorf("%s: %w", strings.Join(names, " or "), ce.Err)
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%s: %w", flagRef("log-level"), err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%s: %q: want text or json", flagRef("log-format"), format)
}
