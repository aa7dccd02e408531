//go:build !linux

package wgdevice

import (
	"errors"
	"fmt"
)

// Link is Linux-only: elsewhere the agents build, vet and fail at Run.
type Link struct{}

// OpenLink fails with errors.ErrUnsupported outside Linux.
func OpenLink() (*Link, error) {
	return nil, fmt.Errorf("configure network: %w", errors.ErrUnsupported)
}

func (*Link) Apply(LinkPlan) error { return errors.ErrUnsupported }
func (*Link) Remove() error        { return nil }
func (*Link) CheckUp() error       { return errors.ErrUnsupported }
func (*Link) Close()               {}
