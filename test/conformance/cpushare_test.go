package conformance

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the times in /proc/<pid>/stat on Linux, whatever the kernel's HZ.
const userHZ = 100

// cpuSnapshot is every process's CPU time at one moment, read from /proc: the suite runs both
// clusters' nodes on this machine, so this is what the nodes, the control planes and the agents
// cost.
type cpuSnapshot struct {
	at    time.Time
	procs map[int]procCPU
}

type procCPU struct {
	comm string
	// self is the process's own user and system time; reaped is that of its children it waited
	// for (runc under containerd-shim, iptables under shadow-agent), in clock ticks.
	self, reaped uint64
}

// readCPU reads /proc/*/stat. A process that exits while it is read is skipped.
func readCPU() cpuSnapshot {
	s := cpuSnapshot{at: time.Now(), procs: map[int]procCPU{}}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range paths {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(path)))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid … utime(14) stime(15) cutime(16) cstime(17): comm may hold spaces
		// and parentheses, so the fields are counted from its last ')'.
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(string(b[end+1:]))
		if len(f) < 15 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		s.procs[pid] = procCPU{comm: string(b[open+1 : end]), self: n(11) + n(12), reaped: n(13) + n(14)}
	}
	return s
}

// cpuShare is the CPU one command's processes used over a window, in cores.
type cpuShare struct {
	comm  string
	cores float64
	procs int
}

// cpuSince is the CPU each command used from before to now, largest first, and the total. A
// process that started and ended within the window counts only through its parent's reaped time.
func cpuSince(before cpuSnapshot) (shares []cpuShare, total float64) {
	now := readCPU()
	secs := now.at.Sub(before.at).Seconds()
	if secs <= 0 {
		return nil, 0
	}
	by := map[string]*cpuShare{}
	for pid, p := range now.procs {
		was := before.procs[pid]
		if was.comm != p.comm { // a new process, or the pid reused
			was = procCPU{}
		}
		ticks := p.self - min(was.self, p.self) + p.reaped - min(was.reaped, p.reaped)
		s := by[p.comm]
		if s == nil {
			s = &cpuShare{comm: p.comm}
			by[p.comm] = s
		}
		s.cores += float64(ticks) / userHZ / secs
		s.procs++
	}
	for _, s := range by {
		shares = append(shares, *s)
		total += s.cores
	}
	slices.SortFunc(shares, func(a, b cpuShare) int {
		switch {
		case a.cores > b.cores:
			return -1
		case a.cores < b.cores:
			return 1
		}
		return strings.Compare(a.comm, b.comm)
	})
	return shares, total
}

// describeCPU prints the largest shares: "containerd-shim 0.62 cores (83 processes), …".
func describeCPU(shares []cpuShare, total float64, top int) string {
	var parts []string
	for _, s := range shares[:min(top, len(shares))] {
		parts = append(parts, fmt.Sprintf("%s %.2f (%d)", s.comm, s.cores, s.procs))
	}
	return fmt.Sprintf("%.2f of %d cores in use; by command, cores (processes): %s", total, runtime.NumCPU(), strings.Join(parts, ", "))
}
