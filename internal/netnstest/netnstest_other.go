//go:build !linux

package netnstest

import (
	"context"
	"errors"
	"testing"
)

type nsHandle struct{}

// New skips t: network namespaces exist only on Linux.
func New(t testing.TB) *NS {
	t.Helper()
	t.Skip("skipping: network namespaces need Linux")
	return nil
}

// Go fails: network namespaces exist only on Linux.
func (n *NS) Go(fn func() error) (wait func() error) {
	return func() error { return errors.ErrUnsupported }
}

// Do fails: network namespaces exist only on Linux.
func (n *NS) Do(fn func() error) error {
	return errors.ErrUnsupported
}

// Run is Linux-only.
type Run struct{}

// Start fails: network namespaces exist only on Linux.
func (n *NS) Start(t testing.TB, run func(ctx context.Context) error) *Run { return &Run{} }

// Stop fails: network namespaces exist only on Linux.
func (*Run) Stop() error { return errors.ErrUnsupported }

// Exited says the run ended at once.
func (*Run) Exited() (bool, error) { return true, errors.ErrUnsupported }
