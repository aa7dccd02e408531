//go:build tools

// Package kwok pins kwok and kwokctl, which fake the nodes and run the control plane.
package kwok

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
