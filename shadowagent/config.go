package shadowagent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/relay"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/usernet"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

// Defaults of Config. They are the stock InterLink mesh's values where it has one.
const (
	// DefaultListenAddr is the tunnel's WebSocket port on every address of the pod, the port the
	// VK's Service and Ingress point at.
	DefaultListenAddr = ":28080"
	// DefaultHealthAddr serves /healthz, /readyz and /metrics. 9102 sits next to the mesh-agent's
	// 9101, clear of 28080 and 51820.
	DefaultHealthAddr = ":9102"
	// DefaultInterface is the WireGuard interface of the shadow pod.
	DefaultInterface = "wg0"
	// DefaultMTU is the WireGuard interface's MTU.
	DefaultMTU = meshspec.DefaultMTU
	// DefaultPersistentKeepalive is how often an idle tunnel sends a keepalive once the peer was
	// heard from.
	DefaultPersistentKeepalive = meshspec.DefaultPersistentKeepalive
	// DefaultUAPIDir is where wg(8) and wgctrl look for userspace WireGuard sockets.
	DefaultUAPIDir = "/var/run/wireguard"
)

// Default addresses of Config: the shadow is 10.7.0.1 on the mesh, the offloaded pod 10.7.0.2.
var (
	DefaultAddress     = netip.PrefixFrom(meshspec.DefaultPeerAddress, 32)
	DefaultPeerAddress = meshspec.DefaultAddress.Addr()
)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path minus the NUL).
const maxSocketPath = 107

// maxIfaceName is IFNAMSIZ minus the NUL.
const maxIfaceName = 15

// Config configures an Agent. Its fields map one to one onto the VK's shadow-pod template data
// where the template has them (.RandomPassword, .WGPrivateKey, .ClientPublicKey); the rest are
// the stock mesh's constants. The zero value of every optional field selects its default.
type Config struct {
	// PathPrefix is the secret first path segment of the tunnel's upgrade requests
	// ("/<PathPrefix>/events"), the VK's .RandomPassword. Required; never logged.
	PathPrefix meshspec.Secret
	// PrivateKey is the shadow's WireGuard private key, the VK's .WGPrivateKey. Required.
	PrivateKey meshspec.Key
	// PeerPublicKey is the offloaded pod's WireGuard public key, the VK's .ClientPublicKey.
	// Required.
	PeerPublicKey meshspec.Key

	// Mode selects how the shadow forwards: meshspec.ModeKernel (a TUN device and iptables;
	// CAP_NET_ADMIN) or meshspec.ModeNetstack (a user-space stack and relays from ordinary
	// sockets; no capability). Default ModeKernel.
	Mode meshspec.Mode
	// TCPPorts and UDPPorts are the offloaded pod's declared ports (the VK's .ExposedPorts):
	// in netstack mode the shadow listens on them and relays each flow to the same port of the
	// offloaded pod. Kernel mode forwards every port and ignores them. They must not be the
	// ports of ListenAddr or HealthAddr.
	TCPPorts, UDPPorts []uint16
	// MaxFlows bounds the flows relayed at once in netstack mode, each way and per port.
	// Default usernet.DefaultMaxFlows.
	MaxFlows int
	// UDPIdle ends a relayed UDP flow without a datagram either way for this long, in
	// netstack mode. Default relay.DefaultIdle.
	UDPIdle time.Duration

	// ListenAddr is the TCP address of the tunnel's WebSocket server. Its port is excluded from
	// DNAT. Default DefaultListenAddr.
	ListenAddr string
	// TLSCertFile and TLSKeyFile, both or neither, make the tunnel serve wss:// (read by New).
	// Not with ConnectURL.
	TLSCertFile, TLSKeyFile string
	// ConnectURL, "ws://host[:port]" or "wss://host[:port]", turns the shadow into the tunnel's
	// client (the inbound direction): instead of serving ListenAddr it dials the offloaded pod's
	// mesh-agent there, through the remote cluster's ingress, re-dialing with backoff and
	// through HTTPS_PROXY (HTTP_PROXY, NO_PROXY) when set. Nothing then listens for the remote
	// site in the local cluster.
	ConnectURL string
	// ConnectHost overrides the Host header of ConnectURL's requests and the TLS server name
	// (an ingress dialed by address). Only with ConnectURL.
	ConnectHost string
	// CAFile is a PEM file of roots that verify a wss:// ConnectURL besides the system roots.
	CAFile string
	// Destination is the only destination clients may claim in their token, the WireGuard
	// listener of the stock mesh. Default tunnel.DefaultDestination (127.0.0.1:51820); its port
	// is also the device's listen_port, which wg(8) shows.
	Destination netip.AddrPort

	// HealthAddr is the TCP address of /healthz, /readyz and /metrics. Its port is excluded from
	// DNAT. Default DefaultHealthAddr.
	HealthAddr string

	// Interface is the WireGuard TUN interface. Default DefaultInterface.
	Interface string
	// Address is the shadow's address on the mesh, set on Interface. IPv4. Default
	// DefaultAddress.
	Address netip.Prefix
	// PeerAddress is the offloaded pod's address on the mesh: the peer's only allowed IP, routed
	// to Interface, and where every forwarded flow is DNATed. IPv4. Default DefaultPeerAddress.
	PeerAddress netip.Addr
	// MTU of Interface, 576 to 65535. Default DefaultMTU.
	MTU int
	// PersistentKeepalive is the peer's keepalive period, whole seconds from 1s to 65535s.
	// Default DefaultPersistentKeepalive.
	PersistentKeepalive time.Duration

	// MainInterface is the pod's own interface, where forwarded flows arrive. Empty: the
	// interface holding PodIP, else that of the IPv4 default route, found when Run starts.
	MainInterface string
	// PodIP narrows DNAT to packets addressed to it (the downward API's status.podIP), and in
	// netstack mode the declared ports' listeners. The zero value matches every local address
	// (arriving on MainInterface). IPv4.
	PodIP netip.Addr
	// ExcludeTCP and ExcludeUDP are more destination ports that stay with the shadow pod instead
	// of being forwarded; the ports of ListenAddr and HealthAddr are always excluded. Port 0 is
	// refused.
	ExcludeTCP, ExcludeUDP []uint16
	// ReassertInterval is how often the iptables rules are checked and repaired. Default
	// netfilter.DefaultInterval.
	ReassertInterval time.Duration
	// BatchSize is the most datagrams the tunnel hands WireGuard at once, 1 to 128: memory
	// against throughput (docs/performance.md). Default tunnel.DefaultBatchSize.
	BatchSize int

	// UAPIDir holds the UAPI socket <UAPIDir>/<Interface>.sock, through which wg(8) and wgctrl
	// inspect the embedded device. Default DefaultUAPIDir.
	UAPIDir string

	// Logger receives the agent's, the tunnel's, netfilter's and wireguard-go's logs (the latter
	// at debug level, its errors at error level); nil discards them. Keys and the path prefix
	// are never logged.
	Logger *slog.Logger
}

// ErrRequired is the error of a ConfigError about a required field left unset.
var ErrRequired = errors.New("required")

// ConfigError says which field of a Config is wrong. Field is the Go field name ("MTU"), so that
// a command can name its own flag instead. Err never quotes a secret.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return "config " + e.Field + ": " + e.Err.Error() }

func (e *ConfigError) Unwrap() error { return e.Err }

func fieldErrf(field, format string, args ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
}

// withDefaults returns c with every unset optional field set to its documented default.
func (c Config) withDefaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.ListenAddr, DefaultListenAddr)
	def(&c.HealthAddr, DefaultHealthAddr)
	def(&c.Interface, DefaultInterface)
	def(&c.UAPIDir, DefaultUAPIDir)
	if !c.Destination.IsValid() {
		c.Destination = tunnel.DefaultDestination
	}
	if !c.Address.IsValid() {
		c.Address = DefaultAddress
	}
	if !c.PeerAddress.IsValid() {
		c.PeerAddress = DefaultPeerAddress
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.PersistentKeepalive == 0 {
		c.PersistentKeepalive = DefaultPersistentKeepalive
	}
	if c.Mode == "" {
		c.Mode = meshspec.ModeKernel
	}
	if c.MaxFlows == 0 {
		c.MaxFlows = usernet.DefaultMaxFlows
	}
	if c.UDPIdle == 0 {
		c.UDPIdle = relay.DefaultIdle
	}
	return c
}

// validate checks c after withDefaults and reports every wrong field, each as a *ConfigError,
// joined with errors.Join.
func (c Config) validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	switch p := string(c.PathPrefix); {
	case p == "":
		add(&ConfigError{"PathPrefix", ErrRequired})
	case len(p) > meshspec.MaxPathPrefix:
		add(fieldErrf("PathPrefix", "%d bytes, at most %d", len(p), meshspec.MaxPathPrefix))
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune("/?#", r) }):
		add(fieldErrf("PathPrefix", "must be one path segment: no '/', '?', '#', space or control character"))
	}
	if c.PrivateKey.IsZero() {
		add(&ConfigError{"PrivateKey", ErrRequired})
	}
	switch {
	case c.PeerPublicKey.IsZero():
		add(&ConfigError{"PeerPublicKey", ErrRequired})
	case !c.PrivateKey.IsZero() && c.PeerPublicKey == c.PrivateKey.PublicKey():
		add(fieldErrf("PeerPublicKey", "is the shadow's own public key: want the client's (.ClientPublicKey)"))
	}

	tunnelPort, err := listenPort(c.ListenAddr)
	add(wrapField("ListenAddr", err))
	healthPort, err := listenPort(c.HealthAddr)
	add(wrapField("HealthAddr", err))
	if tunnelPort != 0 && tunnelPort == healthPort {
		add(fieldErrf("HealthAddr", "port %d is also the tunnel's", healthPort))
	}
	if _, err := meshspec.ParseMode(string(c.Mode)); err != nil {
		add(&ConfigError{"Mode", err})
	}
	for _, f := range []struct {
		field string
		ports []uint16
	}{{"TCPPorts", c.TCPPorts}, {"UDPPorts", c.UDPPorts}} {
		for i, p := range f.ports {
			switch {
			case p == 0:
				add(fieldErrf(f.field, "port 0"))
			case slices.Contains(f.ports[:i], p):
				add(fieldErrf(f.field, "port %d is listed twice", p))
			case f.field == "TCPPorts" && (p == tunnelPort || p == healthPort):
				add(fieldErrf(f.field, "port %d is the shadow's own (tunnel or health)", p))
			}
		}
	}
	if c.MaxFlows < 0 {
		add(fieldErrf("MaxFlows", "negative: %d", c.MaxFlows))
	}
	if c.UDPIdle < 0 {
		add(fieldErrf("UDPIdle", "negative: %v", c.UDPIdle))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		add(fieldErrf("TLSKeyFile", "set both TLSCertFile and TLSKeyFile, or neither"))
	}
	if c.ConnectURL != "" {
		if c.TLSCertFile != "" {
			add(fieldErrf("TLSCertFile", "a shadow that dials (ConnectURL) serves no tunnel to put TLS on"))
		}
		if !strings.HasPrefix(c.ConnectURL, "ws://") && !strings.HasPrefix(c.ConnectURL, "wss://") {
			add(fieldErrf("ConnectURL", "want ws://host[:port] or wss://host[:port]"))
		}
	} else {
		if c.ConnectHost != "" {
			add(fieldErrf("ConnectHost", "only with ConnectURL"))
		}
		if c.CAFile != "" {
			add(fieldErrf("CAFile", "only with a wss:// ConnectURL"))
		}
	}
	if c.CAFile != "" && strings.HasPrefix(c.ConnectURL, "ws://") {
		add(fieldErrf("CAFile", "only with a wss:// ConnectURL"))
	}
	if !c.Destination.Addr().IsValid() || c.Destination.Port() == 0 {
		add(fieldErrf("Destination", "%v is not an address and a non-zero port", c.Destination))
	}

	add(wrapField("Interface", validIface(c.Interface)))
	a := c.Address.Addr()
	switch {
	case !a.Is4() || a.IsUnspecified() || a.IsMulticast():
		add(fieldErrf("Address", "%v is not an IPv4 unicast address", c.Address))
	case c.Address.Bits() == 0:
		add(fieldErrf("Address", "%v has a zero-length prefix", c.Address))
	}
	switch p := c.PeerAddress; {
	case !p.Is4() || p.IsUnspecified() || p.IsMulticast():
		add(fieldErrf("PeerAddress", "%v is not an IPv4 unicast address", p))
	case p == a:
		add(fieldErrf("PeerAddress", "%v is also the shadow's address", p))
	}
	if c.MTU < meshspec.MinMTU || c.MTU > meshspec.MaxMTU {
		add(fieldErrf("MTU", "%d is outside %d..%d", c.MTU, meshspec.MinMTU, meshspec.MaxMTU))
	}
	switch k := c.PersistentKeepalive; {
	case k < time.Second || k > meshspec.MaxKeepalive:
		add(fieldErrf("PersistentKeepalive", "%v is outside 1s..%v", k, meshspec.MaxKeepalive))
	case k%time.Second != 0:
		add(fieldErrf("PersistentKeepalive", "%v is not a whole number of seconds", k))
	}

	if c.MainInterface != "" {
		add(wrapField("MainInterface", validIface(c.MainInterface)))
		if c.MainInterface == c.Interface {
			add(fieldErrf("MainInterface", "%q is also the WireGuard interface", c.MainInterface))
		}
	}
	if p := c.PodIP; p.IsValid() {
		switch {
		case !p.Is4() || p.IsUnspecified() || p.IsMulticast():
			add(fieldErrf("PodIP", "%v is not an IPv4 unicast address (the shadow forwards IPv4 only)", p))
		case p == c.PeerAddress || p == a:
			add(fieldErrf("PodIP", "%v is a mesh address", p))
		}
	}
	if slices.Contains(c.ExcludeTCP, 0) {
		add(fieldErrf("ExcludeTCP", "port 0"))
	}
	if slices.Contains(c.ExcludeUDP, 0) {
		add(fieldErrf("ExcludeUDP", "port 0"))
	}
	if c.BatchSize < 0 || c.BatchSize > 128 {
		add(fieldErrf("BatchSize", "%d is outside 1..128", c.BatchSize))
	}
	if c.ReassertInterval < 0 {
		add(fieldErrf("ReassertInterval", "negative: %v", c.ReassertInterval))
	}
	if sock := c.socketPath(); len(sock) > maxSocketPath {
		add(fieldErrf("UAPIDir", "socket path %s is longer than %d bytes", sock, maxSocketPath))
	}
	return errors.Join(errs...)
}

func wrapField(field string, err error) error {
	if err == nil {
		return nil
	}
	return &ConfigError{Field: field, Err: err}
}

// listenPort returns the port of a "host:port" listen address, which must be set and not 0: it
// is excluded from DNAT, so it must be known before listening.
func listenPort(addr string) (uint16, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%q is not host:port: %w", addr, errors.Unwrap(err))
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("%q: want a numeric port from 1 to 65535 (it is excluded from forwarding)", addr)
	}
	return uint16(p), nil
}

// validIface accepts what Linux's dev_valid_name accepts, in printable ASCII and without '%':
// the name is also a socket file name.
func validIface(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > maxIfaceName {
		return fmt.Errorf("%q is not a valid interface name (1 to %d bytes)", name, maxIfaceName)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("/:%", r) }) {
		return fmt.Errorf("%q has a character not allowed in an interface name", name)
	}
	return nil
}

func (c Config) socketPath() string { return filepath.Join(c.UAPIDir, c.Interface+".sock") }

// excludedTCP are the TCP ports that stay with the shadow: its own listeners first, then
// ExcludeTCP, without duplicates. Call it on a validated Config.
func (c Config) excludedTCP() []uint16 {
	tp, _ := listenPort(c.ListenAddr)
	hp, _ := listenPort(c.HealthAddr)
	ports := []uint16{tp, hp}
	for _, p := range c.ExcludeTCP {
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// LogValue logs the configuration without its secrets: the keys and the prefix appear only as
// whether they are set.
func (c Config) LogValue() slog.Value {
	ports := func(ps []uint16) string {
		s := make([]string, len(ps))
		for i, p := range ps {
			s[i] = strconv.Itoa(int(p))
		}
		return strings.Join(s, ",")
	}
	return slog.GroupValue(
		slog.String("mode", string(c.Mode)),
		slog.String("tcp_ports", ports(c.TCPPorts)),
		slog.String("udp_ports", ports(c.UDPPorts)),
		slog.Bool("path_prefix_set", c.PathPrefix != ""),
		slog.Bool("private_key_set", !c.PrivateKey.IsZero()),
		slog.Bool("peer_public_key_set", !c.PeerPublicKey.IsZero()),
		slog.String("listen", c.ListenAddr),
		slog.Bool("tls", c.TLSCertFile != ""),
		slog.String("connect", c.ConnectURL),
		slog.String("connect_host", c.ConnectHost),
		slog.String("ca_file", c.CAFile),
		slog.String("destination", orEmpty(c.Destination)),
		slog.String("health_listen", c.HealthAddr),
		slog.String("interface", c.Interface),
		slog.String("address", orEmpty(c.Address)),
		slog.String("peer_address", orEmpty(c.PeerAddress)),
		slog.Int("mtu", c.MTU),
		slog.Duration("keepalive", c.PersistentKeepalive),
		slog.String("main_interface", c.MainInterface),
		slog.String("pod_ip", orEmpty(c.PodIP)),
		slog.String("exclude_tcp", ports(c.ExcludeTCP)),
		slog.String("exclude_udp", ports(c.ExcludeUDP)),
		slog.Duration("reassert_interval", c.ReassertInterval),
		slog.Int("batch_size", c.BatchSize),
		slog.String("uapi_dir", c.UAPIDir),
	)
}

// orEmpty prints an unset netip value as "" rather than "invalid IP".
func orEmpty[T interface {
	IsValid() bool
	String() string
}](v T) string {
	if !v.IsValid() {
		return ""
	}
	return v.String()
}
