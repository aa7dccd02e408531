package leakcheck

import (
	"strings"
	"testing"
	"time"
)

// parkedInTest blocks until stop is closed; its name is the marker the test looks for.
func parkedInTest(stop <-chan struct{}) { <-stop }

func TestLeaked(t *testing.T) {
	marker := "leakcheck.parkedInTest"
	strict := Config{Markers: []string{marker}}
	lax := Config{Markers: []string{marker}, IgnoreTestFiles: true}
	if leaks := strict.leaked(); leaks != "" {
		t.Fatalf("leaks before the goroutine started:\n%s", leaks)
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { parkedInTest(stop); close(done) }()
	time.Sleep(10 * time.Millisecond) // let it park
	if leaks := strict.leaked(); !strings.Contains(leaks, marker) {
		t.Errorf("leaked() = %q, want the parked goroutine", leaks)
	}
	if leaks := lax.leaked(); leaks != "" {
		t.Errorf("leaked() ignoring test files = %q, want none: the goroutine runs test code", leaks)
	}
	if leaks := (Config{Markers: []string{"no.such.marker"}}).leaked(); leaks != "" {
		t.Errorf("leaked() with an unmatched marker = %q, want none", leaks)
	}

	go func() { time.Sleep(30 * time.Millisecond); close(stop) }()
	if leaks := strict.wait(5 * time.Second); leaks != "" {
		t.Errorf("wait() = %q, want none once the goroutine exits", leaks)
	}
	<-done
}
