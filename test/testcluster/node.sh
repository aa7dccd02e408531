#!/usr/bin/env bash
# node.sh up|down|check: one real node (kubelet, its own containerd, runc, CNI bridge) joined to the
# test control plane that cluster.sh started with IKM_REAL_NODE=1. Root only. Several clusters on one
# machine may each have their real node at the same time (conformance runs a local and a remote one).
#
#   up      start containerd and the kubelet with state under $IKM_CLUSTER_DIR/node, import the
#           project's images (bin/images/*.tar from `make images`) and wait until the node is Ready.
#   down    stop both, undo every mount, link, cgroup, iptables chain, host directory and kernel setting
#           the node made, then run check.
#   check   fail, listing them, if any process, mount, link, cgroup or file of the node is left.
#   cidr    print the pod range up would take now (cluster.sh names its address in the apiserver's
#           certificate before the node exists).
#
# Network: the pod range is one /24 of 10.244.0.0/16 that no address or route on the machine uses; it
# lives only on a bridge this script creates (ikm<8 hex of the cluster name>), whose first address is
# also the node's IP (the kubelet refuses loopback node IPs). Pods get no default route and no
# forwarding is switched on: they reach the bridge and the host's address on it, nothing else.
#
# Pods' forwarding: the CNI chain's tuning plugin sets net.ipv4.ip_forward=1 in each pod's network
# namespace, as a pod on a forwarding node inherits it (the shadow pod needs it and a stock kubelet
# refuses the sysctl in a pod spec). The host's own forwarding is never touched.
#
# Two nodes at once: the kubelet and containerd write to host paths whatever their configuration
# says (/var/lib/kubelet/device-plugins is hard-coded, the shims' sockets live in /run/containerd/s,
# the kubelet links logs into /var/log/containers, ...). Each node therefore runs in its own mount
# namespace (a holder process, "$state/mntns", started with unshare --mount --propagation private),
# where each of those paths is a private bind of a directory under its state dir: nothing the node
# writes there reaches the host or another node, and its mounts (the kubelet's rshared root dir,
# overlays, pod volumes, network namespace files) vanish with the namespace when its last process
# exits. What remains shared is machine-wide: the empty host directories the binds need (created
# when missing), the kubelet's iptables chains in the host's tables (KUBE-FIREWALL, ...) and the
# kernel settings it changes at start. Those are recorded by the first node up and restored by the
# last node down, through a registry of live nodes in $registry (one file per node, under a lock).
# Each node keeps its own bridge, /24, cgroup root (/ikm-<hash>) and kubelet address (its node IP).
#
# Environment: as cluster.sh (IKM_CLUSTER_DIR, IKM_CLUSTER_NAME, IKM_CACHE), plus
#   IKM_NODE_POD_CIDR  the pod range (default: the first free 10.244.N.0/24, N from the name's hash)
#   IKM_NODE_TAINT     1 (default): label and taint the node ikm.interlink.dev/real-node=true:NoSchedule
#                      so only pods that ask run there; 0: label only, every pod may land on it
#   IKM_IMAGES_DIR     OCI archives to import (default <repo>/bin/images); none found is an error
#   IKM_NODE_KUBE_PROXY 1: also run kube-proxy (iptables mode, masqueradeAll) so the cluster's Service
#                      IPs work on this node: pods get a route to IKM_SERVICE_CIDR (required then) via
#                      the node IP, and the bridge alone forwards (its own net.ipv4.conf.<bridge>.forwarding;
#                      the host's ip_forward stays as it was). kube-proxy's chains live in the host's
#                      tables, where two kube-proxies would undo each other: one node at a time may run
#                      it (up refuses a second). down runs kube-proxy --cleanup. Default 0.
#   IKM_NODE_DNS       1 (default): run CoreDNS on the node IP, port 53 (UDP and TCP), serving the
#                      cluster's names (cluster.local, from the apiserver as user system:coredns) and
#                      answering NXDOMAIN for every other name: nothing is forwarded, the machine's
#                      resolver is never asked. The node's pods use it (kubelet clusterDNS). 0: no DNS.
#   IKM_NODE_DNS_SITE_ZONES  space-separated DNS zones (for example "mesh.test site.test") in which
#                      every name has an A record with the node's IP (and no AAAA): the records a
#                      site's own DNS would hold, such as an ingress's wildcard or an external name,
#                      standing in for them without ever asking the machine's resolver. Default none.
#   IKM_NODE_MAX_PODS  the kubelet's maxPods (default 110, the kubelet's own); the node's /24 holds 253
#   IKM_NODE_REGISTRY  127.0.0.1:port of the test registry (test/registry): the node pulls images named
#                      127.0.0.1:port/... from it over HTTP; every other registry stays unreachable.
#                      Default none: the node has only the images it imported.
#   IKM_DNS_SERVICE_IP with IKM_NODE_KUBE_PROXY=1: the kube-dns Service's address (in IKM_SERVICE_CIDR);
#                      up makes the selector-less Service kube-system/kube-dns there with an
#                      EndpointSlice naming CoreDNS on the node IP, and pods use the Service's address.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${IKM_CLUSTER_DIR:-$repo/.cache/cluster}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
name=${IKM_CLUSTER_NAME:-ikm-$(printf '%s' "$dir" | sha256sum | cut -c1-8)}
hash=$(printf '%s' "$name" | sha256sum | cut -c1-8)
cache=${IKM_CACHE:-$HOME/.cache/interlink-k8s-mesh}
bin=$cache/bin/node # kubelet, containerd, its shim and ctr (build-binaries.sh)
kubectl_bin=$cache/bin/current/kubectl
images=${IKM_IMAGES_DIR:-$repo/bin/images}
state=$dir/node
node=$name-node
bridge=ikm$hash
cgroot=/ikm-$hash
kubeconfig=$dir/kubeconfig
pki=$dir/kwok/clusters/$name/pki
cni_bin=/usr/lib/cni
sock=$state/containerd/containerd.sock
taint=${IKM_NODE_TAINT:-1}
kube_proxy=${IKM_NODE_KUBE_PROXY:-0}
service_cidr=${IKM_SERVICE_CIDR:-}
dns=${IKM_NODE_DNS:-1}
site_zones=${IKM_NODE_DNS_SITE_ZONES:-}
dns_service_ip=${IKM_DNS_SERVICE_IP:-}
max_pods=${IKM_NODE_MAX_PODS:-110}
image_registry=${IKM_NODE_REGISTRY:-}
case $image_registry in '' | 127.0.0.1:[0-9]*) ;; *) echo "IKM_NODE_REGISTRY=$image_registry: the test registry's 127.0.0.1:port" >&2; exit 2 ;; esac
case $max_pods in '' | *[!0-9]*) echo "IKM_NODE_MAX_PODS=$max_pods: a number of pods (at most 250: one /24 per node)" >&2; exit 2 ;; esac
[ "$max_pods" -ge 1 ] && [ "$max_pods" -le 250 ] || { echo "IKM_NODE_MAX_PODS=$max_pods: between 1 and 250 (one /24 per node)" >&2; exit 2; }
# The machine-wide registry of live real nodes (tmpfs: gone at reboot like the nodes).
registry=/run/ikm-real-nodes
# Host paths the kubelet, containerd or its shims use whatever their configuration says; each is
# removed at down when up found it missing.
host_paths=(/var/lib/kubelet /run/containerd /var/log/containers /var/log/pods /var/lib/cni /etc/cdi /var/run/cdi /run/nri /opt/containerd /usr/libexec/kubernetes)
# Kernel settings the kubelet changes on start (pkg/kubelet/cm setupKernelTunables); restored at down.
tunables=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

log() { printf '[node %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "$*"
	exit 1
}
kubectl() { "$kubectl_bin" --kubeconfig "$kubeconfig" "$@"; }

[ "$(id -u)" = 0 ] || die "a real node needs root (containerd, runc, CNI, cgroups)"

# survivors lists the node's processes: everything started from its state directory (the mount
# namespace's holder, containerd, the kubelet), and the shims containerd started for it (their
# command line names its socket).
survivors() { pgrep -f -- "$state/" || true; }

# lock serializes the registry's readers and writers across nodes (flock on /run itself: nothing to
# create or leave behind). A process started while it is held must not inherit lockfd.
lock() {
	exec {lockfd}</run
	flock "$lockfd"
}
unlock() { exec {lockfd}<&-; }

# other_nodes lists the state dirs of the other live nodes in the registry, dropping entries whose
# holder process is gone (a node that crashed or was killed).
other_nodes() {
	local e pid st
	for e in "$registry"/node-*; do
		[ -f "$e" ] || continue
		read -r pid st _ <"$e"
		if [ "$st" = "$state" ]; then continue; fi
		if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$st/mntns"; then
			echo "$st"
		else
			rm -f "$e"
		fi
	done
}

# our_mounts lists mount points under the node's state and the shared host paths, deepest first.
our_mounts() {
	awk '{print $2}' /proc/mounts | sed 's/\\040/ /g' |
		grep -E "^($state|/var/lib/kubelet|/run/containerd)(/|$)" | sort -r || true
}

pick_cidr() {
	if [ -n "${IKM_NODE_POD_CIDR:-}" ]; then
		[[ $IKM_NODE_POD_CIDR =~ ^[0-9]+\.[0-9]+\.[0-9]+\.0/24$ ]] || die "IKM_NODE_POD_CIDR=$IKM_NODE_POD_CIDR: want a /24 such as 10.244.7.0/24"
		echo "$IKM_NODE_POD_CIDR"
		return
	fi
	local n=$((16#${hash:0:4} % 250 + 1)) i
	for i in $(seq 0 249); do
		local c="10.244.$(((n + i) % 250 + 1))"
		# Free when no address and no route of the machine mentions the /24.
		if ! ip -4 addr show | grep -q " $c\." && ! ip -4 route show table all | grep -q "^$c\." &&
			! ip -4 route show table all | grep -q "^10\.244\.0\.0/16"; then
			echo "$c.0/24"
			return
		fi
	done
	die "no free /24 in 10.244.0.0/16"
}

write_configs() {
	local cidr=$1 node_ip=$2 cluster_dns=$4
	# $3: the name of the pause image, as its archive carries it.
	mkdir -p "$state"/{containerd/root,containerd/state,cni/net.d,cni/ipam,cni/cache,kubelet,pod-logs,pki,volume-plugins}
	cat >"$state/containerd/config.toml" <<EOF
version = 3
root = "$state/containerd/root"
state = "$state/containerd/state"
# Plugins that would write outside the state directory or that the node does not use.
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs"]

[grpc]
address = "$sock"

[ttrpc]
address = "$sock.ttrpc"

[plugins."io.containerd.cri.v1.images"]
snapshotter = "overlayfs"
# A pull never leaves the machine: every registry resolves to a closed loopback port (images come
# from bin/images, imported at up).
[plugins."io.containerd.cri.v1.images".registry]
config_path = "$state/containerd/certs.d"
[plugins."io.containerd.cri.v1.images".pinned_images]
# The project's own pause image (images/images.yaml), imported with the others: no registry needed.
sandbox = "$3"

[plugins."io.containerd.cri.v1.runtime"]
enable_cdi = false
# The VM lacks CAP_SYS_RESOURCE: without this every sandbox fails ("can't get final child's PID").
restrict_oom_score_adj = true
netns_mounts_under_state_dir = true
[plugins."io.containerd.cri.v1.runtime".cni]
bin_dirs = ["$cni_bin"]
conf_dir = "$state/cni/net.d"
max_conf_num = 1
[plugins."io.containerd.cri.v1.runtime".containerd]
default_runtime_name = "runc"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
BinaryName = "/usr/sbin/runc"
Root = "$state/runc"
SystemdCgroup = false

[plugins."io.containerd.grpc.v1.cri"]
stream_server_address = "127.0.0.1"
stream_server_port = "0"
EOF
	local routes=""
	# With kube-proxy, pods reach the Service range through the node (they have no default route).
	[ "$kube_proxy" = 0 ] || routes=$(printf ',\n        "routes": [{"dst": "%s", "gw": "%s"}]' "$service_cidr" "$node_ip")
	mkdir -p "$state/containerd/certs.d/_default"
	printf 'server = "http://127.0.0.1:9"\n' >"$state/containerd/certs.d/_default/hosts.toml"
	if [ -n "$image_registry" ]; then
		# The test registry (test/registry), over plain HTTP on loopback: images named
		# $image_registry/... are pulled from it, every other name still goes nowhere.
		mkdir -p "$state/containerd/certs.d/$image_registry"
		printf 'server = "http://%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' "$image_registry" "$image_registry" \
			>"$state/containerd/certs.d/$image_registry/hosts.toml"
	fi
	# isGateway false: the bridge plugin would otherwise switch on the host's forwarding. The script
	# gives the bridge its address itself. tuning: each pod forwards, as on a forwarding node.
	cat >"$state/cni/net.d/10-ikm.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "ikm-$hash",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$state/cni/ipam",
        "ranges": [[{"subnet": "$cidr", "gateway": "$node_ip"}]]$routes
      }
    },
    {"type": "tuning", "sysctl": {"net.ipv4.ip_forward": "1"}},
    {"type": "loopback"}
  ]
}
EOF
	cat >"$state/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The host is cgroup v1 (cgroup2 holds only hugetlb) and has no systemd to delegate to.
failCgroupV1: false
cgroupDriver: cgroupfs
# Our own cgroup subtree, so nodes of two clusters on one machine never share kubepods.
cgroupRoot: $cgroot
# No CAP_SYS_RESOURCE in this VM: the kubelet cannot lower its own OOM score.
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$sock
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: $node_ip
healthzPort: 10248
podCIDR: $cidr
podLogsDir: $state/pod-logs
volumePluginDir: $state/volume-plugins
# Pods never inherit the machine's resolver: their nameserver is the node's CoreDNS (IKM_NODE_DNS).
resolvConf: ""
clusterDomain: cluster.local
${cluster_dns:+clusterDNS: [$cluster_dns]}
failSwapOn: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: $pki/ca.crt
# Only holders of a certificate from the cluster CA get this far (kube-apiserver for logs and exec).
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: $max_pods
EOF
}

node_credentials() {
	[ -f "$pki/ca.crt" ] && [ -f "$pki/ca.key" ] || die "no cluster CA in $pki: start the cluster with IKM_REAL_NODE=1 test/testcluster/cluster.sh up"
	client_kubeconfig kubelet node "/O=system:nodes/CN=system:node:$node"
}

# client_kubeconfig FILE KEY SUBJECT writes $state/FILE.kubeconfig for a client certificate with
# SUBJECT (key and certificate $state/pki/KEY.{key,crt}) signed by the cluster CA.
client_kubeconfig() {
	local file=$1 key=$2 subject=$3 server
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$state/pki/$key.key" \
		-subj "$subject" -out "$state/pki/$key.csr" 2>/dev/null
	openssl x509 -req -in "$state/pki/$key.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
		-days 2 -out "$state/pki/$key.crt" 2>/dev/null
	server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
	cat >"$state/$file.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: $key
  user:
    client-certificate: $state/pki/$key.crt
    client-key: $state/pki/$key.key
contexts:
- name: $key
  context: {cluster: cluster, user: $key}
current-context: $key
EOF
}

# proxy_node prints the state dir of a live node running kube-proxy, if any (lock held).
proxy_node() {
	local st
	for st in $(other_nodes); do
		grep -qF " $st kube-proxy" "$registry"/node-* 2>/dev/null && echo "$st"
	done
	return 0
}

# record notes what the machine looked like before the first node, for the last node's down to
# restore, creates the host directories the mount namespace binds over, and registers the node.
# Called with the lock held.
record() {
	local base=$registry/baseline p t
	mkdir -p "$registry"
	if [ -z "$(other_nodes)" ]; then
		rm -rf "$base"
		mkdir -p "$base"
		: >"$base/created-paths"
		for p in "${host_paths[@]}"; do [ -e "$p" ] || echo "$p" >>"$base/created-paths"; done
		: >"$base/tunables"
		for t in "${tunables[@]}"; do echo "$t $(cat "/proc/sys/$t")" >>"$base/tunables"; done
		iptables_chains >"$base/iptables-before"
	fi
	for p in "${host_paths[@]}"; do mkdir -p "$p"; done
}

# iptables_chains lists "family table chain" for every user-defined chain of the host's tables (the
# kubelet adds KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT).
iptables_chains() {
	local f
	for f in iptables ip6tables; do
		"$f-save" 2>/dev/null | awk -v f="$f" '/^\*/{t=substr($0,2)} /^:/{print f, t, substr($1,2)}'
	done | grep -Ev ' (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING)$' | sort || true
}

wait_for() {
	local what=$1 tries=$2
	shift 2
	local i
	for i in $(seq "$tries"); do
		"$@" >/dev/null && return
		sleep 0.5
	done
	die "$what did not happen in $((tries / 2)) s"
}

up() {
	[ -x "$bin/kubelet" ] && [ -x "$bin/containerd" ] || die "no kubelet or containerd in $bin: run test/testcluster/build-binaries.sh"
	command -v /usr/sbin/runc >/dev/null || die "runc missing: apt-get install runc (.ci/run installs it)"
	[ -x "$cni_bin/bridge" ] || die "CNI plugins missing: apt-get install containernetworking-plugins (.ci/run installs them)"
	[ -f "$kubeconfig" ] || die "no cluster at $kubeconfig"
	compgen -G "$images/*.tar" >/dev/null || die "no images in $images: run make images"
	if [ -f "$state/up" ] && kubectl get node "$node" >/dev/null 2>&1 && [ -n "$(survivors)" ]; then
		log "node $node already up"
		return
	fi
	if [ "$kube_proxy" = 1 ]; then
		[[ $service_cidr =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$ ]] || die "IKM_NODE_KUBE_PROXY=1 needs IKM_SERVICE_CIDR (the cluster's Service range, e.g. 10.96.0.0/16)"
		kube_proxy_bin=$(node_binary kube-proxy)
	fi
	case $dns in
	0) [ -z "$dns_service_ip" ] || die "IKM_DNS_SERVICE_IP=$dns_service_ip needs IKM_NODE_DNS=1" ;;
	1) coredns_bin=$(node_binary coredns) ;;
	*) die "IKM_NODE_DNS=$dns: want 1 (CoreDNS on the node) or 0" ;;
	esac
	[[ $site_zones =~ ^[a-z0-9.\ -]*$ ]] || die "IKM_NODE_DNS_SITE_ZONES=$site_zones: want DNS zones separated by spaces"
	if [ -n "$dns_service_ip" ]; then
		[[ $dns_service_ip =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "IKM_DNS_SERVICE_IP=$dns_service_ip: want an IPv4 address in IKM_SERVICE_CIDR"
		[ "$kube_proxy" = 1 ] || die "IKM_DNS_SERVICE_IP=$dns_service_ip needs IKM_NODE_KUBE_PROXY=1: without kube-proxy no pod reaches a Service address"
	fi
	down >/dev/null 2>&1 || true
	local start=$SECONDS
	mkdir -p "$state"
	lock
	if [ "$kube_proxy" = 1 ] && [ -n "$(proxy_node)" ]; then
		die "the node of $(proxy_node) already runs kube-proxy; two in the host's tables would undo each other's rules"
	fi
	record
	local cidr node_ip
	cidr=$(pick_cidr)
	node_ip=${cidr%.0/24}.1
	echo "$cidr" >"$state/pod-cidr"
	log "node $node: pod range $cidr on bridge $bridge, node IP $node_ip"
	local pause cluster_dns=""
	pause=$(image_ref "$images/pause.tar")
	[ "$dns" = 0 ] || cluster_dns=${dns_service_ip:-$node_ip}
	write_configs "$cidr" "$node_ip" "$pause" "$cluster_dns"
	node_credentials
	make_cgroup_root
	ip link add "$bridge" type bridge
	ip addr add "$node_ip/24" dev "$bridge"
	ip link set "$bridge" up
	# With kube-proxy, Service traffic enters the host from the bridge and leaves to it again: this
	# bridge forwards, nothing else does (IPv4 forwarding is decided by the incoming interface).
	[ "$kube_proxy" = 0 ] || echo 1 >"/proc/sys/net/ipv4/conf/$bridge/forwarding"
	touch "$state/up"

	log "starting the node's mount namespace (private binds over ${host_paths[*]})"
	local binds="" p
	for p in "${host_paths[@]}"; do
		mkdir -p "$state/host$p"
		binds="$binds mount --bind '$state/host$p' '$p' &&"
	done
	# The holder keeps the namespace alive; its argv[0] names the state dir (survivors, registry).
	setsid unshare --mount --propagation private -- bash -c "$binds touch '$state/mntns-ready' && exec -a '$state/mntns' sleep infinity" \
		>"$state/mntns.log" 2>&1 </dev/null {lockfd}<&- &
	echo $! >"$state/mntns.pid"
	echo "$! $state$([ "$kube_proxy" = 0 ] || echo ' kube-proxy')" >"$registry/node-$hash"
	unlock
	wait_for "the mount namespace" 20 test -f "$state/mntns-ready"
	local inns=(nsenter "--mount=/proc/$(cat "$state/mntns.pid")/ns/mnt" --)

	log "starting containerd"
	PATH="$bin:$PATH" setsid "${inns[@]}" "$bin/containerd" --config "$state/containerd/config.toml" >"$state/containerd.log" 2>&1 </dev/null &
	echo $! >"$state/containerd.pid"
	wait_for "containerd answering on $sock" 60 ctr_answers
	local tar
	for tar in "$images"/*.tar; do
		"$bin/ctr" --address "$sock" -n k8s.io images import --snapshotter overlayfs "$tar" >>"$state/import.log" 2>&1 ||
			die "import $tar failed (see $state/import.log)"
	done
	log "imported $(find "$images" -name '*.tar' | wc -l) images"
	[ "$dns" = 0 ] || start_coredns "$node_ip" "${inns[@]}"
	log "starting the kubelet"
	local taints=()
	[ "$taint" = 0 ] || taints=(--register-with-taints "ikm.interlink.dev/real-node=true:NoSchedule")
	setsid "${inns[@]}" "$bin/kubelet" --config "$state/kubelet-config.yaml" --kubeconfig "$state/kubelet.kubeconfig" \
		--root-dir "$state/kubelet" --cert-dir "$state/pki" --hostname-override "$node" --node-ip "$node_ip" \
		--node-labels "ikm.interlink.dev/real-node=true" "${taints[@]}" >"$state/kubelet.log" 2>&1 </dev/null &
	echo $! >"$state/kubelet.pid"
	wait_for "node $node registering" 120 registered
	kubectl wait --for=condition=Ready "node/$node" --timeout=120s >/dev/null || die "node $node not Ready (see $state/kubelet.log)"
	if [ "$kube_proxy" = 1 ]; then
		start_kube_proxy "$cidr" "$node_ip" "${inns[@]}"
	fi
	log "node $node Ready in $((SECONDS - start)) s (kubelet RSS $(rss kubelet) MB, containerd RSS $(rss containerd) MB)"
}

# start_kube_proxy CIDR NODE_IP NSENTER...: kube-proxy for this node, as user system:kube-proxy (the
# default RBAC binds it to system:node-proxier), its ports on the node IP only.
start_kube_proxy() {
	local cidr=$1 node_ip=$2
	shift 2
	client_kubeconfig kube-proxy kube-proxy "/CN=system:kube-proxy"
	cat >"$state/kube-proxy.yaml" <<KPEOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $state/kube-proxy.kubeconfig
mode: iptables
hostnameOverride: $node
bindAddress: $node_ip
clusterCIDR: $cidr
healthzBindAddress: $node_ip:10256
metricsBindAddress: $node_ip:10249
# NodePorts only on the bridge's address, never on the machine's.
nodePortAddresses: ["$node_ip/32"]
iptables:
  # Every Service flow is SNATed to the node IP, so replies come back through the host even when
  # client and backend share the bridge (no br_netfilter needed).
  masqueradeAll: true
  # No route_localnet: localhost NodePorts would need it machine-wide.
  localhostNodePorts: false
# 0: leave the machine's conntrack settings alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
KPEOF
	log "starting kube-proxy (Services of $service_cidr on this node)"
	setsid "$@" "$kube_proxy_bin" --config "$state/kube-proxy.yaml" >"$state/kube-proxy.log" 2>&1 </dev/null &
	echo $! >"$state/kube-proxy.pid"
	echo "$kube_proxy_bin" >"$state/kube-proxy.bin"
	wait_for "kube-proxy healthy on $node_ip:10256" 60 curl -sf "http://$node_ip:10256/healthz"
}

# node_binary NAME prints the path of a node binary that build-binaries.sh made.
node_binary() {
	local b=$bin/$1
	# Another clone's older build-binaries.sh may rewrite bin/node without it: take the cache entry.
	[ -x "$b" ] || b=$(ls -t "$cache"/bin/"$1"-*/"$1" 2>/dev/null | head -1)
	[ -x "$b" ] || die "no $1 in $bin: run test/testcluster/build-binaries.sh"
	echo "$b"
}

# start_coredns NODE_IP NSENTER...: CoreDNS on NODE_IP:53 for the cluster's names, as user
# system:coredns with read access to what its kubernetes plugin watches; with IKM_DNS_SERVICE_IP, the
# kube-dns Service in front of it.
start_coredns() {
	local node_ip=$1
	shift
	client_kubeconfig coredns coredns "/CN=system:coredns"
	kubectl apply -f - >/dev/null <<EOF || die "cannot grant CoreDNS its read access"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "ikm:coredns", labels: {ikm.interlink.dev/node: "$node"}}
rules:
- {apiGroups: [""], resources: [services, namespaces, pods], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "ikm:coredns", labels: {ikm.interlink.dev/node: "$node"}}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "ikm:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}]
EOF
	local site_templates=""
	if [ -n "$site_zones" ]; then
		site_templates="    # The site's own records (IKM_NODE_DNS_SITE_ZONES): every name there is this node.
    template IN A $site_zones {
        answer \"{{ .Name }} 5 IN A $node_ip\"
    }
    template IN AAAA $site_zones {
        rcode NOERROR
    }
"
	fi
	cat >"$state/Corefile" <<EOF
.:53 {
    bind $node_ip
    ready $node_ip:8181
    errors
    log . "{remote} {type} {name} {rcode} {duration}"
    cache 5
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $state/coredns.kubeconfig ""
        pods insecure
        ttl 5
        fallthrough in-addr.arpa ip6.arpa
    }
${site_templates}    # Nothing is forwarded: every other name does not exist here.
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
	log "starting CoreDNS on $node_ip:53 (cluster.local${site_zones:+, every name in $site_zones is $node_ip}; every other name NXDOMAIN)"
	setsid "$@" "$coredns_bin" -conf "$state/Corefile" >"$state/coredns.log" 2>&1 </dev/null &
	echo $! >"$state/coredns.pid"
	wait_for "CoreDNS ready on $node_ip:8181" 60 curl -sf "http://$node_ip:8181/ready"
	[ -n "$dns_service_ip" ] || return 0
	kubectl apply -f - >/dev/null <<EOF || die "cannot make the kube-dns Service at $dns_service_ip"
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $dns_service_ip
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-$node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: ikm.interlink.dev-node.sh}
addressType: IPv4
endpoints: [{addresses: ["$node_ip"], conditions: {ready: true}, nodeName: "$node"}]
ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
EOF
	log "Service kube-system/kube-dns at $dns_service_ip → CoreDNS at $node_ip:53"
}

# image_ref ARCHIVE prints the name (io.containerd.image.name) an archive from make images carries.
image_ref() {
	[ -f "$1" ] || die "no $1: run make images"
	tar -xOf "$1" index.json | jq -er '.manifests[0].annotations["io.containerd.image.name"]'
}

ctr_answers() { "$bin/ctr" --address "$sock" version 2>/dev/null; }

# registered succeeds once the node exists; it stops the script when the kubelet exited.
registered() {
	kill -0 "$(cat "$state/kubelet.pid")" 2>/dev/null || {
		tail -5 "$state/kubelet.log" >&2
		die "the kubelet exited (see $state/kubelet.log)"
	}
	kubectl get node "$node" 2>/dev/null
}

rss() { awk '/VmRSS/{print int($2/1024)}' "/proc/$(cat "$state/$1.pid")/status" 2>/dev/null || echo '?'; }

# stop_pids PIDS: TERM, then KILL after 10 s.
stop_pids() {
	[ -n "$*" ] || return 0
	# shellcheck disable=SC2086
	kill "$@" 2>/dev/null || true
	local i
	for i in $(seq 20); do
		kill -0 "$@" 2>/dev/null || return 0
		sleep 0.5
	done
	kill -9 "$@" 2>/dev/null || true
}

# make_cgroup_root creates the kubelet's cgroup root in every v1 hierarchy (the kubelet refuses a
# missing one); a new cpuset cgroup starts with no CPUs or memory nodes, so it gets its parent's.
make_cgroup_root() {
	local h
	for h in /sys/fs/cgroup/*/; do
		[ -d "$h" ] && [ "$h" != /sys/fs/cgroup/unified/ ] || continue
		mkdir -p "$h${cgroot#/}"
		if [ -f "$h/cpuset.cpus" ]; then
			cat "$h/cpuset.cpus" >"$h${cgroot#/}/cpuset.cpus"
			cat "$h/cpuset.mems" >"$h${cgroot#/}/cpuset.mems"
		fi
	done
}

# cgroup_dirs lists the node's cgroups in every v1 hierarchy, deepest first.
cgroup_dirs() {
	local h
	for h in /sys/fs/cgroup/*/; do
		[ -d "$h${cgroot#/}" ] && find "$h${cgroot#/}" -type d
	done | sort -r
}

down() {
	if [ -f "$state/kube-proxy.pid" ]; then
		log "stopping kube-proxy and removing its rules (kube-proxy --cleanup)"
		stop_pids "$(cat "$state/kube-proxy.pid")"
		"$(cat "$state/kube-proxy.bin")" --cleanup >"$state/kube-proxy-cleanup.log" 2>&1 || log "kube-proxy --cleanup failed (see $dir/node-logs/kube-proxy-cleanup.log)"
	fi
	if [ -f "$state/coredns.pid" ]; then
		log "stopping CoreDNS"
		stop_pids "$(cat "$state/coredns.pid")"
		kubectl delete -n kube-system endpointslice "kube-dns-$node" --ignore-not-found --wait=false >/dev/null 2>&1 || true
		kubectl delete clusterrolebinding,clusterrole -l "ikm.interlink.dev/node=$node" --wait=false >/dev/null 2>&1 || true
	fi
	if [ -f "$state/kubelet.pid" ]; then
		log "stopping the kubelet"
		stop_pids "$(cat "$state/kubelet.pid")"
	fi
	# The kubelet is gone; the pods' containers go with their shims. Killing the shims' processes
	# (containers first: they are children of the shims) leaves nothing for containerd to restart.
	local keepalive pids
	keepalive="$(cat "$state/containerd.pid" 2>/dev/null || echo none)|$(cat "$state/mntns.pid" 2>/dev/null || echo none)"
	pids=$(survivors | grep -Evx "$keepalive" || true)
	if [ -n "$pids" ]; then
		local p children=""
		for p in $pids; do children="$children $(pgrep -P "$p" || true)"; done
		# shellcheck disable=SC2086
		stop_pids $children
		# shellcheck disable=SC2086
		stop_pids $pids
	fi
	if [ -f "$state/containerd.pid" ]; then
		log "stopping containerd"
		stop_pids "$(cat "$state/containerd.pid")"
	fi
	# Last, the mount namespace's holder: with it the namespace and every mount in it go.
	# shellcheck disable=SC2046
	stop_pids $(survivors)
	local m
	for m in $(our_mounts); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	local c
	for c in $(cgroup_dirs); do rmdir "$c" 2>/dev/null || true; done
	# The host ends of the pods' veth pairs go with the pods' namespaces; check looks for them.
	if [ -d "$state" ]; then
		ip -o link show master "$bridge" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 >"$state/veths" || true
	fi
	ip link del "$bridge" 2>/dev/null || true
	kubectl delete node "$node" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	local keep
	keep=$(mktemp -d)
	cp "$state/veths" "$state/kube-proxy.pid" "$keep/" 2>/dev/null || true
	# What the nodes share goes back as it was with the last of them.
	lock
	rm -f "$registry/node-$hash"
	local others
	others=$(other_nodes)
	if [ -z "$others" ] && [ -d "$registry/baseline" ]; then
		restore_machine "$registry/baseline"
		cp "$registry/baseline/created-paths" "$registry/baseline/iptables-before" "$keep/" 2>/dev/null || true
		rm -rf "$registry"
	elif [ -n "$others" ]; then
		log "other real nodes still up ($(echo "$others" | tr '\n' ' ')): their shared host state stays"
	fi
	unlock
	# The logs outlive the node, for whoever asks why it failed.
	mkdir -p "$dir/node-logs"
	cp "$state"/*.log "$dir/node-logs/" 2>/dev/null || true
	rm -rf "$state"
	check "$keep"
	rm -rf "$keep"
	log "node $node is down, nothing left"
}

# restore_machine BASELINE undoes what the nodes changed on the machine as a whole: the kubelet's
# iptables chains (and the jumps to them), the kernel settings, the host directories created for
# the binds.
restore_machine() {
	local base=$1
	if [ -f "$base/iptables-before" ]; then
		local f t ch
		iptables_chains | comm -13 "$base/iptables-before" - | while read -r f t ch; do
			"$f" -t "$t" -F "$ch" 2>/dev/null || true
		done
		iptables_chains | comm -13 "$base/iptables-before" - | while read -r f t ch; do
			# Drop the jumps to the chain first, then the chain.
			{ "$f-save" -t "$t" | grep -- "-j $ch\b" || true; } | sed 's/^-A /-D /' | while read -r rule; do
				# shellcheck disable=SC2086
				"$f" -t "$t" $rule 2>/dev/null || true
			done
			"$f" -t "$t" -X "$ch" 2>/dev/null || true
		done
	fi
	if [ -f "$base/tunables" ]; then
		local k v
		while read -r k v; do echo "$v" >"/proc/sys/$k" 2>/dev/null || true; done <"$base/tunables"
	fi
	if [ -f "$base/created-paths" ]; then
		local p
		while read -r p; do rm -rf "$p"; done <"$base/created-paths"
	fi
}

# check [DIR]: DIR holds veths from this node and, when no other node is up, created-paths and
# iptables-before from the registry's baseline.
check() {
	local keep=${1:-$state} left=()
	if [ -z "${1:-}" ] && [ -z "$(other_nodes)" ] && [ ! -e "$registry/node-$hash" ] && [ -d "$registry/baseline" ]; then
		keep=$registry/baseline
		left+=("registry $registry (no live node)")
	fi
	[ -z "$(survivors)" ] || left+=("processes: $(survivors | tr '\n' ' ')")
	pgrep -f "containerd-shim-runc-v2.*$state" >/dev/null && left+=("shims")
	[ -z "$(our_mounts)" ] || left+=("mounts: $(our_mounts | tr '\n' ' ')")
	[ -z "$(cgroup_dirs)" ] || left+=("cgroups: $(cgroup_dirs | head -3 | tr '\n' ' ')")
	! ip link show "$bridge" >/dev/null 2>&1 || left+=("link $bridge")
	[ ! -e "$state" ] || left+=("state directory $state")
	[ ! -e "$registry/node-$hash" ] || left+=("registry entry $registry/node-$hash")
	if [ -f "$keep/created-paths" ]; then
		local p
		while read -r p; do [ ! -e "$p" ] || left+=("host path $p"); done <"$keep/created-paths"
	fi
	if [ -f "$keep/veths" ]; then
		local v
		while read -r v; do ! ip link show "$v" >/dev/null 2>&1 || left+=("link $v"); done <"$keep/veths"
	fi
	if [ -f "$keep/kube-proxy.pid" ] && iptables-save -t nat 2>/dev/null | grep -qE '^:KUBE-(SERVICES|SVC-|SEP-)'; then
		left+=("kube-proxy's iptables chains (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*)")
	fi
	if [ -f "$keep/iptables-before" ]; then
		local extra
		extra=$(iptables_chains | comm -13 "$keep/iptables-before" - | tr '\n' ' ')
		[ -z "$extra" ] || left+=("iptables chains: $extra")
	fi
	if [ ${#left[@]} -gt 0 ]; then
		log "node $node left behind:"
		printf '  %s\n' "${left[@]}" >&2
		return 1
	fi
}

case ${1:-} in
up) up ;;
down) down ;;
check) check ;;
# The pod range up would take now (IKM_NODE_POD_CIDR, else the first free /24 from the name's hash).
cidr) pick_cidr ;;
*)
	echo "usage: $0 up|down|check|cidr" >&2
	exit 2
	;;
esac
