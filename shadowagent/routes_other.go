//go:build !linux

package shadowagent

import (
	"errors"
	"fmt"
	"net/netip"
)

// routes is Linux-only: elsewhere the agent builds, vets and fails at Run.
type routes struct{}

func openRoutes() (*routes, error) {
	return nil, fmt.Errorf("configure network: %w", errors.ErrUnsupported)
}

func (*routes) defaultInterface() (string, error)        { return "", errors.ErrUnsupported }
func (*routes) linkAddrs(string) ([]netip.Addr, error)   { return nil, errors.ErrUnsupported }
func (*routes) interfaceWith(netip.Addr) (string, error) { return "", errors.ErrUnsupported }
func (*routes) close()                                   {}
