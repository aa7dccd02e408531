//go:build !linux

package shadowagent

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// kernel is Linux-only: elsewhere the agent builds, vets and fails at Run.
type kernel struct{ *wgdevice.Link }

func openKernel() (*kernel, error) {
	return nil, fmt.Errorf("configure network: %w", errors.ErrUnsupported)
}

func (*kernel) defaultInterface() (string, error)        { return "", errors.ErrUnsupported }
func (*kernel) linkAddrs(string) ([]netip.Addr, error)   { return nil, errors.ErrUnsupported }
func (*kernel) interfaceWith(netip.Addr) (string, error) { return "", errors.ErrUnsupported }
func (*kernel) close()                                   {}
