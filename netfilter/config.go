package netfilter

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// DefaultInterval is how often Run re-asserts the rules when Config.Interval is zero. The rules
// live in the shadow pod's own network namespace, where only a container of that pod with
// NET_ADMIN can change them, so the check is a repair for rare mishaps, and each costs several
// iptables processes: at 10 s, 57 shadow pods on a 2-core node kept about 50 iptables processes
// running at once (half the CPU in the kernel) and the node took 30 s instead of 3 s to give the
// next shadow pod an IP.
const DefaultInterval = time.Minute

// ErrConfig is wrapped by every error Config.Validate returns.
var ErrConfig = errors.New("invalid netfilter configuration")

// Config describes the shadow pod's network namespace. The zero value is not usable: the two
// interfaces and Peer are required.
type Config struct {
	// MainInterface is the pod's own interface, the one holding the pod IP (e.g. "eth0").
	// Required.
	MainInterface string

	// WireGuardInterface is the tunnel interface towards the offloaded pod (e.g. "wg0").
	// Required; the route to Peer through it is not this package's business.
	WireGuardInterface string

	// PodIP, when set, narrows DNAT to packets addressed to it. The zero value matches packets
	// arriving on MainInterface addressed to any local address (-m addrtype --dst-type LOCAL),
	// which in a pod is the pod IP. IPv4 only.
	PodIP netip.Addr

	// Peer is the offloaded pod's tunnel address (10.7.0.2 in the stock mesh): every TCP and UDP
	// flow reaching the pod is DNATed to it, port unchanged. Required, IPv4.
	Peer netip.Addr

	// ExcludeTCP and ExcludeUDP are destination ports that stay with the shadow pod instead of
	// being forwarded. Nothing is excluded implicitly: the caller must list its own listeners
	// (the tunnel's WebSocket port 28080, its health and metrics port), or the tunnel would be
	// forwarded into itself. Order and duplicates do not matter; port 0 is refused.
	ExcludeTCP, ExcludeUDP []uint16

	// Interval is how often Run checks the rules and repairs them. Zero means DefaultInterval.
	Interval time.Duration

	// IPTables programs the IPv4 tables. Nil means the iptables binary found on PATH, or in
	// /usr/sbin or /sbin (legacy and nf_tables back ends both work).
	IPTables IPTables

	// Logger receives Run's reports (rules applied, repairs, removal). Nil discards them.
	Logger *slog.Logger
}

// Validate reports the first problem with c, wrapping ErrConfig.
func (c Config) Validate() error {
	if err := validIface(c.MainInterface); err != nil {
		return fmt.Errorf("main interface: %w", err)
	}
	if err := validIface(c.WireGuardInterface); err != nil {
		return fmt.Errorf("wireguard interface: %w", err)
	}
	switch {
	case c.MainInterface == c.WireGuardInterface:
		return fmt.Errorf("main and wireguard interface are both %q: %w", c.MainInterface, ErrConfig)
	case !c.Peer.IsValid():
		return fmt.Errorf("peer address missing: %w", ErrConfig)
	case !c.Peer.Is4() || c.Peer.IsUnspecified() || c.Peer.IsMulticast():
		return fmt.Errorf("peer %v is not an IPv4 unicast address: %w", c.Peer, ErrConfig)
	case c.PodIP.IsValid() && (!c.PodIP.Is4() || c.PodIP.IsUnspecified() || c.PodIP.IsMulticast()):
		return fmt.Errorf("pod IP %v is not an IPv4 unicast address: %w", c.PodIP, ErrConfig)
	case c.PodIP == c.Peer:
		return fmt.Errorf("pod IP and peer are both %v: %w", c.Peer, ErrConfig)
	case slices.Contains(c.ExcludeTCP, 0) || slices.Contains(c.ExcludeUDP, 0):
		return fmt.Errorf("excluded port 0: %w", ErrConfig)
	case c.Interval < 0:
		return fmt.Errorf("negative interval %v: %w", c.Interval, ErrConfig)
	}
	return nil
}

// validIface accepts what Linux accepts as an interface name, minus a trailing "+", which
// iptables would read as a wildcard.
func validIface(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("name missing: %w", ErrConfig)
	case len(name) > 15:
		return fmt.Errorf("name %q longer than 15 bytes: %w", name, ErrConfig)
	case name == "." || name == "..":
		return fmt.Errorf("name %q: %w", name, ErrConfig)
	case strings.ContainsAny(name, "/: \t\n\"'\\"):
		return fmt.Errorf("name %q has a forbidden character: %w", name, ErrConfig)
	case strings.HasSuffix(name, "+"):
		return fmt.Errorf("name %q ends in the iptables wildcard +: %w", name, ErrConfig)
	}
	return nil
}
