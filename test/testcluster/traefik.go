package testcluster

import _ "embed"

// TraefikManifest is traefik.yaml: what the test clusters' ingress controller needs in the local
// cluster (its IngressClass, and a ServiceAccount bound to exactly what it watches). The demo
// applies the file; the Go tests create these objects from here.
//
//go:embed traefik.yaml
var TraefikManifest []byte
