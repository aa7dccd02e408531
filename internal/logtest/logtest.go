// Package logtest collects log and process output in tests: a buffer safe for concurrent writers,
// read back for assertions, echoed to the test log under -v.
package logtest

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Buffer is an io.Writer safe for concurrent use. The zero value collects without echoing.
type Buffer struct {
	t  testing.TB // echo target under -v; nil: no echo
	mu sync.Mutex
	b  bytes.Buffer
}

// NewBuffer returns a Buffer that also echoes what it gets to t's log when the tests run with -v.
func NewBuffer(t testing.TB) *Buffer { return &Buffer{t: t} }

// New returns a Buffer echoing to t and a debug-level text logger writing to it.
func New(t testing.TB) (*Buffer, *slog.Logger) {
	b := NewBuffer(t)
	return b, slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.t != nil && testing.Verbose() {
		b.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Count returns how many lines contain every one of subs.
func (b *Buffer) Count(subs ...string) int {
	n := 0
	for line := range strings.Lines(b.String()) {
		all := true
		for _, s := range subs {
			if !strings.Contains(line, s) {
				all = false
				break
			}
		}
		if all {
			n++
		}
	}
	return n
}
