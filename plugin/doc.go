// Package plugin is the InterLink plugin that offloads pods to a remote Kubernetes cluster.
//
// Data flow of a create: the HTTP handler decodes InterLink's RetrievedPodData; Translate, a pure
// function, computes a Plan (remote namespace, pod, scoped ConfigMaps and Secrets); Create applies
// it with client-go, owning every scoped object by the remote pod and undoing what it made when a
// step fails. Status answers from a watch-backed cache of the remote pods; Delete removes a pod and
// its scoped objects. HTTPStatus is the one place where errors become status codes.
//
// The mesh: Translate recovers a pod's mesh from its annotations (package vkmesh: the VK's
// pre-exec script, read by meaning with a small shell lexer, its WireGuard snippet, and this
// project's structured form AnnotMeshSpec), then injectMesh writes the result as mesh.json into a
// pod-scoped Secret and adds the mesh-agent as a native sidecar whose startup probe holds the other
// containers until the first WireGuard handshake. Status explains a mesh that does not come up
// (ReasonMeshNotReady).
//
// Layers: the package holds three concerns, and its files reference only the layers below their
// own (checked with a type-checked reference count per file pair when the layout changes):
//
//  1. the wire: api.go (InterLink's types, JSON decoding, ValidationError), names.go, metrics.go;
//  2. configuration, pure: config.go (the option types) < config_mesh.go < config_ini.go <
//     config_options.go < config_python.go < config_check.go < config_load.go (LoadConfig) <
//     docs.go;
//  3. translation, pure: translate.go and meshinject.go (pod → remote objects, the sidecar), then
//     statuses.go, meshstatus.go and terminal.go (remote statuses → InterLink's answer);
//  4. the runtime: podguard.go, laststate.go < podcache.go < plugin.go (Plugin, New) < setup.go,
//     capacity.go, namespaces.go, pvc.go, lookup.go < create.go, logs.go, delete.go, status.go
//     < http.go (routes, Serve) and run.go (background work).
//
// Caveats: keys and the tunnel's path prefix are written only into the mesh Secret; the mesh
// annotations, and every interlink.eu/*-client-commands annotation, are dropped from the remote
// pod. A pod whose mesh inputs are missing or contradict each other is refused (422), never given a
// sidecar that cannot work.
package plugin
