# helm-layout.sh: sourced by run.sh for `make conformance-helm` (IKM_CONFORMANCE_LAYOUT=helm). The
# chain runs the way InterLink's users install it: `helm install` of InterLink's own chart
# (INTERLINK_CHART_DIR) into the local cluster with deploy/helm/interlink-values.yaml, so the virtual
# kubelet, InterLink's API server and interlink-k8s-plugin are containers of one real pod on the
# local real node, pulling their images from the test registry (test/registry): the project's
# images from `make images`, and test images of InterLink's binaries (interlink-images.yaml).
#
# What differs from a site's install, and why:
#   - the images come from a registry on 127.0.0.1 (the nodes' containerd reach it; nothing leaves
#     the machine); the chart pulls with imagePullPolicy: Always.
#   - the plugin reaches the remote apiserver at the local node's bridge address, where the remote
#     apiserver also listens (0.0.0.0): the remote kubeconfig in the Secret names that address and
#     tls-server-name localhost (a SAN of the test apiserver's certificate).
#   - the VK serves its kubelet port with its own certificate (disableCSR: nothing approves a
#     kubelet-serving CSR here) and the pod runs on the cordoned local real node (a toleration).
#   - two releases of the chart, as a site with both shadow modes would run two VKs: "interlink"
#     (node vk-node, the kernel-mode template) and "interlink-netstack" (node vk-netstack, the
#     netstack template and the wss:// mesh script), in one namespace.
# Everything else is the values file a user is told to use, plus --set lines.
#
# The remote-site layout, beside them (docs/install.md, "The plugin at the remote site"): the
# project's chart (deploy/helm/interlink-k8s-plugin) in the remote cluster, the plugin a pod on the
# remote real node with in-cluster credentials and the chart's least-privilege RBAC, its API behind
# the chart's Ingress; a third release of InterLink's chart, "interlink-remote-plugin" (node
# vk-remote), with interlink-remote-plugin.yaml over the same values: the VK and the API server,
# which dials the plugin's endpoint over TCP. What differs from a site's install, and why:
#   - no kube-proxy on the remote node (the local node runs the machine's one: both would share the
#     host's tables), so the chart's env value gives the plugin KUBERNETES_SERVICE_HOST and _PORT
#     naming the remote node's address, where the apiserver listens too and which its certificate
#     names (cluster.sh): client-go's in-cluster configuration, with the pod's ServiceAccount token
#     and CA, as through the kubernetes Service.
#   - the remote site's ingress controller is Traefik as a host process (as in the mesh tests)
#     watching the remote cluster's Ingresses, on the local node's bridge address port 80: what the
#     local pods reach of the remote site; plugin.site.test resolves there through the local node's
#     DNS (its site.test zone). Plain HTTP, as at a site: InterLink's API server dials only
#     unix:// and http:// plugin endpoints (with https:// it exits, "Sidecar URL should either
#     start per unix:// or http://", seen here); docs/install.md says how a site keeps it private.

helm_ns=interlink
helm_chart=${INTERLINK_CHART_DIR:-$repo/../shared/interlink-helm-chart/interlink}

# helm_chart_check fails early, before any cluster starts, when the chart is not there.
helm_chart_check() {
	[ -f "$helm_chart/Chart.yaml" ] || { log "INTERLINK_CHART_DIR=$helm_chart holds no chart (Chart.yaml): point it at InterLink's chart, interlink-helm-chart/interlink"; exit 2; }
}
# release:nodeName pairs; helm_install_local and helm_uninstall take them in this order. The last
# is the remote-site layout's (helm_install_remote_plugin installs it).
helm_releases=(interlink:vk-node interlink-netstack:vk-netstack interlink-remote-plugin:vk-remote)
# The project's chart in the remote cluster: release, namespace, the plugin Ingress's host.
remote_release=interlink-k8s-plugin
remote_ns=interlink
remote_plugin_host=plugin.site.test

kr() { "$cache/bin/current/kubectl" --kubeconfig "$remote_kc" "$@"; }

# helm_registry starts the test registry; registry_addr is its host:port.
helm_registry() {
	go build -o "$out/registry" ./test/registry
	"$out/registry" -dir "$work/registry" -addr-file "$work/registry.addr" >"$out/logs/registry.log" 2>&1 &
	pids+=($!)
	local i
	for i in $(seq 100); do
		[ -s "$work/registry.addr" ] && break
		kill -0 "${pids[-1]}" 2>/dev/null || { log "the test registry exited:"; cat "$out/logs/registry.log" >&2; exit 1; }
		sleep 0.1
	done
	[ -s "$work/registry.addr" ] || { log "the test registry never listened"; exit 1; }
	registry_addr=$(cat "$work/registry.addr")
	log "the test registry listens on $registry_addr (blobs in $work/registry)"
}

# helm_push_images pushes the project's images (bin/images) and InterLink's test images into the
# registry at $1; the InterLink images' tag is $2.
helm_push_images() {
	local reg=$1 tag=$2
	log "pushing the project's images to the test registry $reg"
	REGISTRY=$reg/interlink-k8s-mesh go run ./cmd/ikm-images push >"$out/logs/push.log" 2>&1 ||
		{ tail -n 20 "$out/logs/push.log" >&2; exit 1; }
	log "test images of InterLink's VK and API server from $il_dir (the project's image builder), into the test registry"
	INTERLINK_BIN_DIR=$il_dir VERSION=$tag SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s) \
		go run ./cmd/ikm-images build --spec test/conformance/interlink-images.yaml --out "$work/interlink-images" >>"$out/logs/push.log" 2>&1 ||
		{ tail -n 20 "$out/logs/push.log" >&2; exit 1; }
	go run ./cmd/ikm-images push --spec test/conformance/interlink-images.yaml --out "$work/interlink-images" --registry "$reg/interlink" >>"$out/logs/push.log" 2>&1 ||
		{ tail -n 20 "$out/logs/push.log" >&2; exit 1; }
}

# helm_install_local installs InterLink's chart into the local cluster, the plugin inside its pod, and
# waits for the VK's node. $1: the registry, $2: the project's image tag, $3: InterLink's.
helm_install_local() {
	local reg=$1 tag=$2 il_tag=$3 chart=$helm_chart
	local helm_bin=$cache/bin/current/helm local_node_ip remote_server remote_cluster
	[ -n "$tag" ] && [ -n "$il_tag" ] || { log "no image tag to install (make images' archives name none)"; exit 1; }
	local_node_ip=${pod_cidr%.0/24}.1
	# The remote kubeconfig, self-contained, reaching the remote apiserver where the pod can: the
	# local node's bridge address (a pod has no other route out).
	remote_server=$(kr config view --minify -o jsonpath='{.clusters[0].cluster.server}')
	remote_cluster=$(kr config view --minify -o jsonpath='{.clusters[0].name}')
	kr config view --minify --flatten --raw >"$work/remote-in-pod.kubeconfig"
	"$cache/bin/current/kubectl" --kubeconfig "$work/remote-in-pod.kubeconfig" config set-cluster "$remote_cluster" \
		--server "https://$local_node_ip:${remote_server##*:}" --tls-server-name localhost >/dev/null

	log "InterLink's chart ($chart) into namespace $helm_ns of the local cluster, with deploy/helm/interlink-values.yaml: releases ${helm_releases[*]}"
	kl create namespace "$helm_ns" >/dev/null
	kl -n "$helm_ns" create secret generic interlink-k8s-remote \
		--from-file=kubeconfig="$work/remote-in-pod.kubeconfig" --from-file=tunnel-ca.crt="$work/tunnel-ca.crt" >/dev/null
	kl -n "$helm_ns" create configmap interlink-k8s-mesh-script --from-file=custom-mesh.sh="$templates/mesh-script.tmpl" >/dev/null
	kl -n "$helm_ns" create configmap interlink-k8s-mesh-script-tls --from-file=custom-mesh.sh="$work/mesh-script-tls.tmpl" >/dev/null
	# The pods' ServiceAccounts (the chart names each after its nodeName) get the two roles the
	# project ships for this layout, as install.md says: the VK creates the shadows' Secrets (the
	# chart's own role may not), the plugin's sweeps read the local cluster.
	local sas=() r
	for r in "${helm_releases[@]}"; do sas+=(--serviceaccount="$helm_ns:${r#*:}"); done
	kl apply -f "$templates/vk-shadow-secrets-rbac.yaml" -f "$templates/local-sweep-rbac.yaml" >/dev/null
	kl create clusterrolebinding interlink-k8s-vk-shadow-secrets --clusterrole=interlink-k8s-vk-shadow-secrets "${sas[@]}" >/dev/null
	kl create clusterrolebinding interlink-k8s-plugin-sweep --clusterrole=interlink-k8s-plugin-sweep "${sas[@]}" >/dev/null

	# The run's own settings (as run.sh gives the host-process plugin), over the values file's.
	cat >"$work/helm-test-values.yaml" <<YAML
interlink:
  image: $reg/interlink/interlink:$il_tag
virtualNode:
  image: $reg/interlink/virtual-kubelet:$il_tag
  disableCSR: true
  resources: {CPUs: 100, memGiB: 128, pods: 100}
  network:
    wildcardDNS: mesh.test
    podCIDRCluster: $pod_cidr
    serviceCIDR: $service_cidr
    dnsServiceIP: $dns_ip
podScheduling:
  nodeSelector: {kubernetes.io/hostname: ikm-conformance-local-node}
  tolerations: [{key: node.kubernetes.io/unschedulable, operator: Exists, effect: NoSchedule}]
plugin:
  image: $reg/interlink-k8s-mesh/interlink-k8s-plugin:$tag
  config: |
    app:
      socket_address: unix:///var/run/plugin.sock
      log_level: debug
    k8s:
      kubeconfig_path: /etc/interlink/remote/kubeconfig
    offloading:
      namespace_prefix: offloading
      local_in_cluster: true
      orphan_sweep_interval: 5s
    mesh:
      enabled: true
      agent_image: $reg/interlink-k8s-mesh/mesh-agent:$tag
      agent_image_pull_policy: IfNotPresent
      agent_resources: {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "768Mi"}}
      dns_mode: local
      cluster_domain: cluster.local
      tunnel_nameservers: "$remote_dns"
      tunnel_ca: /etc/interlink/remote/tunnel-ca.crt
YAML
	local release node template script
	for r in "${helm_releases[@]}"; do
		release=${r%%:*} node=${r#*:} template=$templates/shadow-pod.tmpl script=interlink-k8s-mesh-script
		[ "$node" != vk-remote ] || continue
		if [ "$node" = vk-netstack ]; then template=$templates/shadow-pod-netstack.tmpl script=interlink-k8s-mesh-script-tls; fi
		log "helm install $release: node $node, template ${template##*/}, mesh script from ConfigMap $script"
		"$helm_bin" --kubeconfig "$local_kc" install "$release" "$chart" -n "$helm_ns" \
			-f deploy/helm/interlink-values.yaml -f "$work/helm-test-values.yaml" --set nodeName="$node" \
			--set virtualNode.network.meshScriptConfigMapName="$script" \
			--set-file virtualNode.network.customTemplate="$template" >>"$out/logs/helm-install.log" 2>&1 ||
			{ log "helm install $release failed:"; tail -n 30 "$out/logs/helm-install.log" >&2; exit 1; }
	done
	log "waiting for the charts' pods (VK, API server, plugin) to run and for their nodes to be Ready (image pulls: about 1 min)"
	for r in "${helm_releases[@]}"; do
		[ "${r#*:}" = vk-remote ] || helm_wait_node "${r#*:}"
	done
}

# helm_wait_node waits up to 2 min for the VK's node $1 to be Ready, printing the charts' pods
# every 10 s; it dumps what there is to see and exits if the node never is.
helm_wait_node() {
	local node=$1 i
	for i in $(seq 240); do
		kl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True && break
		if [ $((i % 20)) = 0 ]; then
			log "  $((i / 2)) s: $(kl -n "$helm_ns" get pods -o jsonpath='{range .items[*]}{.metadata.name} {.status.phase} {range .status.containerStatuses[*]}{.name}={.ready}/{.restartCount} {end}{end}' 2>/dev/null)"
		fi
		[ "$i" -lt 240 ] || { log "node $node never became Ready"; helm_dump; [ "$node" != vk-remote ] || remote_dump; exit 1; }
		sleep 0.5
	done
	log "node $node Ready"
}

# helm_remote_ingress starts Traefik as the remote site's ingress controller: the remote
# cluster's Ingresses of class traefik (its ServiceAccount from test/testcluster/traefik.yaml, as
# its chart makes it), served on the local node's bridge address, port 80.
helm_remote_ingress() {
	local dir=$work/remote-traefik local_node_ip=${pod_cidr%.0/24}.1 server api i
	mkdir -p "$dir"
	kr apply -f test/testcluster/traefik.yaml >/dev/null
	server=$(kr config view --minify -o jsonpath='{.clusters[0].cluster.server}')
	kr config view --minify --flatten --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$dir/ca.crt"
	kr -n kube-system create token ikm-traefik --duration 4h >"$dir/token"
	cat >"$dir/kubeconfig" <<-YAML
	apiVersion: v1
	kind: Config
	clusters: [{name: remote, cluster: {server: "$server", certificate-authority: "$dir/ca.crt"}}]
	users: [{name: traefik, user: {tokenFile: "$dir/token"}}]
	contexts: [{name: traefik, context: {cluster: remote, user: traefik}}]
	current-context: traefik
	YAML
	api=127.0.0.1:$(free_port)
	log "Traefik for the remote cluster's Ingresses on $local_node_ip:80 (log: $out/logs/remote-traefik.log)"
	env -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT KUBECONFIG="$dir/kubeconfig" "$cache/bin/current/traefik" \
		--global.checknewversion=false --global.sendanonymoususage=false --log.level=INFO --log.nocolor=true \
		--entrypoints.web.address="$local_node_ip:80" --entrypoints.traefik.address="$api" --ping=true \
		--providers.kubernetesingress=true --providers.kubernetesingress.ingressclass=traefik >"$out/logs/remote-traefik.log" 2>&1 &
	pids+=($!)
	for i in $(seq 300); do
		[ "$(curl -fsS "http://$api/ping" 2>/dev/null)" = OK ] && return
		kill -0 "${pids[-1]}" 2>/dev/null || { log "Traefik exited:"; tail -n 20 "$out/logs/remote-traefik.log" >&2; exit 1; }
		sleep 0.1
	done
	log "Traefik's /ping did not answer within 30 s"
	exit 1
}

# helm_install_remote_plugin installs the project's chart into the remote cluster, then InterLink's
# chart (release interlink-remote-plugin, node vk-remote) into the local one, its API server
# dialing the plugin through the remote Ingress, and waits for the VK's node. $1: the registry,
# $2: the project's image tag, $3: InterLink's.
helm_install_remote_plugin() {
	local reg=$1 tag=$2 il_tag=$3 helm_bin=$cache/bin/current/helm remote_node_ip=${remote_cidr%.0/24}.1 server
	server=$(kr config view --minify -o jsonpath='{.clusters[0].cluster.server}')
	cat >"$work/remote-plugin-values.yaml" <<-YAML
	image:
	  repository: $reg/interlink-k8s-mesh/interlink-k8s-plugin
	  tag: "$tag"
	config:
	  app: {socket_address: http://0.0.0.0, socket_port: 4000, log_level: debug}
	  offloading: {namespace_prefix: offloading}
	  mesh:
	    enabled: true
	    agent_image: $reg/interlink-k8s-mesh/mesh-agent:$tag
	    agent_image_pull_policy: IfNotPresent
	    agent_resources: {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "768Mi"}}
	    dns_mode: local
	    cluster_domain: cluster.local
	    tunnel_nameservers: "$remote_dns"
	ingress: {enabled: true, className: traefik, host: $remote_plugin_host}
	env:
	  - {name: KUBERNETES_SERVICE_HOST, value: "$remote_node_ip"}
	  - {name: KUBERNETES_SERVICE_PORT, value: "${server##*:}"}
	nodeSelector: {kubernetes.io/hostname: ikm-conformance-remote-node}
	tolerations: [{key: ikm.interlink.dev/real-node, operator: Exists, effect: NoSchedule}]
	YAML
	log "the project's chart (deploy/helm/interlink-k8s-plugin) into namespace $remote_ns of the remote cluster: in-cluster credentials, Ingress $remote_plugin_host"
	"$helm_bin" --kubeconfig "$remote_kc" install "$remote_release" deploy/helm/interlink-k8s-plugin -n "$remote_ns" --create-namespace \
		-f "$work/remote-plugin-values.yaml" --wait --timeout 3m >>"$out/logs/helm-install.log" 2>&1 ||
		{ log "helm install $remote_release (remote cluster) failed:"; tail -n 30 "$out/logs/helm-install.log" >&2; remote_dump; exit 1; }
	log "helm install interlink-remote-plugin: node vk-remote, the API server dialing http://$remote_plugin_host:80"
	"$helm_bin" --kubeconfig "$local_kc" install interlink-remote-plugin "$helm_chart" -n "$helm_ns" \
		-f deploy/helm/interlink-values.yaml -f deploy/helm/interlink-remote-plugin.yaml -f "$work/helm-test-values.yaml" \
		--set plugin.enabled=false --set nodeName=vk-remote \
		--set interlink.pluginEndpoint.url="http://$remote_plugin_host" --set interlink.pluginEndpoint.port=80 \
		--set virtualNode.network.meshScriptConfigMapName=interlink-k8s-mesh-script \
		--set-file virtualNode.network.customTemplate="$templates/shadow-pod.tmpl" >>"$out/logs/helm-install.log" 2>&1 ||
		{ log "helm install interlink-remote-plugin failed:"; tail -n 30 "$out/logs/helm-install.log" >&2; exit 1; }
	helm_wait_node vk-remote
}

# remote_dump writes the remote plugin pod's description and log into $out/logs.
remote_dump() {
	kr --request-timeout=10s -n "$remote_ns" describe pods >"$out/logs/remote-plugin-pod.txt" 2>&1 || true
	kr --request-timeout=10s -n "$remote_ns" logs deploy/"$remote_release" >"$out/logs/remote-plugin.log" 2>&1 || true
	kr --request-timeout=10s -n "$remote_ns" logs deploy/"$remote_release" --previous >"$out/logs/remote-plugin.previous.log" 2>/dev/null || rm -f "$out/logs/remote-plugin.previous.log"
	log "the remote plugin pod's description and log: $out/logs/remote-plugin*"
}

# helm_pod prints the name of the pod of the release whose nodeName is $1.
helm_pod() { kl -n "$helm_ns" get pods -l app="$1" -o jsonpath='{.items[0].metadata.name}'; }

# helm_dump writes each chart pod's description and its containers' logs into $out/logs.
helm_dump() {
	local r node pod c
	for r in "${helm_releases[@]}"; do
		node=${r#*:}
		pod=$(kl --request-timeout=10s -n "$helm_ns" get pods -l app="$node" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null) || continue
		[ -n "$pod" ] || continue
		kl --request-timeout=10s -n "$helm_ns" describe pod "$pod" >"$out/logs/chart-$node-pod.txt" 2>&1 || true
		for c in vk interlink plugin; do
			[ "$node/$c" != vk-remote/plugin ] || continue
			kl --request-timeout=10s -n "$helm_ns" logs "$pod" -c "$c" >"$out/logs/chart-$node-$c.log" 2>&1 || true
			kl --request-timeout=10s -n "$helm_ns" logs "$pod" -c "$c" --previous >"$out/logs/chart-$node-$c.previous.log" 2>/dev/null || rm -f "$out/logs/chart-$node-$c.previous.log"
		done
	done
	log "the chart pods' descriptions and logs: $out/logs/chart-*"
}

# pod_report CLIENT NS POD HEADING adds HEADING and the pod's containers (ready, restarts, image
# and digest) to the report, and its restarts to $total. CLIENT: kl or kr.
pod_report() {
	local client=$1 ns=$2 pod=$3 heading=$4 restarts
	{
		echo
		echo "$heading"
		"$client" -n "$ns" get pod "$pod" -o jsonpath='{range .status.containerStatuses[*]}{.name}{"\t"}{.ready}{"\t"}{.restartCount}{"\t"}{.image}{"\t"}{.imageID}{"\n"}{end}' |
			awk -F'\t' 'BEGIN { printf "%-10s %-6s %-8s %s\n", "CONTAINER", "READY", "RESTARTS", "IMAGE (DIGEST)" }
				{ d = $5; sub(/.*@/, "", d); printf "%-10s %-6s %-8s %s (%s)\n", $1, $2, $3, $4, d }'
	} | tee -a "$out/chart-pods.txt"
	restarts=$("$client" -n "$ns" get pod "$pod" -o jsonpath='{range .status.containerStatuses[*]}{.restartCount}{"\n"}{end}' | awk '{s += $1} END {print s + 0}') ||
		{ log "cannot read the restarts of $pod"; return 1; }
	total=$((total + restarts))
}

# helm_report prints each chart pod's containers (node, image digest, restarts), the remote
# plugin's pod too, and fails if one restarted during the run.
helm_report() {
	local r node pod total=0
	: >"$out/chart-pods.txt"
	for r in "${helm_releases[@]}"; do
		node=${r#*:}
		pod=$(helm_pod "$node") && [ -n "$pod" ] || { log "no pod of release ${r%%:*} (node $node) to report"; helm_dump; return 1; }
		pod_report kl "$helm_ns" "$pod" "InterLink's chart, release ${r%%:*}: pod $helm_ns/$pod on node $(kl -n "$helm_ns" get pod "$pod" -o jsonpath='{.spec.nodeName}'), serving the VK's node $node" || return 1
	done
	# The remote-site layout's plugin: the project's chart's pod in the remote cluster.
	pod=$(kr -n "$remote_ns" get pods -l app.kubernetes.io/instance="$remote_release" -o jsonpath='{.items[0].metadata.name}') && [ -n "$pod" ] ||
		{ log "no pod of the project's chart in the remote cluster to report"; remote_dump; return 1; }
	pod_report kr "$remote_ns" "$pod" "The project's chart in the remote cluster, release $remote_release: pod $remote_ns/$pod on node $(kr -n "$remote_ns" get pod "$pod" -o jsonpath='{.spec.nodeName}'), serving vk-remote's API server through Ingress $remote_plugin_host" || return 1
	helm_dump
	remote_dump
	[ "$total" = 0 ] || { log "containers of the charts' pods restarted during the run ($total restarts): see $out/logs/chart-*.previous.log and remote-plugin.previous.log"; return 1; }
}

# helm_uninstall removes the releases and checks they left nothing behind (but the VKs' Nodes, see
# below); then removes what the run itself made for the chart.
helm_uninstall() {
	local left i r nodes=()
	for r in "${helm_releases[@]}"; do
		nodes+=("${r#*:}")
		log "helm uninstall ${r%%:*}"
		"$cache/bin/current/helm" --kubeconfig "$local_kc" uninstall "${r%%:*}" -n "$helm_ns" --wait --timeout 2m >>"$out/logs/helm-install.log" 2>&1 ||
			{ log "helm uninstall ${r%%:*} failed:"; tail -n 20 "$out/logs/helm-install.log" >&2; return 1; }
	done
	for i in $(seq 60); do
		[ -z "$(kl -n "$helm_ns" get pods -o name 2>/dev/null)" ] && break
		sleep 1
	done
	# Everything in the namespace but what the run made before the installs, and the cluster-wide
	# objects named after the charts' nodeNames.
	local in_ns cluster_wide
	in_ns=$(kl -n "$helm_ns" get all,configmaps,secrets,serviceaccounts,roles,rolebindings,leases -o name) &&
		cluster_wide=$(kl get clusterroles,clusterrolebindings -o name) ||
		{ log "cannot list what helm uninstall left"; return 1; }
	left=$( {
		grep -v -x -e secret/interlink-k8s-remote -e configmap/interlink-k8s-mesh-script -e configmap/interlink-k8s-mesh-script-tls \
			-e configmap/kube-root-ca.crt -e serviceaccount/default <<<"$in_ns" || true
		grep -e '/vk-node' -e '/vk-netstack' -e '/vk-remote' <<<"$cluster_wide" || true
	})
	if [ -n "$left" ]; then
		log "helm uninstall left these objects of the releases:"
		echo "$left" >&2
		return 1
	fi
	# The project's chart in the remote cluster: nothing of it may stay, not even a Node.
	log "helm uninstall $remote_release (remote cluster)"
	"$cache/bin/current/helm" --kubeconfig "$remote_kc" uninstall "$remote_release" -n "$remote_ns" --wait --timeout 2m >>"$out/logs/helm-install.log" 2>&1 ||
		{ log "helm uninstall $remote_release failed:"; tail -n 20 "$out/logs/helm-install.log" >&2; return 1; }
	# The Deployment is gone; its pod stops on its own (SIGTERM).
	for i in $(seq 60); do
		[ -z "$(kr -n "$remote_ns" get pods -o name 2>/dev/null)" ] && break
		sleep 1
	done
	log "the remote plugin's pod gone $i s after the uninstall"
	in_ns=$(kr -n "$remote_ns" get all,ingresses,configmaps,secrets,serviceaccounts,roles,rolebindings -o name) &&
		cluster_wide=$(kr get clusterroles,clusterrolebindings -o name) ||
		{ log "cannot list what helm uninstall left in the remote cluster"; return 1; }
	left=$( {
		grep -v -x -e configmap/kube-root-ca.crt -e serviceaccount/default <<<"$in_ns" || true
		grep -e "/$remote_release" <<<"$cluster_wide" || true
	})
	if [ -n "$left" ]; then
		log "helm uninstall $remote_release left these objects in the remote cluster:"
		echo "$left" >&2
		return 1
	fi
	log "helm uninstall $remote_release left nothing in the remote cluster"
	kr delete namespace "$remote_ns" --wait=false >/dev/null
	# The VKs' Nodes: the chart's pre-delete hook deletes each with a Job running
	# bitnami/kubectl:latest, an image this machine cannot pull (docs/install.md); they may stay here.
	left=$(kl get nodes "${nodes[@]}" -o name --ignore-not-found 2>/dev/null | tr '\n' ' ')
	if [ -n "$left" ]; then
		log "helm uninstall left nothing of the releases but the VKs' Nodes ($left), which the chart's pre-delete hook deletes with an image this machine cannot pull (bitnami/kubectl:latest)"
	else
		log "helm uninstall left nothing of the releases"
	fi
	kl delete clusterrolebinding interlink-k8s-plugin-sweep interlink-k8s-vk-shadow-secrets >/dev/null
	kl delete -f "$templates/local-sweep-rbac.yaml" -f "$templates/vk-shadow-secrets-rbac.yaml" >/dev/null
	kl delete namespace "$helm_ns" --wait=false >/dev/null
}
