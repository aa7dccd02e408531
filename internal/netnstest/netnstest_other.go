//go:build !linux

package netnstest

import (
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
