package netfilter

import (
	"fmt"
	"os"
	"strings"
)

// ipForwardPath is net.ipv4.ip_forward. The kernel resolves /proc/sys/net in the network
// namespace of the calling thread, like the iptables calls.
const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeSysctl writes without O_CREATE: a missing sysctl must stay an error.
func writeSysctl(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	_, werr := f.WriteString(value + "\n")
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("write %s: %w", path, werr)
	}
	if cerr != nil {
		return fmt.Errorf("write %s: %w", path, cerr)
	}
	return nil
}
