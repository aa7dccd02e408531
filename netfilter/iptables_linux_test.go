package netfilter

import (
	"os"
	"testing"

	"github.com/coreos/go-iptables/iptables"
)

// TestDefaultIPTablesWithoutPath checks that iptables is found in the sbin directories when
// PATH lacks them, as in many container images.
func TestDefaultIPTablesWithoutPath(t *testing.T) {
	found := false
	for _, p := range sbinIPTables {
		if _, err := os.Stat(p); err == nil {
			found = true
		}
	}
	if !found {
		t.Skipf("skipping: no iptables in %v", sbinIPTables)
	}
	t.Setenv("PATH", t.TempDir())
	ipt, err := defaultIPTables()
	if err != nil {
		t.Fatal(err)
	}
	if v1, _, _ := ipt.(*iptables.IPTables).GetIptablesVersion(); v1 < 1 {
		t.Errorf("iptables version %d.x, want a probed version", v1)
	}
}
