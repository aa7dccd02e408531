package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
)

// agentProc is an agent's process, by its /proc directory, named by its command. Looked up once
// for a series of readings: a crash restarts the agent as another process, so each one-off
// reading looks it up again.
type agentProc struct {
	comm, dir string
}

// findAgent finds the process named comm in pod on this machine (its cgroup path names the pod's
// UID, the kubelet's cgroupfs layout).
func findAgent(comm string, pod *corev1.Pod) (agentProc, error) {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	want := "pod" + string(pod.UID)
	for _, p := range procs {
		c, err := os.ReadFile(p + "/comm")
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		if cg, err := os.ReadFile(p + "/cgroup"); err == nil && strings.Contains(string(cg), want) {
			return agentProc{comm: comm, dir: p}, nil
		}
	}
	return agentProc{}, fmt.Errorf("no process %s in pod %s on this machine", comm, pod.UID)
}

// findAgents finds the shadow pod's shadow-agent and the offloaded pod's mesh-agent, in that order.
func (m *meshRun) findAgents(shadow, remote *corev1.Pod) []agentProc {
	m.t.Helper()
	var out []agentProc
	for _, a := range []struct {
		comm string
		pod  *corev1.Pod
	}{{"shadow-agent", shadow}, {"mesh-agent", remote}} {
		p, err := findAgent(a.comm, a.pod)
		if err != nil {
			m.t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// logAgentMemory logs each agent's RSS and its container's memory cgroup use, labelled.
func (m *meshRun) logAgentMemory(label string, agents []agentProc) {
	m.t.Helper()
	for _, a := range agents {
		if rss, cg, err := a.memory(); err != nil {
			m.t.Logf("memory of %s: %v", a.comm, err)
		} else {
			m.t.Logf("FIGURE %s%s: RSS %.1f MiB, its container's memory cgroup %.1f MiB", a.comm, label, rss, cg)
		}
	}
}

// peaks describes each agent's peak RSS (VmHWM), or why it cannot be read.
func peaks(agents []agentProc) string {
	var b []string
	for _, a := range agents {
		mib, err := a.statusMiB("VmHWM")
		if err != nil {
			b = append(b, a.comm+" "+err.Error())
			continue
		}
		b = append(b, fmt.Sprintf("%s %.1f MiB", a.comm, mib))
	}
	return strings.Join(b, ", ")
}

// memory is the process's RSS and its container's memory cgroup usage, MiB.
func (a agentProc) memory() (rss, cgroup float64, err error) {
	cg, err := os.ReadFile(a.dir + "/cgroup")
	if err != nil {
		return 0, 0, err
	}
	if rss, err = a.statusMiB("VmRSS"); err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(cg), "\n") {
		// cgroup v1: "N:memory:/path"; v2: "0::/path".
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 || (f[1] != "memory" && f[1] != "") {
			continue
		}
		for _, file := range []string{"/sys/fs/cgroup/memory" + f[2] + "/memory.usage_in_bytes", "/sys/fs/cgroup" + f[2] + "/memory.current"} {
			if b, err := os.ReadFile(file); err == nil {
				var n float64
				fmt.Sscan(strings.TrimSpace(string(b)), &n)
				return rss, n / (1 << 20), nil
			}
		}
	}
	return rss, 0, fmt.Errorf("no memory cgroup file for %s (%s)", a.comm, a.dir)
}

// statusMiB reads a kB field of the process's status file (VmRSS, VmHWM, ...) in MiB.
func (a agentProc) statusMiB(field string) (float64, error) {
	b, err := os.ReadFile(a.dir + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if kb, ok := strings.CutPrefix(l, field+":"); ok {
			var n float64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(kb), " kB"), &n)
			return n / 1024, nil
		}
	}
	return 0, fmt.Errorf("no %s in %s/status", field, a.dir)
}

// fds counts the process's open file descriptors.
func (a agentProc) fds() (int, error) {
	ents, err := os.ReadDir(a.dir + "/fd")
	return len(ents), err
}

// kill sends SIGKILL, as a crash would: the kubelet restarts the container (mesh-agent is a native
// sidecar, restartPolicy Always).
func (a agentProc) kill() error {
	pid, err := strconv.Atoi(filepath.Base(a.dir))
	if err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// listeningPorts are the TCP ports listening in the agent's network namespace (its pod's), read
// from /proc/<pid>/net/tcp and tcp6: state 0A, the local address's port in hex.
func (a agentProc) listeningPorts() ([]uint16, error) {
	var ports []uint16
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join(a.dir, "net", f))
		if err != nil {
			return nil, err
		}
		for i, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if i == 0 || len(fields) < 4 || fields[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			p, err := strconv.ParseUint(hexPort, 16, 16)
			if !ok || err != nil {
				return nil, fmt.Errorf("%s/net/%s: local address %q", a.dir, f, fields[1])
			}
			if !slices.Contains(ports, uint16(p)) {
				ports = append(ports, uint16(p))
			}
		}
	}
	return ports, nil
}
