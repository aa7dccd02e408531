package meshspec

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Version1 is the only version of the format; Parse refuses any other.
const Version1 = "v1"

// Defaults of the optional fields, applied by WithDefaults, Parse and Marshal. They are the values
// the stock InterLink mesh uses.
const (
	DefaultInterface           = "wg0"
	DefaultMTU                 = 1280
	DefaultPersistentKeepalive = 25 * time.Second
)

// Defaults of the optional address fields.
var (
	// DefaultAddress is the pod's address on the mesh.
	DefaultAddress = netip.MustParsePrefix("10.7.0.2/32")
	// DefaultPeerAddress is the shadow pod's address on the mesh.
	DefaultPeerAddress = netip.MustParseAddr("10.7.0.1")
	// DefaultDestination is the WireGuard listener the shadow's tunnel server forwards to.
	DefaultDestination = netip.MustParseAddrPort("127.0.0.1:51820")
)

// Mode is how an agent joins the mesh.
type Mode string

// The modes. The empty Mode is ModeKernel.
const (
	// ModeKernel runs WireGuard on a TUN device: the mesh-agent routes the spec's Routes to it,
	// the shadow-agent forwards with iptables. Needs CAP_NET_ADMIN and /dev/net/tun.
	ModeKernel Mode = "kernel"
	// ModeNetstack runs WireGuard on a user-space IP stack (package usernet): no TUN device, no
	// capability, no root. The mesh's flows end in the agent and are relayed from its sockets.
	ModeNetstack Mode = "netstack"
)

// ParseMode accepts "kernel", "netstack" or "" (kernel).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "", ModeKernel:
		return ModeKernel, nil
	case ModeNetstack:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want %q or %q", s, ModeKernel, ModeNetstack)
}

// Spec is everything the mesh-agent of one offloaded pod needs: its WireGuard identity, its
// addresses and routes, and how to reach its shadow pod's tunnel. The JSON tags name the wire
// fields. MarshalJSON and UnmarshalJSON speak the mesh.json format (PersistentKeepalive as a Go
// duration, "25s"; decoding as strict as Parse) without applying defaults or validating: use
// Parse and Marshal for that.
type Spec struct {
	// Version is the format version, Version1. Parse requires it; Marshal fills it in.
	Version string `json:"version"`
	// Mode is how the mesh-agent joins the mesh. Empty is ModeKernel (and is what Marshal
	// writes for it, so kernel-mode specs stay as they were).
	Mode Mode `json:"mode,omitempty"`
	// Interface is the WireGuard network interface in the pod (at most 15 bytes, a valid Linux
	// interface name). Default DefaultInterface.
	Interface string `json:"interface,omitempty"`
	// PrivateKey is the pod's WireGuard private key. Required.
	PrivateKey Key `json:"privateKey"`
	// PeerPublicKey is the shadow pod's WireGuard public key. Required.
	PeerPublicKey Key `json:"peerPublicKey"`
	// Address is the pod's address on the mesh, set on Interface. Default DefaultAddress.
	Address netip.Prefix `json:"address,omitzero"`
	// PeerAddress is the shadow pod's address on the mesh. Default DefaultPeerAddress.
	PeerAddress netip.Addr `json:"peerAddress,omitzero"`
	// MTU of Interface, 576 to 65535 (1280 at least when IPv6 is used). Default DefaultMTU.
	MTU int `json:"mtu,omitempty"`
	// PersistentKeepalive is how often an idle tunnel sends a keepalive, whole seconds from 1s to
	// 65535s; it keeps the WebSocket and the ingress busy. Written as a Go duration ("25s").
	// Default DefaultPersistentKeepalive.
	PersistentKeepalive time.Duration `json:"persistentKeepalive,omitempty"`
	// Routes are the destinations reached through the mesh (the local cluster's pod and service
	// CIDRs): the agent routes them to Interface and the peer accepts them, see AllowedIPs.
	// Canonical prefixes (host bits zero), no duplicates, no default route.
	Routes []netip.Prefix `json:"routes,omitempty"`
	// DNS is the local cluster's resolver configuration, for the pod's dnsConfig. Optional; the
	// agent itself does not use it.
	DNS DNS `json:"dns,omitzero"`
	// Tunnel is how to reach the shadow pod's WebSocket tunnel server. Required.
	Tunnel Tunnel `json:"tunnel"`
	// Forwards are fixed relays in netstack mode, for clients that honour no proxy: the agent
	// listens on each Listen and relays to To through the mesh. Kernel mode routes instead and
	// ignores them. At most MaxForwards.
	Forwards []Forward `json:"forwards,omitempty"`
}

// Forward is one fixed relay: a port on the pod's loopback to a local host and port.
type Forward struct {
	// Protocol is "tcp" (default) or "udp".
	Protocol string `json:"protocol,omitempty"`
	// Listen is where the agent listens in the pod, a loopback address and port.
	Listen netip.AddrPort `json:"listen"`
	// To is "host:port" in the local cluster; a name is resolved through the mesh DNS with its
	// search list at every dial.
	To string `json:"to"`
}

// DNS is a resolver configuration, as in a pod's dnsConfig.
type DNS struct {
	// Nameservers are at most 3 resolver addresses.
	Nameservers []netip.Addr `json:"nameservers,omitempty"`
	// Searches are at most 32 search domains.
	Searches []string `json:"searches,omitempty"`
}

// Tunnel says how to reach the shadow pod's wstunnel-compatible WebSocket server.
type Tunnel struct {
	// URL is "ws://host[:port]" or "wss://host[:port]", without path, query or user: the
	// shadow's tunnel server, which the agent dials (the outbound direction). Required unless
	// Listen is set.
	URL string `json:"url,omitempty"`
	// Listen is "[ip]:port": the agent serves the tunnel there and the shadow dials it through
	// the remote cluster's ingress (the inbound direction, for a local cluster nothing can
	// reach). Exclusive with URL and with the dialing settings (CAFile, Unmasked, Nameservers).
	Listen string `json:"listen,omitempty"`
	// PathPrefix is the secret first path segment of the upgrade request
	// ("/<PathPrefix>/events"): anyone who knows it can join the mesh. Required.
	PathPrefix Secret `json:"pathPrefix"`
	// Host overrides the HTTP Host header, to dial an ingress by address; with wss:// its host
	// part is also the TLS server name. Optional.
	Host string `json:"host,omitempty"`
	// Destination is the WireGuard listener the server is asked to forward to (the JWT claims).
	// Default DefaultDestination.
	Destination netip.AddrPort `json:"destination,omitzero"`
	// Unmasked sends unmasked frames, as a default-flag wstunnel client does; needed by a stock
	// wstunnel server, refused by RFC 6455 servers. Default false.
	Unmasked bool `json:"unmasked,omitempty"`
	// CAFile is a PEM file of roots that verify a wss:// server; empty uses the system roots.
	// Only with wss://.
	CAFile string `json:"caFile,omitempty"`
	// Nameservers resolve the URL's host (and a proxy's) instead of the pod's resolv.conf: the
	// remote cluster's DNS, for a pod whose resolv.conf names only the local cluster's DNS,
	// which is reachable only once the tunnel is up. At most MaxNameservers; port 53. Optional.
	Nameservers []netip.Addr `json:"nameservers,omitempty"`
}

// WithDefaults returns s with every unset optional field set to its documented default.
func (s Spec) WithDefaults() Spec {
	if s.Version == "" {
		s.Version = Version1
	}
	if s.Interface == "" {
		s.Interface = DefaultInterface
	}
	if !s.Address.IsValid() {
		s.Address = DefaultAddress
	}
	if !s.PeerAddress.IsValid() {
		s.PeerAddress = DefaultPeerAddress
	}
	if s.MTU == 0 {
		s.MTU = DefaultMTU
	}
	if s.PersistentKeepalive == 0 {
		s.PersistentKeepalive = DefaultPersistentKeepalive
	}
	if !s.Tunnel.Destination.IsValid() {
		s.Tunnel.Destination = DefaultDestination
	}
	return s
}

// AllowedIPs are the source addresses accepted from the peer and the destinations sent to it:
// PeerAddress as a host prefix, then Routes.
func (s Spec) AllowedIPs() []netip.Prefix {
	out := make([]netip.Prefix, 0, 1+len(s.Routes))
	out = append(out, netip.PrefixFrom(s.PeerAddress, s.PeerAddress.BitLen()))
	return append(out, s.Routes...)
}

// LogValue logs the spec without its secrets.
func (s Spec) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("version", s.Version),
		slog.String("mode", string(s.Mode)),
		slog.String("interface", s.Interface),
		slog.Any("private_key", s.PrivateKey),
		slog.Any("peer_public_key", s.PeerPublicKey),
		slog.String("address", s.Address.String()),
		slog.String("peer_address", s.PeerAddress.String()),
		slog.Int("mtu", s.MTU),
		slog.String("persistent_keepalive", s.PersistentKeepalive.String()),
		slog.String("routes", prefixesString(s.Routes)),
		slog.Any("tunnel", s.Tunnel),
	}
	if len(s.DNS.Nameservers) > 0 || len(s.DNS.Searches) > 0 {
		attrs = append(attrs, slog.Int("dns_nameservers", len(s.DNS.Nameservers)), slog.Int("dns_searches", len(s.DNS.Searches)))
	}
	if len(s.Forwards) > 0 {
		attrs = append(attrs, slog.Int("forwards", len(s.Forwards)))
	}
	return slog.GroupValue(attrs...)
}

// LogValue logs the tunnel settings without the path prefix.
func (t Tunnel) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("url", t.URL),
		slog.String("listen", t.Listen),
		slog.Any("path_prefix", t.PathPrefix),
		slog.String("destination", t.Destination.String()),
		slog.Bool("unmasked", t.Unmasked),
	}
	if t.Host != "" {
		attrs = append(attrs, slog.String("host", t.Host))
	}
	if t.CAFile != "" {
		attrs = append(attrs, slog.String("ca_file", t.CAFile))
	}
	return slog.GroupValue(attrs...)
}

func prefixesString(ps []netip.Prefix) string {
	b := make([]byte, 0, 20*len(ps))
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = p.AppendTo(b)
	}
	return string(b)
}
