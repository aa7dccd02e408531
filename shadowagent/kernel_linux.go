package shadowagent

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

// tunDevice is the TUN clone device; container images often lack the node.
const tunDevice = "/dev/net/tun"

// kernel applies a linkPlan with netlink and remembers what it added, so that remove undoes
// exactly that. Its netlink socket is opened by openKernel in the network namespace of the
// calling thread and keeps that namespace whichever thread uses it later.
type kernel struct {
	h      *netlink.Handle
	index  int // of the WireGuard link, once apply found it
	addr   *netlink.Addr
	routes []netlink.Route
}

func openKernel() (*kernel, error) {
	if err := ensureTUNDevice(tunDevice); err != nil {
		return nil, err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &kernel{h: h}, nil
}

// ensureTUNDevice creates the TUN character device (10, 200) when it is missing, which needs
// CAP_MKNOD but not a privileged container. An existing file is left alone.
func ensureTUNDevice(path string) error {
	_, err := os.Stat(path)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	switch err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(10, 200))); {
	case errors.Is(err, unix.EEXIST):
		return nil
	case err != nil:
		return fmt.Errorf("create %s (needs CAP_MKNOD): %w", path, err)
	}
	// The umask may have narrowed the mode; TUNSETIFF still needs CAP_NET_ADMIN.
	if err := os.Chmod(path, 0o666); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return nil
}

// apply sets the MTU and the address, brings the link up and adds the routes. Each step
// accepts "already so"; a route to the same destination through another link is an error, not
// a takeover. After a failure, remove undoes what was done.
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
	if err := k.h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %v to %s: %w", p.Address, p.Name, err)
	}
	k.addr = addr
	if err := k.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", p.Name, err)
	}
	for _, dst := range p.Routes {
		r := netlink.Route{LinkIndex: k.index, Dst: ipNet(dst), Scope: netlink.SCOPE_LINK}
		err := k.h.RouteAdd(&r)
		if errors.Is(err, unix.EEXIST) {
			err = k.routeIsOurs(dst)
		}
		if err != nil {
			return fmt.Errorf("add route %v dev %s: %w", dst, p.Name, err)
		}
		k.routes = append(k.routes, r)
	}
	return nil
}

// routeIsOurs accepts an existing route to dst only when it goes through our link.
func (k *kernel) routeIsOurs(dst netip.Prefix) error {
	rs, err := k.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: ipNet(dst)}, netlink.RT_FILTER_DST)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range rs {
		if r.LinkIndex != k.index {
			return fmt.Errorf("a route to %v already exists via %s", dst, k.linkName(r.LinkIndex))
		}
	}
	return nil
}

func (k *kernel) linkName(index int) string {
	if l, err := k.h.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("link index %d", index)
}

// remove deletes the routes and the address apply added; "already gone" is fine.
func (k *kernel) remove() error {
	var errs []error
	for i := len(k.routes) - 1; i >= 0; i-- {
		if err := k.h.RouteDel(&k.routes[i]); err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete route %v: %w", k.routes[i].Dst, err))
		}
	}
	k.routes = nil
	if k.addr != nil {
		link, err := k.h.LinkByIndex(k.index)
		if err == nil {
			err = k.h.AddrDel(link, k.addr)
		}
		if err != nil && !isGone(err) {
			errs = append(errs, fmt.Errorf("delete address %v: %w", k.addr.IPNet, err))
		}
		k.addr = nil
	}
	return errors.Join(errs...)
}

// isGone reports the errors netlink returns for a route, address or link that is not there.
func isGone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENODEV)
}

// linkUp reports whether the WireGuard link exists and is administratively up.
func (k *kernel) linkUp() error {
	link, err := k.h.LinkByIndex(k.index)
	if err != nil {
		return fmt.Errorf("find wireguard link: %w", err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("link %s is down", link.Attrs().Name)
	}
	return nil
}

// defaultInterface returns the interface of the IPv4 default route in the main table; with
// several, the one with the lowest metric, and of a multipath route its first hop.
func (k *kernel) defaultInterface() (string, error) {
	rs, err := k.h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return "", fmt.Errorf("list routes: %w", err)
	}
	best, bestPrio := 0, -1
	for _, r := range rs {
		if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
			continue
		}
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		index := r.LinkIndex
		if index == 0 && len(r.MultiPath) > 0 {
			index = r.MultiPath[0].LinkIndex
		}
		if index != 0 && (bestPrio < 0 || r.Priority < bestPrio) {
			best, bestPrio = index, r.Priority
		}
	}
	if best == 0 {
		return "", errors.New("no IPv4 default route")
	}
	l, err := k.h.LinkByIndex(best)
	if err != nil {
		return "", fmt.Errorf("find default route link: %w", err)
	}
	return l.Attrs().Name, nil
}

// linkAddrs returns the IPv4 addresses of the named link; a missing link is an error.
func (k *kernel) linkAddrs(name string) ([]netip.Addr, error) {
	link, err := k.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find link %s: %w", name, err)
	}
	as, err := k.h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	var out []netip.Addr
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

func (k *kernel) close() { k.h.Close() }

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
