package wgdevice

import "runtime/debug"

// DefaultMemoryLimit is the Go memory limit an agent runs with unless GOMEMLIMIT sets one. The
// tunnel bounds the datagrams wireguard-go holds (tunnel.DefaultInFlight, 64 KiB each), but
// with the Go default (GOGC=100, no limit) the heap grows to twice its peak before collecting:
// the limit makes the collector return the buffers of a burst instead, for the price of more
// frequent collections under load (README has the figures).
const DefaultMemoryLimit = 40 << 20

// SetMemoryLimit sets DefaultMemoryLimit unless GOMEMLIMIT (read with getenv) is set, in which
// case the runtime has already applied it. It returns the limit in force.
func SetMemoryLimit(getenv func(string) string) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	debug.SetMemoryLimit(DefaultMemoryLimit)
	return DefaultMemoryLimit
}
