//go:build !linux

package wgdevice

import (
	"errors"
	"fmt"
)

// CheckKernelMode fails outside Linux: there is no kernel mode there.
func CheckKernelMode() error {
	return fmt.Errorf("%w: %w", ErrKernelModeUnavailable, errors.ErrUnsupported)
}
