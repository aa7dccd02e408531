package netfilter

import (
	"fmt"
	"os"
	"os/exec"

	"github.com/coreos/go-iptables/iptables"
)

var _ IPTables = (*iptables.IPTables)(nil)

// lockWaitSeconds bounds the wait for the xtables lock (legacy back end only), so that a stuck
// holder cannot stall Run forever.
const lockWaitSeconds = 5

// sbinIPTables are tried when iptables is not on PATH: container images often run with a PATH
// that lacks the sbin directories.
var sbinIPTables = []string{"/usr/sbin/iptables", "/sbin/iptables"}

// defaultIPTables finds the IPv4 iptables binary and returns go-iptables bound to it.
func defaultIPTables() (IPTables, error) {
	path, err := exec.LookPath("iptables")
	if err != nil {
		for _, p := range sbinIPTables {
			if st, serr := os.Stat(p); serr == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				path, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("find iptables: %w", err)
	}
	ipt, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Path(path), iptables.Timeout(lockWaitSeconds))
	if err != nil {
		return nil, fmt.Errorf("probe iptables %s: %w", path, err)
	}
	return ipt, nil
}
