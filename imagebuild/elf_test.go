package imagebuild

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestCheckELFHostBinary runs checkELF on the host's own /bin/true: alone it lacks its loader and
// libc; with them (and the /lib64 symlink Debian's libc6 has) it passes; for the other
// architecture it is refused.
func TestCheckELFHostBinary(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("uses the host's x86-64 /bin/true and libc")
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Skipf("host file needed: %v", err)
		}
		return b
	}
	tr := NewTree()
	if err := tr.Put("usr/bin/true", Entry{Type: File, Mode: 0o755, Data: read("/bin/true")}); err != nil {
		t.Fatal(err)
	}
	err := checkELF(tr, "amd64")
	if err == nil || !strings.Contains(err.Error(), "interpreter /lib64/ld-linux-x86-64.so.2") || !strings.Contains(err.Error(), "needs libc.so.6") {
		t.Fatalf("checkELF without libc = %v", err)
	}
	for p, e := range map[string]Entry{
		"lib/x86_64-linux-gnu/libc.so.6":            {Type: File, Mode: 0o755, Data: read("/lib/x86_64-linux-gnu/libc.so.6")},
		"lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": {Type: File, Mode: 0o755, Data: read("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")},
		"lib64/ld-linux-x86-64.so.2":                {Type: Symlink, Target: "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"},
	} {
		if err := tr.Put(p, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkELF(tr, "amd64"); err != nil {
		t.Errorf("checkELF with libc: %v", err)
	}
	if err := checkELF(tr, "arm64"); err == nil || !strings.Contains(err.Error(), "built for EM_X86_64") {
		t.Errorf("checkELF for arm64 = %v, want a wrong-architecture error", err)
	}
}
