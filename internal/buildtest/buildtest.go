// Package buildtest builds the project's binaries for tests that run them as processes: each
// package once per test process, static (CGO_ENABLED=0, as the images hold them), into one
// temporary directory that Cleanup removes. Call Cleanup from TestMain after the tests ran (a
// test's own cleanup would remove a binary under the tests that run after it).
package buildtest

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var (
	mu     sync.Mutex
	dir    string                // made at the first build
	builds = map[string]*build{} // by package
)

type build struct {
	once sync.Once
	bin  string
	err  error
}

// Binary returns the path of the binary of pkg, built once per test process: a directory
// relative to the test's package ("../cmd/mesh-agent", ".") or an import path
// ("golang.zx2c4.com/wireguard"). The binary is named after the package's last element (the
// test's own directory's name for "."). A failed build fails t.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	mu.Lock()
	b := builds[pkg]
	if b == nil {
		b = &build{}
		builds[pkg] = b
	}
	mu.Unlock()
	b.once.Do(func() { b.bin, b.err = compile(pkg) })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

func compile(pkg string) (string, error) {
	mu.Lock()
	if dir == "" {
		d, err := os.MkdirTemp("", "ikm-test-bin-")
		if err != nil {
			mu.Unlock()
			return "", fmt.Errorf("build %s: %w", pkg, err)
		}
		dir = d
	}
	out := dir
	mu.Unlock()
	name := path.Base(pkg)
	if pkg == "." {
		wd, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("build %s: %w", pkg, err)
		}
		name = filepath.Base(wd)
	}
	sub, err := os.MkdirTemp(out, name+"-") // two packages may share a last element
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	bin := filepath.Join(sub, name)
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	fmt.Fprintf(os.Stderr, "buildtest: built %s in %v\n", pkg, time.Since(start).Round(time.Millisecond))
	return bin, nil
}

// Cleanup removes every binary built, if any.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
		dir = ""
		builds = map[string]*build{}
	}
}
