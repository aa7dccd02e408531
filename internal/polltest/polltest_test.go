package polltest

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	took := Until(t, "the third ask", time.Second, func() error {
		if n.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n.Load() != 3 || took < 2*Interval {
		t.Errorf("asked %d times in %v, want 3 asks at least %v apart", n.Load(), took, Interval)
	}
	var asks int
	if took := True(t, "at once", time.Second, func() bool { asks++; return true }); asks != 1 || took > time.Second {
		t.Errorf("a true condition: %d asks, %v", asks, took)
	}
}

// A condition that never holds fails the test (seen through a recorder) with what and the last
// error, after the timeout and not long after.
func TestUntilTimesOut(t *testing.T) {
	r := &recorder{TB: t}
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		defer func() { done <- time.Since(start) }()
		Until(r, "the impossible", 50*time.Millisecond, func() error { return errors.New("still no") })
	}()
	took := <-done
	if r.msg != "the impossible: not within 50ms: still no" || took < 50*time.Millisecond || took > 5*time.Second {
		t.Errorf("failed with %q after %v", r.msg, took)
	}
}

// recorder keeps the message of Fatalf and ends the goroutine, as testing.T does.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
