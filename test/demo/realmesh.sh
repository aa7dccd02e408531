# realmesh.sh, sourced by demo.sh as root once the plugin runs: the mesh as real pods. The remote
# cluster (demo.sh's) has a real node; a second control plane with its own real node plays the local
# cluster. This script plays InterLink's virtual kubelet: it makes the keys and the path prefix,
# applies the shadow pod rendered from the project's template (bin/manifests/shadow-pod.tmpl, from
# manifests/ by make manifests) in <ns>-wstunnel of the local cluster, and offloads a pod carrying the
# mesh annotation rendered from manifests/mesh-script.tmpl. Traefik on the remote node's bridge
# address is the local cluster's ingress controller (it reads the shadow Ingress); the plugin dials
# it there (mesh.tunnel_address). Nothing is routed between the two clusters' bridges.

genkey() { openssl genpkey -algorithm X25519 -outform DER | tail -c 32 | base64; }
# pubkey KEY: the X25519 public key of a base64 private key (wrapped in its PKCS#8 DER header).
pubkey() {
	{ printf '\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x6e\x04\x22\x04\x20'; base64 -d <<<"$1"; } |
		openssl pkey -inform DER -pubout -outform DER | tail -c 32 | base64
}
local_cluster=$PWD/.cache/demo/local
lk() { "$cache/bin/current/kubectl" --kubeconfig "$local_cluster/kubeconfig" "$@"; }
service_cidr=10.96.0.0/16
dns_ip=10.96.0.10

step "the local cluster: a second control plane with its own real node (no taint: its pods run for real), kube-proxy and CoreDNS behind the kube-dns Service $dns_ip"
IKM_CLUSTER_DIR=$local_cluster IKM_CLUSTER_NAME=ikm-demo-local IKM_REAL_NODE=1 IKM_NODE_TAINT=0 IKM_NODES=0 \
	IKM_NODE_KUBE_PROXY=1 IKM_SERVICE_CIDR=$service_cidr IKM_DNS_SERVICE_IP=$dns_ip test/testcluster/cluster.sh up
local_cidr=$(cat "$local_cluster/node/pod-cidr")
echo "local pods: $local_cidr on bridge ikm…; remote real pods: $remote_cidr; two bridges, no route between them"
lk get nodes -o wide
k get nodes -l ikm.interlink.dev/real-node=true -o wide

step "local pods: an echo-server (the target the offloaded pod will call) and a client with a shell"
echo_image=$(image_ref echo-server)
shell_image=$(image_ref shell)
lk create namespace demo >/dev/null
lk create namespace demo-wstunnel >/dev/null
lk -n demo run target --image="$echo_image" --image-pull-policy=Never --port=8080 --expose >/dev/null
lk -n demo run client --image="$shell_image" --image-pull-policy=Never --command -- sleep 3600 >/dev/null
lk -n demo wait --for=condition=Ready pod/target pod/client --timeout=120s
lk -n demo get pods -o wide

step "playing the VK: keys and prefix, then the shadow pod from the project's template, in demo-wstunnel"
pod_key=$(genkey)
shadow_key=$(genkey)
prefix=$(openssl rand -hex 16)
muid=$(cat /proc/sys/kernel/random/uuid)
jq -n --arg key "$shadow_key" --arg peer "$(pubkey "$pod_key")" --arg prefix "$prefix" \
	'{Name: "web-demo", Namespace: "demo-wstunnel", RandomPassword: $prefix, WGPrivateKey: $key,
	  ClientPublicKey: $peer, WildcardDNS: "mesh.test", ExposedPorts: [{Port: 8080, Name: "http", Protocol: "TCP"}]}' |
	go run ./test/demo/vkrender bin/manifests/shadow-pod.tmpl >.cache/demo/shadow.yaml
chmod 600 .cache/demo/shadow.yaml
lk apply -f .cache/demo/shadow.yaml
if ! lk -n demo-wstunnel wait --for=condition=Ready pod -l app.kubernetes.io/component=web-demo --timeout=120s; then
	echo "the shadow pod is not Ready; what it shows:" >&2
	lk -n demo-wstunnel describe pod -l app.kubernetes.io/component=web-demo | tail -25 >&2 || true
	lk -n demo-wstunnel logs deploy/web-demo --tail=30 >&2 || true
	exit 1
fi
shadow_ip=$(lk -n demo-wstunnel get pod -l app.kubernetes.io/component=web-demo -o jsonpath='{.items[0].status.podIP}')
shadow_node=$(lk -n demo-wstunnel get pod -l app.kubernetes.io/component=web-demo -o jsonpath='{.items[0].spec.nodeName}')
echo "shadow pod Ready on $shadow_node (a stock kubelet: no sysctl, NET_ADMIN and MKNOD only) at $shadow_ip: the offloaded pod's IP"
lk -n demo-wstunnel logs deploy/web-demo | grep -o 'msg="netfilter rules applied".*' | head -1 || true

step "the ingress controller: Traefik (its Kubernetes Ingress provider, as its Helm chart installs it) on the remote node's bridge ($tunnel_address) routes the shadow Ingress"
host=$(lk -n demo-wstunnel get ingress web-demo -o jsonpath='{.spec.rules[0].host}')
mkdir -p .cache/demo/traefik
lk apply -f test/testcluster/traefik.yaml >/dev/null
lk -n kube-system create token ikm-traefik --duration=2h | tr -d '\n' >.cache/demo/traefik/token
chmod 600 .cache/demo/traefik/token
cat >.cache/demo/traefik/kubeconfig <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$(lk config view --raw -o jsonpath='{.clusters[0].cluster.server}')", certificate-authority: "$(lk config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')"}}]
users: [{name: traefik, user: {tokenFile: "$PWD/.cache/demo/traefik/token"}}]
contexts: [{name: traefik, context: {cluster: local, user: traefik}}]
current-context: traefik
EOF
# Its API (for the route check) beside the tunnel, on the bridge address the cluster script made.
traefik_api=${tunnel_address%:*}:8080
env -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT KUBECONFIG="$PWD/.cache/demo/traefik/kubeconfig" \
	"$cache/bin/current/traefik" --global.checknewversion=false --global.sendanonymoususage=false --log.level=INFO --log.nocolor=true \
	--entrypoints.web.address="$tunnel_address" --entrypoints.traefik.address="$traefik_api" --api=true --api.insecure=true --api.dashboard=false \
	--providers.kubernetesingress=true --providers.kubernetesingress.ingressclass=traefik >.cache/demo/traefik.log 2>&1 &
mesh_pids+=($!)
routed=""
for _ in $(seq 120); do
	# Nothing answers until Traefik listens: curl's failure only means "not yet".
	routed=$({ curl -s "http://$traefik_api/api/http/services" || true; } | jq -r '.[] | select(.provider == "kubernetes") | .loadBalancer.servers[]?.url' 2>/dev/null | head -1 || true)
	[ -n "$routed" ] && break
	sleep 0.5
done
if [ -z "$routed" ]; then
	echo "Traefik did not route $host within 60 s; the end of .cache/demo/traefik.log:" >&2
	tail -20 .cache/demo/traefik.log >&2
	exit 1
fi
echo "Traefik routes Host $host → $routed (the shadow Service's endpoint, from its EndpointSlice)"

step "POST /create: a pod with the VK's mesh annotation (rendered from manifests/mesh-script.tmpl) gets mesh-agent as a native sidecar"
wgconfig=$(printf '[Interface]\nPrivateKey = %s\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.7.0.1/32,10.0.0.0/8,%s,%s\nEndpoint = 127.0.0.1:51821\nPersistentKeepalive = 25\n' \
	"$pod_key" "$(pubkey "$shadow_key")" "$local_cidr" "$service_cidr")
script=$(jq -n --arg wg "$wgconfig" --arg prefix "$prefix" --arg host "$host" --arg pods "$local_cidr" \
	--arg svcs "$service_cidr" --arg dns "$dns_ip" --arg iface "wg${muid:0:13}" \
	'{WGInterfaceName: $iface, WSTunnelExecutableURL: "", WireguardGoURL: "", WgToolURL: "", Slirp4netnsURL: "",
	  WGConfig: $wg, DNSServiceIP: $dns, RandomPassword: $prefix, IngressEndpoint: $host, WGMTU: 1280,
	  PodCIDRCluster: $pods, ServiceCIDR: $svcs, UnshareMode: "auto"}' |
	go run ./test/demo/vkrender manifests/mesh-script.tmpl)
mpod=$(jq -nc --arg uid "$muid" --arg script "$script" --arg echo "$echo_image" --arg shell "$shell_image" \
	'{pod: {metadata: {name: "web", namespace: "demo", uid: $uid, annotations: {"slurm-job.vk.io/pre-exec": $script}},
	  spec: {nodeSelector: {"ikm.interlink.dev/real-node": "true"}, terminationGracePeriodSeconds: 2,
	    tolerations: [{key: "ikm.interlink.dev/real-node", operator: "Exists"}],
	    containers: [{name: "web", image: $echo, imagePullPolicy: "IfNotPresent", ports: [{containerPort: 8080}]},
	                 {name: "shell", image: $shell, imagePullPolicy: "IfNotPresent", command: ["sleep", "3600"]}]}},
	  container: [{name: "web"}, {name: "shell"}]}')
api POST /create "$mpod"
echo
mns=$(k get pods -A -l "interlink.io/source.pod_uid=$muid" -o jsonpath='{.items[0].metadata.namespace}')
mname=$(k get pods -A -l "interlink.io/source.pod_uid=$muid" -o jsonpath='{.items[0].metadata.name}')
echo "remote pod $mns/$mname, its containers:"
k get pod -n "$mns" "$mname" -o json | jq -c '.spec.initContainers[], .spec.containers[] |
	{name, restartPolicy, startupProbe: .startupProbe.httpGet.path, add: .securityContext.capabilities.add, privileged: .securityContext.privileged}'
secret=$(k get secrets -n "$mns" -l "interlink.io/source.pod_uid=$muid" -o name | grep mesh-agent | head -1)
echo "$secret holds mesh.json (secrets hidden here):"
k get -n "$mns" "$secret" -o jsonpath='{.data.mesh\.json}' | base64 -d |
	jq -c '.privateKey="…" | .peerPublicKey="…" | .tunnel.pathPrefix="…"'
echo "occurrences of the key or the prefix in the remote pod: $(k get pod -n "$mns" "$mname" -o json | grep -c -F -e "$prefix" -e "$pod_key" || true)"

step "the offloaded pod runs on the remote real node; its apps start once mesh-agent's first handshake passes its startup probe"
k -n "$mns" wait --for=condition=Ready "pod/$mname" --timeout=180s
k -n "$mns" get pod "$mname" -o wide
k -n "$mns" logs "$mname" -c mesh-agent | grep -o 'msg="first handshake".*' | head -1 || true
echo "GET /status (what InterLink's VK sees: the local pod's containers only):"
api GET /status "[$(jq -c .pod <<<"$mpod")]" | jq -c '.[0].containers[] | {name, ready, running: (.state.running != null)}'

step "a local client pod asks the shadow pod's IP; the offloaded workload on the remote cluster answers"
get='printf "GET / HTTP/1.0\r\n\r\n" | nc -w 3 $0 8080 | tail -1'
# ask WANT IP EXEC...: run $get against IP with EXEC (a kubectl exec command line) until the answer
# matches WANT (at most 20 tries), and print the answer.
ask() {
	local want=$1 ip=$2 out
	shift 2
	for _ in $(seq 20); do
		out=$("$@" -- sh -c "$get" "$ip" 2>&1) && grep -q "$want" <<<"$out" && break
		sleep 1
	done
	echo "$out"
}
echo "$ kubectl -n demo exec client -- sh -c '${get//\$0/$shadow_ip}'"
ask 'host=web ' "$shadow_ip" lk -n demo exec client
echo "(host=web: the offloaded pod answered; client=10.7.0.1: the shadow's end of the tunnel)"

target_ip=$(lk -n demo get pod target -o jsonpath='{.status.podIP}')
step "the offloaded pod calls the local pod $target_ip through the mesh; the local pod sees the shadow pod's IP"
echo "$ kubectl -n $mns exec $mname -c shell -- sh -c '${get//\$0/$target_ip}'     (on the remote cluster)"
ask 'host=target ' "$target_ip" k -n "$mns" exec "$mname" -c shell
echo "(client=$shadow_ip:…: the request left through the shadow pod)"

target_svc=$(lk -n demo get service target -o jsonpath='{.spec.clusterIP}')
step "the offloaded pod calls the local Service target ($target_svc) through the mesh and the local node's kube-proxy"
echo "$ kubectl -n $mns exec $mname -c shell -- sh -c '${get//\$0/$target_svc}'     (on the remote cluster)"
ask 'host=target ' "$target_svc" k -n "$mns" exec "$mname" -c shell
echo "(the Service IP is routed into the mesh; the shadow pod sends it on to kube-proxy, which masquerades every Service flow)"

step "the offloaded pod calls the local Service by its name: the local cluster's DNS answers through the mesh"
echo "$ kubectl -n $mns exec $mname -c shell -- cat /etc/resolv.conf     (on the remote cluster)"
k -n "$mns" exec "$mname" -c shell -- cat /etc/resolv.conf
echo "$ kubectl -n $mns exec $mname -c shell -- nslookup target.demo.svc.cluster.local"
k -n "$mns" exec "$mname" -c shell -- nslookup target.demo.svc.cluster.local | grep -A1 '^Name:' || true
echo "$ kubectl -n $mns exec $mname -c shell -- sh -c '${get//\$0/target}'"
ask 'host=target ' target k -n "$mns" exec "$mname" -c shell
echo "(mesh.dns_mode local: the pod's nameserver is the local kube-dns Service $dns_ip, its search list the local namespace's; the local CoreDNS answered $target_svc)"

step "POST /delete and the shadow objects go: the remote pod, its mesh Secret, the shadow pod"
api POST /delete "$(jq -c .pod <<<"$mpod")" >/dev/null
lk delete -f .cache/demo/shadow.yaml --wait=false >/dev/null
k -n "$mns" wait --for=delete "pod/$mname" --timeout=60s >/dev/null 2>&1 || true
echo "remote objects left for uid $muid: $(k get pods,secrets -A -l "interlink.io/source.pod_uid=$muid" -o name | wc -l)"
echo "logs: .cache/demo/{plugin,traefik}.log; kubectl logs of the shadow pod and of mesh-agent on either cluster"
