package shadowagent

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routes answers the queries the shadow makes of the pod's own network to find its main
// interface. Its netlink socket is opened by openRoutes in the network namespace of the calling
// thread and keeps that namespace whichever thread uses it later.
type routes struct {
	h *netlink.Handle
}

func openRoutes() (*routes, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &routes{h: h}, nil
}

func (r *routes) close() { r.h.Close() }

// defaultInterface returns the interface of the IPv4 default route in the main table; with
// several, the one with the lowest metric, and of a multipath route its first hop.
func (k *routes) defaultInterface() (string, error) {
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

// interfaceWith returns the name of the link holding addr, "" when none does.
func (k *routes) interfaceWith(addr netip.Addr) (string, error) {
	links, err := k.h.LinkList()
	if err != nil {
		return "", fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		as, err := k.h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return "", fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range as {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
				return l.Attrs().Name, nil
			}
		}
	}
	return "", nil
}

// linkAddrs returns the IPv4 addresses of the named link; a missing link is an error.
func (k *routes) linkAddrs(name string) ([]netip.Addr, error) {
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
