//go:build tools

// Package traefik pins Traefik v3, the ingress controller the real-pod mesh tests and the demo run
// on the local cluster: its Kubernetes Ingress provider routes the tunnel from the shadow Ingress
// the VK creates. v3.6.12 is the newest release the module proxy builds: v3.7's dynamic/ext module
// and several of its ACME DNS providers' modules are not served.
package traefik

import (
	_ "github.com/traefik/traefik/v3/cmd/traefik"
)
