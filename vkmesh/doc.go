// Package vkmesh recovers the WireGuard mesh an offloaded pod must join from the annotations
// InterLink's virtual kubelet (VK) puts on it with network.fullMesh, as a meshspec.Spec.
//
// Data flow: Parse reads up to three sources and merges them, each value checked against the
// others. AnnotMeshSpec is this project's structured mesh.json (partial: what a template cannot
// render may come from another source). AnnotPreExec is the shell script rendered from the VK's
// mesh script template: either a heredoc carrying a mesh.json (this project's template), or the
// VK's default script, which is lexed (shell.go: words, quotes, expansions kept literal,
// heredocs) and read by meaning (script.go: the interface wireguard-go and wg run on, `ip`
// commands, the wstunnel client's flags, resolv.conf lines, the WireGuard config written by a
// heredoc, wgconfig.go). AnnotWGSnippet is the VK's wg-quick snippet, which lacks the tunnel.
//
// Caveats: nothing is executed; variables are resolved only from plain assignments earlier in
// the script; nested scripts (a heredoc written to a file that is then run) are followed a few
// levels deep. Refusals are *InputError naming the mesh.json field (or the annotation) at fault
// and the annotations involved, never a key or the tunnel's path prefix.
//
// It imports only the standard library and meshspec, so any InterLink plugin may use it.
package vkmesh
