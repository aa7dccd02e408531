// Package manifests holds the deployment files of interlink-k8s-mesh (plain YAML and the virtual
// kubelet's Go templates, see README.md) and the test that proves them: every object passes the
// real apiserver's server-side dry-run, and the mesh script template renders what the plugin's
// parser accepts. It has no Go API.
package manifests
