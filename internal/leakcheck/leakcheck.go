// Package leakcheck fails a test binary whose goroutines outlive its tests, from TestMain:
//
//	func TestMain(m *testing.M) {
//		leakcheck.Main(m, leakcheck.Config{Markers: []string{"interlink-k8s-mesh/tunnel."}})
//	}
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// wait bounds how long Main waits for goroutines to exit after the tests passed: components
// stop asynchronously (a closed conn's reader, a server's handlers).
const wait = 5 * time.Second

// Config says which goroutines count as leaks.
type Config struct {
	// Markers name the code whose goroutines must be gone after the tests: a goroutine whose
	// stack contains any of them (a package path with its dot, a function) is a leak.
	Markers []string
	// IgnoreTestFiles exempts goroutines with a frame in a _test.go file, for packages whose
	// markers also match their own test helpers. Default false: every match is a leak.
	IgnoreTestFiles bool
	// AfterRun, if set, runs once the tests are done, before the leak check: it removes what the
	// tests shared (a binary built once for all of them).
	AfterRun func()
}

// Main runs the tests and exits with their code; when they passed but goroutines c names are
// still there after up to 5 s, it prints their stacks to stderr and exits 1.
func Main(m *testing.M, c Config) {
	code := m.Run()
	if c.AfterRun != nil {
		c.AfterRun()
	}
	if code == 0 {
		if leaks := c.wait(wait); leaks != "" {
			fmt.Fprintf(os.Stderr, "goroutine leak:\n%s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// wait polls until no goroutine leaks or d passed, and returns the stacks of the leaks left.
func (c Config) wait(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		leaks := c.leaked()
		if leaks == "" || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leaked returns the stacks, blank-line separated, of the goroutines c counts as leaks.
func (c Config) leaked() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "leakcheck.Config.leaked") || strings.Contains(g, "TestMain") {
			continue // the goroutine asking
		}
		if c.IgnoreTestFiles && strings.Contains(g, "_test.go") {
			continue
		}
		for _, m := range c.Markers {
			if strings.Contains(g, m) {
				out = append(out, g)
				break
			}
		}
	}
	return strings.Join(out, "\n\n")
}
