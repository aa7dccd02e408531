package wgdevice

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Link applies a LinkPlan with netlink and remembers what it added, so that Remove undoes
// exactly that. Its netlink socket is opened by OpenLink in the network namespace of the
// calling thread and keeps that namespace whichever thread uses it later. Apply and Remove
// must not run concurrently with each other.
type Link struct {
	h      *netlink.Handle
	index  int // of the link, once Apply found it
	addr   *netlink.Addr
	routes []netlink.Route
}

// OpenLink creates TUNPath when it is missing (which needs CAP_MKNOD, not a privileged
// container) and opens a netlink socket in the calling thread's network namespace.
func OpenLink() (*Link, error) {
	if err := ensureCharDev(TUNPath, 10, 200); err != nil {
		return nil, err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &Link{h: h}, nil
}

// ensureCharDev creates the character device path (major, minor) when it is missing, which
// needs CAP_MKNOD but no privileged container; an existing file is left as it is.
func ensureCharDev(path string, major, minor uint32) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor)))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create %s (needs CAP_MKNOD): %w", path, err)
	}
	if err == nil {
		// The umask may have narrowed the mode; like the host's node, opening is harmless:
		// TUNSETIFF still needs CAP_NET_ADMIN.
		if err := os.Chmod(path, 0o666); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
	}
	return nil
}

// Apply sets the MTU and the address, brings the link up and adds the routes. Each step accepts
// "already so"; a route to the same destination through another link is an error, not a
// takeover. After a failure, Remove undoes what was done.
func (l *Link) Apply(p LinkPlan) error {
	link, err := l.h.LinkByName(p.Name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", p.Name, err)
	}
	l.index = link.Attrs().Index
	if link.Attrs().MTU != p.MTU {
		if err := l.h.LinkSetMTU(link, p.MTU); err != nil {
			return fmt.Errorf("set mtu of %s: %w", p.Name, err)
		}
	}
	addr := &netlink.Addr{IPNet: ipNet(p.Address)}
	if p.Address.Addr().Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := l.h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %v to %s: %w", p.Address, p.Name, err)
	}
	l.addr = addr
	if err := l.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", p.Name, err)
	}
	for _, dst := range p.Routes {
		r := netlink.Route{LinkIndex: l.index, Dst: ipNet(dst), Scope: netlink.SCOPE_LINK}
		if dst.Addr().Is6() {
			r.Scope = netlink.SCOPE_UNIVERSE
		}
		err := l.h.RouteAdd(&r)
		if errors.Is(err, unix.EEXIST) {
			err = l.ownsRoute(dst)
		}
		if err != nil {
			return fmt.Errorf("add route %v dev %s: %w", dst, p.Name, err)
		}
		l.routes = append(l.routes, r)
	}
	return nil
}

// ownsRoute accepts an existing route to dst only when it goes through our link.
func (l *Link) ownsRoute(dst netip.Prefix) error {
	family := netlink.FAMILY_V4
	if dst.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	rs, err := l.h.RouteListFiltered(family, &netlink.Route{Dst: ipNet(dst)}, netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range rs {
		if r.LinkIndex != l.index {
			return fmt.Errorf("a route to %v already exists via %s", dst, l.linkName(r.LinkIndex))
		}
	}
	return nil
}

func (l *Link) linkName(index int) string {
	if link, err := l.h.LinkByIndex(index); err == nil {
		return link.Attrs().Name
	}
	return fmt.Sprintf("link index %d", index)
}

// Remove deletes the routes and the address Apply added; "already gone" is fine, and so is
// removing twice. The link itself stays: it belongs to the TUN device.
func (l *Link) Remove() error {
	var errs []error
	for i := len(l.routes) - 1; i >= 0; i-- {
		if err := l.h.RouteDel(&l.routes[i]); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete route %v: %w", l.routes[i].Dst, err))
		}
	}
	l.routes = nil
	if l.addr != nil {
		link, err := l.h.LinkByIndex(l.index)
		if err == nil {
			err = l.h.AddrDel(link, l.addr)
		}
		if err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete address %v: %w", l.addr.IPNet, err))
		}
		l.addr = nil
	}
	return errors.Join(errs...)
}

// isGone reports the errors netlink returns for a route, address or link that is not there.
func isGone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENODEV)
}

// CheckUp returns nil when the link Apply found exists and is administratively up.
func (l *Link) CheckUp() error {
	link, err := l.h.LinkByIndex(l.index)
	if err != nil {
		return fmt.Errorf("find wireguard link: %w", err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("link %s is down", link.Attrs().Name)
	}
	return nil
}

// Close closes the netlink socket; it leaves the kernel state as it is.
func (l *Link) Close() { l.h.Close() }

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
