#!/usr/bin/env bash
# cluster.sh up|down|status: the project's real Kubernetes control plane on this machine.
#
#   up      build (or reuse) the binaries, start etcd, kube-apiserver, kube-controller-manager,
#           kube-scheduler and kwok with kwokctl's binary runtime, register fake GPU nodes, wait until
#           they are Ready and the default ServiceAccount exists, and write the kubeconfig.
#   down    stop every process of the cluster and remove its state; fails if one survives.
#   status  print whether the cluster answers.
#
# Environment:
#   IKM_CLUSTER_DIR  state directory (default <repo>/.cache/cluster); the kubeconfig is
#                    $IKM_CLUSTER_DIR/kubeconfig
#   IKM_CLUSTER_NAME kwokctl cluster name (default ikm-<hash of the state directory>)
#   IKM_NODES        number of fake nodes (default 2; 0 with IKM_REAL_NODE=1: every pod runs for real)
#   IKM_KWOK_POD_CIDR  the range kwok gives its fake nodes' pods (a .0/N network; default kwok's own)
#   IKM_SERVICE_CIDR   the apiserver's Service range (default kwokctl's own)
#   IKM_KWOKCTL_CONFIG  a kwokctl configuration file (KwokctlConfiguration, passed with --config)
#                    that replaces the default one below whole: keep its kwok-controller annotation
#                    selector (the fake nodes carry kwok.x-k8s.io/node=fake) and the apiserver's
#                    kubelet address types; default: the configuration control_plane_config writes
#   IKM_CACHE        binary cache shared by every clone (default ~/.cache/interlink-k8s-mesh)
#   IKM_REAL_NODE    1: also start one real node (test/testcluster/node.sh: kubelet, containerd, runc, CNI;
#                    root only). Default 0. The control plane is always ready for one: kwok manages only
#                    the nodes annotated kwok.x-k8s.io/node=fake, kube-apiserver reaches kubelets by
#                    InternalIP first (then Hostname, kwok's localhost) with the admin certificate.
#                    The apiserver's certificate names the node's address (its pod range's first).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${IKM_CLUSTER_DIR:-$repo/.cache/cluster}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
name=${IKM_CLUSTER_NAME:-ikm-$(printf '%s' "$dir" | sha256sum | cut -c1-8)}
nodes=${IKM_NODES:-2}
real_node=${IKM_REAL_NODE:-0}
pod_cidr=${IKM_KWOK_POD_CIDR:-}
service_cidr=${IKM_SERVICE_CIDR:-}
export KWOK_WORKDIR="$dir/kwok"
kubeconfig="$dir/kubeconfig"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

bins() {
	bin=$("$here/build-binaries.sh")
	export PATH="$bin:$PATH"
}

# survivors lists processes still running from this cluster's state directory.
survivors() { pgrep -f -- "$KWOK_WORKDIR/clusters/$name" || true; }

# control_plane_config writes the kwokctl configuration that lets real nodes join.
control_plane_config() {
	local pki="$KWOK_WORKDIR/clusters/$name/pki" apiserver_extra="" kwok_extra="" options=""
	[ -z "$service_cidr" ] || apiserver_extra=$(printf '  - key: service-cluster-ip-range\n    value: %s\n' "$service_cidr")$'\n'
	# Pods that use in-cluster credentials (InterLink's chart) dial the kubernetes Service, the
	# range's first address: the apiserver's certificate names it, as a real cluster's does. With a
	# real node it also names the node's address, where the node's pods reach the apiserver without
	# kube-proxy (KUBERNETES_SERVICE_HOST set to it), as kubeadm's names its advertise address.
	local sans=()
	[ -z "$service_cidr" ] || sans+=("${service_cidr%.0/*}.1")
	[ -z "${IKM_NODE_POD_CIDR:-}" ] || [ "$real_node" != 1 ] || sans+=("${IKM_NODE_POD_CIDR%.0/24}.1")
	[ ${#sans[@]} = 0 ] || options=$(printf 'options:\n  kubeApiserverCertSANs:\n' && printf '  - %s\n' "${sans[@]}")
	[ -z "$pod_cidr" ] || kwok_extra=$(printf '  - key: cidr\n    value: %s.1/%s' "${pod_cidr%.0/*}" "${pod_cidr#*/}")
	cat >"$dir/kwokctl.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
$options
componentsPatches:
- name: kube-apiserver
  extraArgs:
  # A real node by its InternalIP (the kubelet's --node-ip), never by resolving its name through
  # the machine's resolver; kwok's nodes have only the Hostname localhost.
  - key: kubelet-preferred-address-types
    value: InternalIP,Hostname
  - key: kubelet-client-certificate
    value: $pki/admin.crt
  - key: kubelet-client-key
    value: $pki/admin.key
$apiserver_extra- name: kwok-controller
  extraArgs:
  - key: manage-all-nodes
    value: "false"
    override: true
  - key: manage-nodes-with-annotation-selector
    value: kwok.x-k8s.io/node=fake
$kwok_extra
EOF
	echo "$dir/kwokctl.yaml"
}

down() {
	# A node that fails to go cleanly fails down, after the control plane has stopped all the same.
	local node_failed=0
	if [ -d "$dir/node" ]; then
		"$here/node.sh" down || node_failed=1
	fi
	local kwokctl="${IKM_CACHE:-$HOME/.cache/interlink-k8s-mesh}/bin/current/kwokctl"
	if [ -d "$KWOK_WORKDIR/clusters/$name" ] && [ -x "$kwokctl" ]; then
		log "stopping cluster $name"
		# kwokctl edits the kubeconfig it is given; a scratch file keeps ~/.kube/config untouched.
		"$kwokctl" delete cluster --name "$name" --kubeconfig "$KWOK_WORKDIR/scratch-kubeconfig" >"$dir/delete.log" 2>&1 ||
			log "kwokctl delete failed (see $dir/delete.log); killing what is left"
	fi
	local pids
	pids=$(survivors)
	if [ -n "$pids" ]; then
		# shellcheck disable=SC2086
		kill $pids 2>/dev/null || true
		sleep 1
		pids=$(survivors)
		# shellcheck disable=SC2086
		[ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
	fi
	rm -rf "$KWOK_WORKDIR/clusters/$name" "$kubeconfig"
	if [ -n "$(survivors)" ]; then
		log "processes survived: $(survivors)"
		return 1
	fi
	log "cluster $name is down, no process left"
	return $node_failed
}

answers() {
	[ -f "$kubeconfig" ] && kubectl --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1
}

up() {
	bins
	if answers; then
		log "cluster $name already answers; kubeconfig: $kubeconfig"
		[ "$real_node" != 1 ] || "$here/node.sh" up
		return
	fi
	down >/dev/null 2>&1 || true
	local start=$SECONDS
	# The real node's pod range, chosen before the control plane starts: its certificate names the
	# node's address.
	if [ "$real_node" = 1 ] && [ -z "${IKM_NODE_POD_CIDR:-}" ]; then
		IKM_NODE_POD_CIDR=$("$here/node.sh" cidr)
		export IKM_NODE_POD_CIDR
	fi
	# IKM_KWOKCTL_CONFIG replaces the default configuration whole (its author keeps what the
	# default does that the cluster needs).
	local kwokctl_config=${IKM_KWOKCTL_CONFIG:-}
	[ -n "$kwokctl_config" ] || kwokctl_config=$(control_plane_config)
	log "starting control plane $name (about 10 s)"
	kwokctl create cluster --name "$name" --runtime binary \
		--etcd-binary "$bin/etcd" \
		--kube-apiserver-binary "$bin/kube-apiserver" \
		--kube-controller-manager-binary "$bin/kube-controller-manager" \
		--kube-scheduler-binary "$bin/kube-scheduler" \
		--kwok-controller-binary "$bin/kwok" \
		--enable-crds=Logs,ClusterLogs \
		--config "$kwokctl_config" \
		--kubeconfig "" --wait 2m --quiet-pull >"$dir/create.log" 2>&1 || {
		log "kwokctl create cluster failed:"
		cat "$dir/create.log" >&2
		down || true
		return 1
	}
	cp "$KWOK_WORKDIR/clusters/$name/kubeconfig.yaml" "$kubeconfig.tmp"
	mv "$kubeconfig.tmp" "$kubeconfig"
	if [ "$nodes" -gt 0 ]; then
		log "registering $nodes fake nodes with nvidia.com/gpu capacity"
		local i
		for i in $(seq 0 $((nodes - 1))); do
			sed "s/NODE_NAME/kwok-node-$i/" "$here/node.yaml"
			echo ---
		done | kubectl --kubeconfig "$kubeconfig" apply -f - >/dev/null
		log "waiting for nodes to be Ready and for the default ServiceAccount"
		kubectl --kubeconfig "$kubeconfig" wait --for=condition=Ready node --all --timeout=120s >/dev/null
	fi
	local n=0
	until kubectl --kubeconfig "$kubeconfig" -n default get serviceaccount default >/dev/null 2>&1; do
		n=$((n + 1))
		[ $n -lt 120 ] || { log "default ServiceAccount never appeared"; return 1; }
		sleep 0.5
	done
	if [ "$real_node" = 1 ]; then
		"$here/node.sh" up || {
			down || true
			return 1
		}
	fi
	log "cluster $name ready in $((SECONDS - start)) s; kubeconfig: $kubeconfig"
}

case ${1:-} in
up) up ;;
down) down ;;
status)
	bins
	if answers; then echo "cluster $name answers; kubeconfig: $kubeconfig"; else echo "cluster $name is not running"; exit 1; fi
	;;
*)
	echo "usage: $0 up|down|status" >&2
	exit 2
	;;
esac
