#!/usr/bin/env bash
# demo.sh: the product on an embedded default. Starts the project's real control plane as the remote
# cluster, runs interlink-k8s-plugin against it on a unix socket, and plays InterLink's part with curl:
# a pod is offloaded (create), watched until Running (status), its logs read (getLogs) and removed
# (delete). Then the mesh, as root, on real pods (test/demo/realmesh.sh): the remote cluster has a real node
# too, a second control plane with a real node plays the local cluster, the script plays the VK
# (shadow pod rendered from the project's template, the mesh annotation rendered from the mesh script
# template), and a local client pod reaches the offloaded pod on its shadow pod's IP. Without root
# (or nginx, openssl) the mesh steps are skipped. Everything is torn down at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

n=0
step() {
	n=$((n + 1))
	printf '\n\033[1m==> %d. %s\033[0m\n' "$n" "$*"
}
skip_step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
cache=${IKM_CACHE:-$HOME/.cache/interlink-k8s-mesh}
kubeconfig=$PWD/.cache/cluster/kubeconfig
sock=$PWD/.cache/demo/plugin.sock
mkdir -p .cache/demo

# As root, install what is missing first (.ci/deps, shared with CI): a fresh machine's demo would
# otherwise skip the mesh for want of nginx or openssl.
[ "$(id -u)" != 0 ] || .ci/deps
# The mesh on real pods needs root (kubelet, containerd, CNI), nginx (the ingress) and openssl (keys);
# IKM_DEMO_REAL_NODES=0 leaves it out.
real=0
if [ "$(id -u)" = 0 ] && command -v nginx >/dev/null && command -v openssl >/dev/null && [ "${IKM_DEMO_REAL_NODES:-1}" != 0 ]; then real=1; fi
plugin_env=()
if [ "$real" = 1 ]; then
	step "make images and make manifests: the real nodes import the images, the shadow template names their tags"
	make -s images | tail -1
	make -s manifests
fi
step "starting the remote cluster (first run builds it from source: about 10-15 min on 2 cores)"
IKM_REAL_NODE=$real test/testcluster/cluster.sh up
plugin_pid=
mesh_pids=()
local_cluster=
cleanup() {
	skip_step "tearing down"
	[ -z "$plugin_pid" ] || kill "$plugin_pid" 2>/dev/null || true
	for p in "${mesh_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	local rc=0
	if [ -n "$local_cluster" ]; then
		IKM_CLUSTER_DIR=$local_cluster IKM_CLUSTER_NAME=ikm-demo-local test/testcluster/cluster.sh down || rc=1
	fi
	test/testcluster/cluster.sh down || rc=1
	[ "$rc" = 0 ] || exit "$rc"
}
trap cleanup EXIT
k() { "$cache/bin/current/kubectl" --kubeconfig "$kubeconfig" "$@"; }
api() { # api METHOD PATH [BODY]: call the plugin as InterLink does
	curl -sS --fail-with-body --unix-socket "$sock" -X "$1" -H 'Content-Type: application/json' \
		-H 'InterLink-Http-Session: demo' "http://plugin$2" ${3:+--data-binary "$3"}
}

step "remote nodes (kwok fakes the kubelets; capacity includes nvidia.com/gpu)"
k get nodes -o custom-columns='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,CPU:.status.capacity.cpu,GPU:.status.capacity.nvidia\.com/gpu'

step "starting interlink-k8s-plugin on unix://$sock"
if [ "$real" = 1 ]; then
	# The remote pods dial the tunnel at the remote node's bridge address, where the demo's Traefik
	# is the local cluster's ingress controller; the sidecar is the image make images built.
	remote_cidr=$(cat .cache/cluster/node/pod-cidr)
	tunnel_address=${remote_cidr%.0/24}.1:80
	image_ref() { tar -xOf "bin/images/$1.tar" index.json | jq -er '.manifests[0].annotations["io.containerd.image.name"]'; }
	plugin_env=(MESH_TUNNEL_ADDRESS="$tunnel_address" MESH_AGENT_IMAGE="$(image_ref mesh-agent)")
fi
env "${plugin_env[@]}" K8S_KUBECONFIG_PATH="$kubeconfig" APP_SOCKET_ADDRESS="unix://$sock" \
	bin/interlink-k8s-plugin >.cache/demo/plugin.log 2>&1 &
plugin_pid=$!
for _ in $(seq 100); do api GET /readyz >/dev/null 2>&1 && break; sleep 0.1; done
api GET /readyz
echo "ping (GET /status with []): $(api GET /status '[]')"

uid=$(cat /proc/sys/kernel/random/uuid)
pod=$(
	cat <<EOF
{"pod": {"metadata": {"name": "hello", "namespace": "demo", "uid": "$uid", "labels": {"app": "hello"}},
  "spec": {"nodeName": "virtual-kubelet",
    "nodeSelector": {"kubernetes.io/hostname": "virtual-kubelet"},
    "tolerations": [{"key": "virtual-node.interlink/no-schedule", "operator": "Exists"}],
    "containers": [{"name": "web", "image": "nginx:1.27",
      "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
      "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "greeting", "key": "text"}}}],
      "volumeMounts": [{"name": "greeting", "mountPath": "/etc/greeting"}]}],
    "volumes": [{"name": "greeting", "configMap": {"name": "greeting"}}]}},
 "container": [{"name": "web", "configMaps": [{"metadata": {"name": "greeting"}, "data": {"text": "hello from the remote cluster"}}]}]}
EOF
)
step "POST /create: InterLink offloads pod demo/hello (uid $uid)"
api POST /create "$pod"
echo
k get pods,configmaps -A -l "interlink.io/source.pod_uid=$uid" -o wide

step "GET /status until the remote pod runs"
for _ in $(seq 60); do
	st=$(api GET /status "[$(jq -c .pod <<<"$pod")]")
	jq -e '.[0].containers[0].state.running' <<<"$st" >/dev/null && break
	sleep 0.5
done
jq -c '.[0] | {name, JID, containers: [.containers[] | {name, state}]}' <<<"$st"

step "GET /getLogs (the remote kubelet's log, through the remote pods/log API)"
remote_ns=$(k get pods -A -l "interlink.io/source.pod_uid=$uid" -o jsonpath='{.items[0].metadata.namespace}')
remote_pod=$(k get pods -A -l "interlink.io/source.pod_uid=$uid" -o jsonpath='{.items[0].metadata.name}')
now=$(date -u +%Y-%m-%dT%H:%M:%S.000000000Z)
printf '%s stdout F nginx: ready\n%s stdout F GET / 200\n' "$now" "$now" >.cache/demo/hello.log
k apply -f - >/dev/null <<EOF
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Logs
metadata: {name: $remote_pod, namespace: $remote_ns}
spec: {logs: [{containers: [web], logsFile: $PWD/.cache/demo/hello.log}]}
EOF
for _ in $(seq 50); do out=$(api GET /getLogs "{\"Namespace\":\"demo\",\"PodName\":\"hello\",\"PodUID\":\"$uid\",\"ContainerName\":\"web\",\"Opts\":{\"Timestamps\":true}}" 2>/dev/null) && [ -n "$out" ] && break; sleep 0.2; done
echo "$out"

step "POST /delete: the remote pod and its scoped ConfigMap go away"
api POST /delete "$(jq -c .pod <<<"$pod")"
echo
for _ in $(seq 60); do [ -z "$(k get pods,configmaps -A -l "interlink.io/source.pod_uid=$uid" -o name)" ] && break; sleep 0.5; done
echo "remote objects left for uid $uid: $(k get pods,configmaps -A -l "interlink.io/source.pod_uid=$uid" -o name | wc -l)"
echo "plugin log: .cache/demo/plugin.log"

if [ "$real" != 1 ]; then
	skip_step "the mesh on real pods needs root (kubelet, containerd, TUN, iptables), nginx and openssl, and not IKM_DEMO_REAL_NODES=0: skipped"
	exit 0
fi
# shellcheck source=test/demo/realmesh.sh
. test/demo/realmesh.sh
