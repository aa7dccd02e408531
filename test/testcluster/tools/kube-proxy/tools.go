//go:build tools

// Package kubeproxy pins kube-proxy, which the local cluster's real node runs for Services (node.sh
// with IKM_NODE_KUBE_PROXY=1), kept apart from the kubelet's module so adding it rebuilds nothing else.
package kubeproxy

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
