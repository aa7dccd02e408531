//go:build !linux

package netfilter

import (
	"errors"
	"fmt"
)

// defaultIPTables fails: netfilter exists only on Linux. Config.IPTables still works, for tests.
func defaultIPTables() (IPTables, error) {
	return nil, fmt.Errorf("find iptables: %w", errors.ErrUnsupported)
}
