package buildtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinary builds a real binary once: a second call returns the same file without building,
// the binary runs, and Cleanup removes it.
func TestBinary(t *testing.T) {
	src := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(src, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module hello\n\ngo 1.26\n")
	write("main.go", "package main\n\nfunc main() { println(\"hello from buildtest\") }\n")
	wd, _ := os.Getwd()
	t.Chdir(src)
	bin := Binary(t, ".")
	info, err := os.Stat(bin)
	if err != nil || filepath.Base(bin) != filepath.Base(src) {
		t.Fatalf("binary %s: %v", bin, err)
	}
	if again := Binary(t, "."); again != bin {
		t.Errorf("second call %s, want the first build %s", again, bin)
	}
	if after, _ := os.Stat(bin); !after.ModTime().Equal(info.ModTime()) {
		t.Error("the second call built again")
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "hello from buildtest") {
		t.Errorf("running it: %q, %v", out, err)
	}
	t.Chdir(wd)
	Cleanup()
	if _, err := os.Stat(bin); !os.IsNotExist(err) {
		t.Errorf("Cleanup left %s: %v", bin, err)
	}
}
