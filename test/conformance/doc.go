// Package conformance is the suite behind `make conformance`: pods created with the local cluster's
// API go through InterLink's unmodified virtual kubelet (VK) and API server to interlink-k8s-plugin,
// which runs them in the remote cluster.
//
// Data flow: test/conformance/run.sh starts both control planes, the plugin, the API server and the VK,
// then runs TestConformance, which reads the clusters' kubeconfigs from the environment. Each Case
// (cases.go) is data, in the spirit of interlink-hq/vk-test-set: the objects and the pod to create
// and what must hold. Expectations come in two kinds:
//
//   - checks the chain proves on any node (checks.go): the pod reaches the VK, the API server and the
//     plugin; its remote translation (env, volumes, copied ConfigMaps and Secrets, probes, hooks);
//     the local phase and container statuses the VK derives from the plugin's report; the shadow
//     objects the VK makes from manifests/shadow-pod.tmpl; the mesh-agent sidecar and its Secret;
//     kubectl logs through the VK; kubectl delete removing everything remotely.
//   - outcomes only real containers produce (Want.Phase, Want.Logs, Want.ExitCodes, client pods
//     whose traffic crosses the mesh). On kwok nodes nothing executes: they are reported SKIPPED,
//     "needs real nodes (issue 11)", never passed. With IKM_CONFORMANCE_REAL_NODES=1 they are checked.
//
// report.go prints the table and writes the JUnit XML report (one testcase per expectation).
package conformance
