//go:build tools

// Package helm pins Helm, which the chart tests lint, render and install with.
package helm

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
