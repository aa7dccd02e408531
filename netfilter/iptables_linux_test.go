package netfilter

import (
	"os"
	"strings"
	"testing"
)

// TestDefaultIPTablesWithoutPath checks that iptables is found in the sbin directories when
// PATH lacks them, as in many container images, with its iptables-save beside it.
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
	e, ok := ipt.(*execIPTables)
	if !ok {
		t.Fatalf("defaultIPTables() = %T, want the iptables with its iptables-save", ipt)
	}
	if v1, _, _ := e.GetIptablesVersion(); v1 < 1 {
		t.Errorf("iptables version %d.x, want a probed version", v1)
	}
	out, err := e.Save()
	if err != nil || !strings.Contains(out, "*filter") {
		t.Errorf("Save() = %q, %v; want the filter table", out, err)
	}
}
