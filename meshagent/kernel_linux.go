package meshagent

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

// tunPath is the TUN clone device; containers often lack it.
const tunPath = "/dev/net/tun"

// kernel applies a linkPlan with netlink and remembers what it added, so that remove undoes
// exactly that. Its netlink socket is opened by openKernel, in the network namespace of the
// calling thread, and used from then on whatever thread calls.
type kernel struct {
	h      *netlink.Handle
	index  int // of the link, once apply found it
	addr   *netlink.Addr
	routes []netlink.Route
}

func openKernel() (*kernel, error) {
	if err := ensureCharDev(tunPath, 10, 200); err != nil {
		return nil, err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &kernel{h: h}, nil
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
		// Like the host's node: opening is harmless, TUNSETIFF still needs CAP_NET_ADMIN.
		if err := os.Chmod(path, 0o666); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
	}
	return nil
}

// apply sets the MTU and the address, brings the link up and adds the routes. Each step accepts
// "already so"; a route to the same destination through another link is an error, not a
// takeover. After a failure, remove undoes what was done.
func (k *kernel) apply(p linkPlan) error {
	link, err := k.h.LinkByName(p.Name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", p.Name, err)
	}
	k.index = link.Attrs().Index
	if link.Attrs().MTU != p.MTU {
		if err := k.h.LinkSetMTU(link, p.MTU); err != nil {
			return fmt.Errorf("set mtu of %s: %w", p.Name, err)
		}
	}
	addr := &netlink.Addr{IPNet: ipNet(p.Address)}
	if p.Address.Addr().Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := k.h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %v to %s: %w", p.Address, p.Name, err)
	}
	k.addr = addr
	if err := k.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", p.Name, err)
	}
	for _, dst := range p.Routes {
		r := netlink.Route{LinkIndex: k.index, Dst: ipNet(dst), Scope: netlink.SCOPE_LINK}
		if dst.Addr().Is6() {
			r.Scope = netlink.SCOPE_UNIVERSE
		}
		err := k.h.RouteAdd(&r)
		if errors.Is(err, unix.EEXIST) {
			err = k.ownsRoute(dst)
		}
		if err != nil {
			return fmt.Errorf("add route %v dev %s: %w", dst, p.Name, err)
		}
		k.routes = append(k.routes, r)
	}
	return nil
}

// ownsRoute accepts an existing route to dst only if it goes through our link.
func (k *kernel) ownsRoute(dst netip.Prefix) error {
	family := netlink.FAMILY_V4
	if dst.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	rs, err := k.h.RouteListFiltered(family, &netlink.Route{Dst: ipNet(dst)}, netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range rs {
		if r.LinkIndex != k.index {
			name := fmt.Sprintf("index %d", r.LinkIndex)
			if l, err := k.h.LinkByIndex(r.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			return fmt.Errorf("a route to %v already exists via %s", dst, name)
		}
	}
	return nil
}

// remove deletes the routes and the address apply added; "already gone" is fine.
func (k *kernel) remove() error {
	var errs []error
	for i := len(k.routes) - 1; i >= 0; i-- {
		r := k.routes[i]
		if err := k.h.RouteDel(&r); err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete route %v: %w", r.Dst, err))
		}
	}
	k.routes = nil
	if k.addr != nil {
		link, err := k.h.LinkByIndex(k.index)
		if err == nil {
			err = k.h.AddrDel(link, k.addr)
		}
		if err != nil && !gone(err) {
			errs = append(errs, fmt.Errorf("delete address %v: %w", k.addr.IPNet, err))
		}
		k.addr = nil
	}
	return errors.Join(errs...)
}

// gone reports the errors netlink gives for a route, address or link that is not there.
func gone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENODEV)
}

// linkUp reports whether the link exists and is administratively up.
func (k *kernel) linkUp() error {
	link, err := k.h.LinkByIndex(k.index)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("link %s is down", link.Attrs().Name)
	}
	return nil
}

func (k *kernel) close() { k.h.Close() }

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
