// Package helm holds the project's Helm chart (interlink-k8s-plugin/: the plugin in the remote
// cluster) and the values that install the local-cluster layout with InterLink's own chart
// (interlink-values.yaml). Its tests lint and render both with a Helm built from source
// (test/testcluster's tools), compare the chart's objects with manifests/plugin.yaml, and keep
// golden renderings in testdata/.
package helm
