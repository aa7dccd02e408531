// Package polltest waits in tests for a condition that another goroutine or process makes true:
// one helper for every package's tests, bounded in time, failing with what was awaited.
package polltest

import (
	"testing"
	"time"
)

// Interval is how often a condition is asked.
const Interval = 5 * time.Millisecond

// Until asks cond every Interval until it returns nil, for at most timeout, and returns how long
// that took. Past the timeout it fails t with what and cond's last error.
func Until(t testing.TB, what string, timeout time.Duration, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(Interval)
	}
}

// True is Until for a condition without an error to tell.
func True(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(Interval)
	}
	return time.Since(start)
}
