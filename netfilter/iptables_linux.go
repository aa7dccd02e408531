package netfilter

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

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
	return newExecIPTables(path)
}

// execIPTables is go-iptables bound to one iptables binary, and a Saver through the iptables-save
// of the same flavour: the binary's name and "-save" (iptables-nft-save for iptables-nft), as
// Debian's packages and update-alternatives name them.
type execIPTables struct {
	*iptables.IPTables
	savePath string
}

// newExecIPTables binds go-iptables to the binary at path; without its iptables-save beside it,
// the result is no Saver and Shadow lists chain by chain.
func newExecIPTables(path string) (IPTables, error) {
	ipt, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Path(path), iptables.Timeout(lockWaitSeconds))
	if err != nil {
		return nil, fmt.Errorf("probe iptables %s: %w", path, err)
	}
	save := path + "-save"
	if st, err := os.Stat(save); err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return ipt, nil
	}
	return &execIPTables{IPTables: ipt, savePath: save}, nil
}

func (e *execIPTables) Save() (string, error) {
	var stderr strings.Builder
	cmd := exec.Command(e.savePath)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", e.savePath, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
