//go:build !linux

package shadowagent

import (
	"errors"
	"fmt"
	"net/netip"
)

// kernel is Linux-only: elsewhere the agent builds, vets and fails at Run.
type kernel struct{}

func openKernel() (*kernel, error) {
	return nil, fmt.Errorf("configure network: %w", errors.ErrUnsupported)
}

func (*kernel) apply(linkPlan) error                   { return errors.ErrUnsupported }
func (*kernel) remove() error                          { return nil }
func (*kernel) linkUp() error                          { return errors.ErrUnsupported }
func (*kernel) defaultInterface() (string, error)      { return "", errors.ErrUnsupported }
func (*kernel) linkAddrs(string) ([]netip.Addr, error) { return nil, errors.ErrUnsupported }
func (*kernel) close()                                 {}
