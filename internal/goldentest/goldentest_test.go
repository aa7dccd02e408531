package goldentest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "testdata", "x.golden")
	r := &recorder{TB: t}
	Check(r, path, []byte("a"))
	if !strings.Contains(r.msg, "-update") {
		t.Errorf("a missing golden file: %q, want a hint at -update", r.msg)
	}
	*update = true
	Check(t, path, []byte("a\n"))
	*update = false
	if b, err := os.ReadFile(path); err != nil || string(b) != "a\n" {
		t.Fatalf("-update wrote %q, %v", b, err)
	}
	Check(t, path, []byte("a\n"))
	r = &recorder{TB: t}
	Check(r, path, []byte("b\n"))
	if !strings.Contains(r.msg, "(-want +got)") || !strings.Contains(r.msg, `"a\n"`) || !strings.Contains(r.msg, `"b\n"`) {
		t.Errorf("a difference: %q, want the golden a as -, the output b as +", r.msg)
	}
}

// recorder keeps the first failure instead of failing the test.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
}
func (r *recorder) Errorf(format string, args ...any) {
	if r.msg == "" {
		r.msg = fmt.Sprintf(format, args...)
	}
}
