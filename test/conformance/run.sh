#!/usr/bin/env bash
# run.sh: `make conformance`. The whole InterLink chain on this machine, then the suite:
#
#   kubectl (local cluster) → virtual-kubelet (full mesh, manifests/*.tmpl) → interlink (API server)
#     → bin/interlink-k8s-plugin (unix socket) → remote cluster
#
# Two control planes from test/testcluster/cluster.sh: "local" (kwok manages only the fake nodes that carry
# kwok.x-k8s.io/node=fake, so the VK's node stays the VK's; the apiserver reaches kubelets by
# InternalIP, never through DNS) and "remote". The InterLink binaries come from INTERLINK_BIN_DIR
# (default ../shared/interlink next to the repository). Everything listens on 127.0.0.1 and is torn
# down on exit, whatever happens.
#
# As root, both clusters also get a real node (test/testcluster/node.sh: kubelet, containerd, CNI bridge),
# and TestMeshRealPods proves the mesh as real pods: the local real node (no taint, cordoned while
# the suite runs) runs kube-proxy, and the test moves shadow pods onto it (it cordons the fake
# nodes), so the VK's shadow pod (from `make manifests`, naming the images `make images` built)
# runs for real; the remote real node runs the mesh test's offloaded pod, whose mesh-agent
# dials the tunnel by name (<host>.mesh.test, resolved by the remote site's DNS) through Traefik (the
# local cluster's ingress controller, watching its Ingresses) on the remote node's bridge address: nothing is routed between the two bridges. The other
# cases' remote pods stay on kwok's nodes.
#
# Environment: INTERLINK_BIN_DIR, IKM_CACHE (see test/testcluster/cluster.sh), IKM_CONFORMANCE_RUN (a Go
# regexp selecting cases, default all), IKM_CONFORMANCE_REAL_MESH (0: no real nodes even as root),
# IKM_CONFORMANCE_TESTS (a Go regexp of the suite's tests instead of the default set: make bench-real
# runs ^TestMeshReadyTimes$ with IKM_CONFORMANCE_READY_PODS=20).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
il_dir=${INTERLINK_BIN_DIR:-$repo/../shared/interlink}
work=$repo/.cache/conformance
out=$repo/bin/conformance
cache=${IKM_CACHE:-$HOME/.cache/interlink-k8s-mesh}
start=$SECONDS

log() { printf '[conformance %s +%ds] %s\n' "$(date +%H:%M:%S)" "$((SECONDS - start))" "$*" >&2; }

for b in interlink virtual-kubelet; do
	[ -x "$il_dir/$b" ] || {
		log "INTERLINK_BIN_DIR=$il_dir has no executable $b: point INTERLINK_BIN_DIR at a directory holding InterLink's interlink and virtual-kubelet binaries"
		exit 2
	}
done
il_dir=$(cd "$il_dir" && pwd)

# The local cluster's address plan, given to kwok, the apiserver and the VK alike.
pod_cidr=10.244.0.0/16
service_cidr=10.96.0.0/16
dns_ip=10.96.0.10

# IKM_CONFORMANCE_LAYOUT=helm (make conformance-helm): the chain as InterLink's chart installs it, pods
# in the local cluster (test/conformance/helm-layout.sh); default: host processes. Checked below.
layout=${IKM_CONFORMANCE_LAYOUT:-processes}
pids=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	log "tearing down (plugin, VK, API server, both clusters)"
	if [ "$layout" = helm ] && declare -F helm_dump >/dev/null; then
		[ "$rc" = 0 ] || helm_dump || true
		# bin/manifests named the test registry for the run: back to the images' own names.
		make -s manifests >/dev/null 2>&1 || true
	fi
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	IKM_CLUSTER_DIR=$work/local IKM_CLUSTER_NAME=ikm-conformance-local test/testcluster/cluster.sh down || rc=1
	IKM_CLUSTER_DIR=$work/remote IKM_CLUSTER_NAME=ikm-conformance-remote test/testcluster/cluster.sh down || rc=1
	for p in "${pids[@]}"; do
		if kill -0 "$p" 2>/dev/null; then log "process $p survived"; rc=1; fi
	done
	log "logs: $out/logs; report: $out/junit.xml; exit $rc after $((SECONDS - start)) s"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a TCP port on 127.0.0.1 that nothing listens on, avoiding ports already handed out
# and the kernel's ephemeral range (an outgoing connection may take a port there between the check
# and the listen: the API server once failed with "address already in use").
taken=" "
read -r eph_low _ </proc/sys/net/ipv4/ip_local_port_range
port_low=10000
port_span=$((eph_low > port_low + 1000 ? eph_low - port_low : 20000))
free_port() {
	local p
	while :; do
		p=$((port_low + RANDOM % port_span))
		case $taken in *" $p "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			taken="$taken$p "
			echo "$p"
			return
		fi
	done
}

real=0
if [ "$(id -u)" = 0 ] && [ "${IKM_CONFORMANCE_REAL_MESH:-1}" != 0 ]; then real=1; fi
# IKM_CONFORMANCE_SCALE_PODS (make bench-scale): run TestMeshScale alone with that many pods at once.
scale_pods=${IKM_CONFORMANCE_SCALE_PODS:-0}
case $scale_pods in *[!0-9]* | '') log "IKM_CONFORMANCE_SCALE_PODS=$scale_pods: a number of pods"; exit 2 ;; esac
case $layout in
processes) ;;
helm)
	[ "$real" = 1 ] || { log "IKM_CONFORMANCE_LAYOUT=helm runs the chart's pods on a real node: run as root (and leave IKM_CONFORMANCE_REAL_MESH unset)"; exit 2; }
	[ "$scale_pods" = 0 ] || { log "IKM_CONFORMANCE_SCALE_PODS is for the host-process layout"; exit 2; }
	# shellcheck source=test/conformance/helm-layout.sh
	. test/conformance/helm-layout.sh
	helm_chart_check
	;;
*) log "IKM_CONFORMANCE_LAYOUT=$layout: processes or helm"; exit 2 ;;
esac
if [ "$scale_pods" -gt 230 ]; then log "IKM_CONFORMANCE_SCALE_PODS=$scale_pods: at most 230 (each real node has one /24)"; exit 2; fi
if [ "$scale_pods" -gt 0 ] && [ "$real" != 1 ]; then log "IKM_CONFORMANCE_SCALE_PODS needs real nodes: run as root"; exit 2; fi

# A previous run cut short may have left its clusters (and real nodes) behind.
for side in local remote; do
	if [ -d "$work/$side" ]; then
		IKM_CLUSTER_DIR=$work/$side IKM_CLUSTER_NAME=ikm-conformance-$side test/testcluster/cluster.sh down >/dev/null 2>&1 || true
	fi
done
rm -rf "$work" "$out"
mkdir -p "$work/local" "$work/remote" "$work/il" "$out/logs"

log "building the plugin (make build) and the suite"
make -s build >/dev/null
go test -c -o "$out/conformance.test" ./test/conformance/


log "starting the local and the remote control planes (first run builds them: about 15 min on 2 cores)"
test/testcluster/build-binaries.sh >/dev/null
# cluster.sh's default configuration already keeps kwok off the VK's node (it manages only the fake
# nodes) and reaches kubelets by InternalIP (the VK's 127.0.0.1), never through DNS.
templates=$repo/manifests
local_nodes=(IKM_REAL_NODE=0)
remote_nodes=(IKM_REAL_NODE=0)
if [ "$real" = 1 ]; then
	log "root: real nodes on both sides; make images and make manifests (the shadow template naming this build's images)"
	make -s images >/dev/null
	image_tag() { local r; r=$(tar -xOf "bin/images/$1.tar" index.json | jq -er '.manifests[0].annotations["io.containerd.image.name"]') && echo "${r##*:}"; }
	if [ "$layout" = helm ]; then
		# The chart's pod pulls every image (imagePullPolicy: Always): from the test registry, which
		# both real nodes reach, and make manifests names the images there.
		image_version=$(image_tag pause)
		helm_registry
		helm_push_images "$registry_addr" "$image_version"
		make -s manifests REGISTRY="$registry_addr/interlink-k8s-mesh" >/dev/null
	else
		make -s manifests >/dev/null
	fi
	templates=$repo/bin/manifests
	# The local node runs kube-proxy and CoreDNS behind the kube-dns Service the VK names (DNSServiceIP).
	# Each node's CoreDNS also answers its site's own names (IKM_NODE_DNS_SITE_ZONES: every name in
	# the zone is the node), never the machine's resolver: site.test on both sides, an "external"
	# name that tells which site answered; and on the remote side mesh.test, the VK's WildcardDNS,
	# as the remote site's DNS would hold the ingress's wildcard record.
	# In the process layout the local site's DNS also holds mesh.test, the wildcard the inbound VK's
	# shadows dial: its names are the local node's bridge address, where TestMeshRealPodsInbound
	# runs the remote cluster's ingress controller (what the local nodes reach of the remote site).
	local_zones="site.test"
	[ "$layout" = helm ] || local_zones="site.test mesh.test"
	local_nodes=(IKM_REAL_NODE=1 IKM_NODE_TAINT=0 IKM_NODE_KUBE_PROXY=1 IKM_DNS_SERVICE_IP=$dns_ip "IKM_NODE_DNS_SITE_ZONES=$local_zones")
	remote_nodes=(IKM_REAL_NODE=1 "IKM_NODE_DNS_SITE_ZONES=mesh.test site.test")
	if [ "$layout" = helm ]; then
		local_nodes+=("IKM_NODE_REGISTRY=$registry_addr")
		remote_nodes+=("IKM_NODE_REGISTRY=$registry_addr")
	fi
	if [ "$scale_pods" -gt 0 ]; then
		# TestMeshScale: each real node runs scale_pods pods of the test besides its own, and the
		# shadow template's CPU request (50m: 100 shadows would ask 5 CPUs of this 2-CPU node)
		# becomes 10m, the mesh-agent's here, so that the scheduler, not the machine, is not the limit.
		local_nodes+=("IKM_NODE_MAX_PODS=$((scale_pods + 20))")
		remote_nodes+=("IKM_NODE_MAX_PODS=$((scale_pods + 20))")
		sed 's/^\( *cpu: \)50m$/\110m/' "$templates/shadow-pod.tmpl" >"$work/shadow-pod-scale.tmpl"
		grep -q '^ *cpu: 10m$' "$work/shadow-pod-scale.tmpl" || { log "shadow-pod.tmpl no longer requests cpu: 50m, which this script lowers for TestMeshScale"; exit 1; }
		log "TestMeshScale with $scale_pods pods: kubelet maxPods $((scale_pods + 20)) on both real nodes, the shadow template's CPU request 10m ($work/shadow-pod-scale.tmpl)"
	fi
fi
env "${local_nodes[@]}" IKM_CLUSTER_DIR="$work/local" IKM_CLUSTER_NAME=ikm-conformance-local IKM_KWOK_POD_CIDR=$pod_cidr IKM_SERVICE_CIDR=$service_cidr \
	test/testcluster/cluster.sh up
env "${remote_nodes[@]}" IKM_CLUSTER_DIR="$work/remote" IKM_CLUSTER_NAME=ikm-conformance-remote test/testcluster/cluster.sh up
plugin_env=()
suite_env=()
if [ "$real" = 1 ]; then
	# The VK routes the local real node's pod range into the mesh; the remote pods dial the tunnel by
	# its name, <host>.mesh.test, which the remote site's DNS (the remote node's CoreDNS) resolves to
	# the remote node's own bridge address, where Traefik serves the shadow Ingress. The
	# sidecars ask that DNS (mesh.tunnel_nameservers: what the remote kubelet's clusterDNS names;
	# the remote cluster has no kube-dns Service to discover) because the pods' resolv.conf names
	# the local DNS alone, reachable only through the mesh.
	pod_cidr=$(cat "$work/local/node/pod-cidr")
	remote_cidr=$(cat "$work/remote/node/pod-cidr")
	remote_dns=${remote_cidr%.0/24}.1
	tunnel_address=$remote_dns:80
	image_ref() { tar -xOf "bin/images/$1.tar" index.json | jq -er '.manifests[0].annotations["io.containerd.image.name"]'; }
	# The sidecar's memory limit raised from 256Mi to 768Mi: a netstack sidecar takes 35-46 KiB a
	# flow, and the real-pod tests hold 10,000 flows through it (docs/performance.md, netstack mode).
	# The tunnel's CA, standing in for the issuer cert-manager would use: the plugin's mesh.tunnel_ca
	# names it, the suite signs the shadow Ingresses' certificates with it.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=ikm conformance tunnel CA" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
		-keyout "$work/tunnel-ca.key" -out "$work/tunnel-ca.crt" 2>/dev/null
	# Inbound pods (annotated so) are published on the remote cluster's Traefik, IngressClass traefik.
	plugin_env=(MESH_TUNNEL_NAMESERVERS="$remote_dns" MESH_AGENT_IMAGE="$(image_ref mesh-agent)" MESH_TUNNEL_CA="$work/tunnel-ca.crt" MESH_INBOUND_INGRESS_CLASS=traefik
		MESH_AGENT_RESOURCES='{"requests":{"cpu":"10m","memory":"32Mi"},"limits":{"memory":"768Mi"}}')
	suite_env=(IKM_CONFORMANCE_REAL_MESH=1 IKM_CONFORMANCE_REAL_PODS=1 IKM_CONFORMANCE_KUBE_PROXY=1 IKM_CONFORMANCE_CLUSTER_DNS=1 IKM_CONFORMANCE_TUNNEL_ADDRESS="$tunnel_address" IKM_CONFORMANCE_REMOTE_DNS="$remote_dns"
		IKM_CONFORMANCE_KUBECTL="$cache/bin/current/kubectl" IKM_CONFORMANCE_TRAEFIK="$cache/bin/current/traefik"
		IKM_CONFORMANCE_TUNNEL_CA="$work/tunnel-ca.crt" IKM_CONFORMANCE_TUNNEL_CA_KEY="$work/tunnel-ca.key"
		IKM_CONFORMANCE_ECHO_IMAGE="$(image_ref echo-server)" IKM_CONFORMANCE_SHELL_IMAGE="$(image_ref shell)"
		IKM_CONFORMANCE_IPERF_IMAGE="$(image_ref iperf3)" IKM_CONFORMANCE_PROBE_IMAGE="$(image_ref netprobe)"
		IKM_CONFORMANCE_WIREGUARD_IMAGE="$(image_ref wireguard-go)")
	# The suite's shadow pods stay on kwok's nodes (real ones under eight cases at once outlast the
	# suite's waits on this machine); TestMeshRealPods cordons those and uncordons this one.
	"$cache/bin/current/kubectl" --kubeconfig "$work/local/kubeconfig" cordon ikm-conformance-local-node >/dev/null
	log "local pods on $pod_cidr, remote real pods on $remote_cidr; the ingress on $tunnel_address (*.mesh.test in the remote DNS $remote_dns)"
fi
local_kc=$work/local/kubeconfig
remote_kc=$work/remote/kubeconfig
kl() { "$cache/bin/current/kubectl" --kubeconfig "$local_kc" "$@"; }

# The DNS Service the VK names in the mesh (DNSServiceIP). The local real node made it, in front of its
# CoreDNS; on kwok alone nothing answers there, the address is what counts.
kl get -n kube-system service kube-dns >/dev/null 2>&1 || kl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $dns_ip
  selector: {k8s-app: kube-dns}
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
YAML

if [ "$real" = 1 ]; then
	# The netstack VK's mesh script dials wss://: mesh-script-ingress.tmpl as a VK with
	# Network.IngressTLS (InterLink PR #538, newer than this VK) renders it, IngressProtocol wss and
	# IngressPort 443.
	sed 's#(print .IngressProtocol "://" .IngressEndpoint ":" .IngressPort)#(print "wss://" .IngressEndpoint ":443")#' \
		"$templates/mesh-script-ingress.tmpl" >"$work/mesh-script-tls.tmpl"
	grep -q '"wss://"' "$work/mesh-script-tls.tmpl" || { log "mesh-script-ingress.tmpl no longer has the tunnel URL line this script rewrites"; exit 1; }
fi
if [ "$layout" = helm ]; then
	# Two releases of InterLink's chart: node vk-node (kernel mode) and vk-netstack (netstack).
	helm_install_local "$registry_addr" "$image_version" "$image_version"
	suite_env+=(IKM_CONFORMANCE_NETSTACK_VK_NODE=vk-netstack)
	# And the remote-site layout: the project's chart in the remote cluster behind its ingress.
	helm_remote_ingress
	helm_install_remote_plugin "$registry_addr" "$image_version" "$image_version"
else
	api_port=$(free_port)
	kubelet_port=$(free_port)
	sock=$work/plugin.sock

	log "starting interlink-k8s-plugin on unix://$sock against the remote cluster"
	# With the local kubeconfig, the plugin's sweeps run (every 5 s here): remote pods whose local pod is
	# gone, and the shadow Secrets the VK never deletes.
	env "${plugin_env[@]}" K8S_KUBECONFIG_PATH="$remote_kc" APP_SOCKET_ADDRESS="unix://$sock" APP_LOG_LEVEL=debug \
		OFFLOADING_LOCAL_KUBECONFIG_PATH="$local_kc" OFFLOADING_ORPHAN_SWEEP_INTERVAL=5s \
		bin/interlink-k8s-plugin >"$out/logs/plugin.log" 2>&1 &
	pids+=($!)

	cat >"$work/interlink.yaml" <<-YAML
	InterlinkAddress: "http://127.0.0.1"
	InterlinkPort: "$api_port"
	SidecarURL: "unix://$sock"
	SidecarPort: "0"
	VerboseLogging: true
	ErrorsOnlyLogging: false
	DataRootFolder: "$work/il/"
	YAML
	log "starting the InterLink API server on 127.0.0.1:$api_port ($il_dir/interlink)"
	INTERLINKCONFIGPATH=$work/interlink.yaml "$il_dir/interlink" >"$out/logs/interlink.log" 2>&1 &
	pids+=($!)

	shadow_template=$templates/shadow-pod.tmpl
	[ "$scale_pods" -eq 0 ] || shadow_template=$work/shadow-pod-scale.tmpl
	cat >"$work/vk.yaml" <<-YAML
	InterlinkURL: "http://127.0.0.1"
	InterlinkPort: "$api_port"
	VerboseLogging: true
	ErrorsOnlyLogging: false
	ServiceAccount: "default"
	Namespace: default
	VKTokenFile: ""
	DisableCSR: true
	Resources: {CPU: "100", Memory: "128Gi", Pods: "$((scale_pods + 100))"}
	HTTP: {Insecure: true}
	KubeletHTTP: {Insecure: true}
	Network:
	  FullMesh: true
	  WildcardDNS: mesh.test
	  WstunnelTemplatePath: $shadow_template
	  MeshScriptTemplatePath: $templates/mesh-script.tmpl
	  PodCIDRCluster: $pod_cidr
	  ServiceCIDR: $service_cidr
	  DNSServiceIP: $dns_ip
	YAML
	log "starting the virtual kubelet (node vk-node, kubelet port 127.0.0.1:$kubelet_port, $il_dir/virtual-kubelet)"
	KUBECONFIG=$local_kc NODENAME=vk-node CONFIGPATH=$work/vk.yaml POD_IP=127.0.0.1 \
		KUBELET_URL=127.0.0.1 KUBELET_PORT=$kubelet_port \
		"$il_dir/virtual-kubelet" >"$out/logs/virtual-kubelet.log" 2>&1 &
	pids+=($!)

	vk_nodes=(vk-node)
	if [ "$real" = 1 ]; then
		# A second VK, node vk-netstack, renders the netstack shadow template (the template is per VK):
		# TestMeshRealPodsRestricted offloads through it into namespaces enforcing Pod Security restricted.
		sed -e "s#WstunnelTemplatePath: .*#WstunnelTemplatePath: $templates/shadow-pod-netstack.tmpl#" \
			-e "s#MeshScriptTemplatePath: .*#MeshScriptTemplatePath: $work/mesh-script-tls.tmpl#" "$work/vk.yaml" >"$work/vk-netstack.yaml"
		kubelet_port2=$(free_port)
		log "starting a second virtual kubelet (node vk-netstack, kubelet port 127.0.0.1:$kubelet_port2) with the netstack shadow template"
		KUBECONFIG=$local_kc NODENAME=vk-netstack CONFIGPATH=$work/vk-netstack.yaml POD_IP=127.0.0.1 \
			KUBELET_URL=127.0.0.1 KUBELET_PORT=$kubelet_port2 \
			"$il_dir/virtual-kubelet" >"$out/logs/virtual-kubelet-netstack.log" 2>&1 &
		pids+=($!)
		vk_nodes+=(vk-netstack)
		suite_env+=(IKM_CONFORMANCE_NETSTACK_VK_NODE=vk-netstack)

		# A third VK, node vk-inbound, renders the inbound shadow template: its shadows dial the
		# offloaded pods' mesh-agents through the remote cluster's ingress (TestMeshRealPodsInbound).
		sed -e "s#WstunnelTemplatePath: .*#WstunnelTemplatePath: $templates/shadow-pod-inbound.tmpl#" "$work/vk.yaml" >"$work/vk-inbound.yaml"
		kubelet_port3=$(free_port)
		log "starting a third virtual kubelet (node vk-inbound, kubelet port 127.0.0.1:$kubelet_port3) with the inbound shadow template"
		KUBECONFIG=$local_kc NODENAME=vk-inbound CONFIGPATH=$work/vk-inbound.yaml POD_IP=127.0.0.1 \
			KUBELET_URL=127.0.0.1 KUBELET_PORT=$kubelet_port3 \
			"$il_dir/virtual-kubelet" >"$out/logs/virtual-kubelet-inbound.log" 2>&1 &
		pids+=($!)
		vk_nodes+=(vk-inbound)
		suite_env+=(IKM_CONFORMANCE_INBOUND_VK_NODE=vk-inbound IKM_CONFORMANCE_INBOUND_INGRESS="${pod_cidr%.0/24}.1:80")
		# And a fourth, node vk-inbound-netstack, the inbound template in netstack mode.
		sed -e "s#WstunnelTemplatePath: .*#WstunnelTemplatePath: $templates/shadow-pod-inbound-netstack.tmpl#" "$work/vk.yaml" >"$work/vk-inbound-netstack.yaml"
		kubelet_port4=$(free_port)
		log "starting a fourth virtual kubelet (node vk-inbound-netstack, kubelet port 127.0.0.1:$kubelet_port4) with the inbound netstack shadow template"
		KUBECONFIG=$local_kc NODENAME=vk-inbound-netstack CONFIGPATH=$work/vk-inbound-netstack.yaml POD_IP=127.0.0.1 \
			KUBELET_URL=127.0.0.1 KUBELET_PORT=$kubelet_port4 \
			"$il_dir/virtual-kubelet" >"$out/logs/virtual-kubelet-inbound-netstack.log" 2>&1 &
		pids+=($!)
		vk_nodes+=(vk-inbound-netstack)
		suite_env+=(IKM_CONFORMANCE_INBOUND_NETSTACK_VK_NODE=vk-inbound-netstack)
	fi

	for vk in "${vk_nodes[@]}"; do
		log "waiting for node $vk to be Ready"
		for i in $(seq 120); do
			kl get node "$vk" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True && break
			for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { log "a component exited early; see $out/logs"; tail -n 20 "$out"/logs/*.log >&2; exit 1; }; done
			[ "$i" -lt 120 ] || { log "$vk never became Ready; see $out/logs/virtual-kubelet*.log"; exit 1; }
			sleep 0.5
		done
	done
fi

log "environment up; running the suite"

tests='^TestConformance$'
if [ "$layout" = helm ]; then
	# The chain is the charts' pods: helm_report fails the run if one of their containers restarted.
	tests='^(TestConformance|TestTerminalStates|TestMeshRealPods|TestMeshRealPodsRestricted)$'
	chain=""
else
	chain="plugin=${pids[0]} interlink=${pids[1]} virtual-kubelet=${pids[2]}"
	if [ "$real" = 1 ]; then
		tests='^(TestConformance|TestTerminalStates|TestMeshRealPods|TestMeshRealPodsRestricted|TestMeshRealPodsInbound)$'
		chain="$chain virtual-kubelet-netstack=${pids[3]} virtual-kubelet-inbound=${pids[4]} virtual-kubelet-inbound-netstack=${pids[5]}"
	fi
fi
[ "$scale_pods" -eq 0 ] || tests='^TestMeshScale$'
tests=${IKM_CONFORMANCE_TESTS:-$tests}
# run_suite OUT TESTS [VAR=value...]: the suite binary against the chain, its report into OUT, the
# tests of the Go regexp TESTS, with the run's environment plus the variables given.
run_suite() {
	local dir=$1 run=$2
	shift 2
	env "${suite_env[@]}" IKM_CONFORMANCE_PIDS="$chain" \
		IKM_CONFORMANCE_LOCAL_KUBECONFIG="$local_kc" \
		IKM_CONFORMANCE_REMOTE_KUBECONFIG="$remote_kc" \
		IKM_CONFORMANCE_OUT="$dir" \
		IKM_CONFORMANCE_SERVICE_CIDR="$service_cidr" \
		IKM_CONFORMANCE_POD_CIDR="$pod_cidr" \
		IKM_CONFORMANCE_DNS_IP="$dns_ip" \
		IKM_CONFORMANCE_SCALE_PODS="$scale_pods" "$@" \
		"$out/conformance.test" -test.run "$run" -test.v -test.timeout "${IKM_CONFORMANCE_TIMEOUT:-25m}" -run-cases="${IKM_CONFORMANCE_RUN:-}"
}
run_suite "$out" "$tests" || suite=$?
if [ "$layout" = helm ] && [ -z "${IKM_CONFORMANCE_TESTS:-}" ]; then
	# The suite's pod cases again, through the remote-site layout: node vk-remote, whose API server
	# dials the plugin in the remote cluster (its report in $out/remote-plugin).
	log "the pod cases through the remote-site layout (node vk-remote, the plugin a pod of the remote cluster)"
	mkdir -p "$out/remote-plugin"
	run_suite "$out/remote-plugin" '^TestConformance$' IKM_CONFORMANCE_VK_NODE=vk-remote || suite=${suite:-$?}
fi
if [ "$layout" = helm ]; then
	helm_report || suite=${suite:-1}
	helm_uninstall || suite=${suite:-1}
	exit "${suite:-0}"
fi
# A process of the chain that died is the first thing to know about.
names=(plugin interlink virtual-kubelet virtual-kubelet-netstack virtual-kubelet-inbound virtual-kubelet-inbound-netstack)
for i in "${!pids[@]}"; do
	state=$(awk '{print $3}' "/proc/${pids[$i]}/stat" 2>/dev/null || echo gone)
	if [ "$state" = Z ] || [ "$state" = gone ]; then
		log "${names[$i]} exited during the suite; the end of its log ($out/logs/${names[$i]}.log):"
		grep -v 'level=debug' "$out/logs/${names[$i]}.log" | tail -n 25 >&2
	fi
done
exit "${suite:-0}"
