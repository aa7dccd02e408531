//go:build tools

// Package kubelet pins the node commands the test cluster's real node builds: the kubelet, kept apart
// from the control plane's module so adding it does not rebuild the control plane's cache entry.
package kubelet

import (
	_ "k8s.io/kubernetes/cmd/kubelet"
)
