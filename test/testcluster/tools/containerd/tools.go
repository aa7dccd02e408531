//go:build tools

// Package containerd pins the container runtime of the test cluster's real node: containerd, its
// runc shim and ctr (to import the project's images without a registry).
package containerd

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
