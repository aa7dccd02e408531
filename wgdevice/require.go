package wgdevice

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrKernelModeUnavailable is what CheckKernelMode's error wraps: the process lacks what a
// TUN device needs.
var ErrKernelModeUnavailable = errors.New("kernel mode unavailable")

// Capability bits, as in linux/capability.h.
const (
	capNetAdmin = 12
	capMknod    = 27
)

// checkKernelMode is CheckKernelMode on given facts: the CapEff line of /proc/self/status and
// whether TUNPath exists. Pure, for tests.
func checkKernelMode(capEff string, tunExists bool) error {
	caps, err := strconv.ParseUint(strings.TrimSpace(capEff), 16, 64)
	if err != nil {
		return fmt.Errorf("read effective capabilities %q: %w", capEff, err)
	}
	var missing []string
	if caps&(1<<capNetAdmin) == 0 {
		missing = append(missing, "CAP_NET_ADMIN (a TUN device, its address and routes, iptables)")
	}
	if !tunExists && caps&(1<<capMknod) == 0 {
		missing = append(missing, TUNPath+" (absent, and without CAP_MKNOD it cannot be created)")
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: missing %s; grant it, or run in netstack mode (--mode=netstack), which needs neither",
		ErrKernelModeUnavailable, strings.Join(missing, " and "))
}
