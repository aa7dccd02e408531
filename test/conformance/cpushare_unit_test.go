package conformance

import (
	"math"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestCPUSince: what cpuSince says this test process used is what the kernel's own account of it
// (getrusage) says, over a window with a busy loop in it.
func TestCPUSince(t *testing.T) {
	used := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before, usedBefore := readCPU(), used()
	me, ok := before.procs[os.Getpid()]
	if !ok {
		t.Fatalf("read %d processes from /proc, not this one", len(before.procs))
	}
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
	}
	window, busy := time.Since(before.at), used()-usedBefore
	shares, total := cpuSince(before)
	for _, s := range shares {
		if s.comm != me.comm {
			continue
		}
		// Other processes of the same name would only add; ticks are 10 ms, read at both ends of a 0.5 s window.
		want := busy.Seconds() / window.Seconds()
		if s.cores < want-0.08 || s.cores > want+0.08 && s.procs == 1 {
			t.Errorf("%s: %.3f cores, the kernel's account %.3f (%v of CPU in %v)", me.comm, s.cores, want, busy, window)
		}
		if total < s.cores || math.IsNaN(total) {
			t.Errorf("total %.2f below one command's %.2f", total, s.cores)
		}
		t.Log(describeCPU(shares, total, 5))
		return
	}
	t.Errorf("no share for this test's command %q among %d", me.comm, len(shares))
}
