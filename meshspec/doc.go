// Package meshspec is the data contract between the plugin and the mesh-agent: the plugin writes
// one Spec as the file mesh.json of a pod-scoped Kubernetes Secret, the mesh-agent sidecar reads it
// back and joins the pod's WireGuard mesh with it.
//
// Data flow: Marshal (defaults, Validate, indented JSON) on the writing side; Parse (strict JSON,
// version check, defaults, Validate) on the reading side. Both sides go through one private wire
// form whose leaves are plain strings, so that every error names the field it is about
// ("tunnel.url", "routes[2]") and never echoes a secret.
//
// Caveats:
//   - The keys and the tunnel path prefix are secrets. Their types (Key, Secret) print and log as
//     "[redacted]" whatever the verb or handler, and Spec and Tunnel have LogValue methods, so a
//     whole Spec may be logged; only JSON marshalling reveals them, on purpose.
//   - Field names match case-insensitively, as encoding/json does; duplicate keys keep the last.
//   - The package is standard library only: the plugin and the agent share it, nothing else.
package meshspec
