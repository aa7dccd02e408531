package wgdevice

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
)

// CheckKernelMode says what this process lacks for kernel mode (a TUN device): CAP_NET_ADMIN,
// and TUNPath or CAP_MKNOD to create it. It returns nil when nothing is missing, an error
// wrapping ErrKernelModeUnavailable that names what is missing otherwise.
func CheckKernelMode() error {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	defer f.Close()
	capEff := ""
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			capEff = v
			break
		}
	}
	if capEff == "" {
		return errors.New("read capabilities: no CapEff in /proc/self/status")
	}
	_, err = os.Stat(TUNPath)
	return checkKernelMode(capEff, err == nil)
}
