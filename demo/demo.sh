#!/usr/bin/env bash
# demo.sh: the product on an embedded default. Starts the project's real control plane, shows its
# nodes, runs a pod on it and shows it Running, then tears everything down.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
cache=${IKM_CACHE:-$HOME/.cache/interlink-k8s-mesh}
kubeconfig=$PWD/.cache/cluster/kubeconfig

step "1/4 starting the control plane (first run builds it from source: about 15 min on 2 cores)"
testcluster/cluster.sh up
trap 'step "tearing down"; testcluster/cluster.sh down' EXIT
k() { "$cache/bin/current/kubectl" --kubeconfig "$kubeconfig" "$@"; }

step "2/4 nodes (kwok fakes the kubelets; capacity includes nvidia.com/gpu)"
k get nodes -o custom-columns='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,CPU:.status.capacity.cpu,GPU:.status.capacity.nvidia\.com/gpu'

step "3/4 a pod is scheduled and runs"
k create namespace demo >/dev/null
k -n demo run hello --image=nginx --restart=Never >/dev/null
k -n demo wait --for=jsonpath='{.status.phase}'=Running pod/hello --timeout=60s >/dev/null
k -n demo get pod hello -o wide

step "4/4 the pod is deleted"
k -n demo delete pod hello --wait=true
k delete namespace demo --wait=true >/dev/null
echo "namespace demo deleted"
