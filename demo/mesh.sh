# mesh.sh, sourced by demo.sh once the plugin runs: a pod carrying the VK's mesh annotation is
# offloaded with its mesh-agent sidecar; then, in network namespaces standing in for the two
# clusters, shadow-agent and mesh-agent run with exactly the configuration the plugin wrote, and
# a local client reaches the offloaded workload on its shadow pod's IP. Needs root.

genkey() { openssl genpkey -algorithm X25519 -outform DER | tail -c 32 | base64; }
# pubkey KEY: the X25519 public key of a base64 private key (wrapped in its PKCS#8 DER header).
pubkey() {
	{ printf '\x30\x2e\x02\x01\x00\x30\x05\x06\x03\x2b\x65\x6e\x04\x22\x04\x20'; base64 -d <<<"$1"; } |
		openssl pkey -inform DER -pubout -outform DER | tail -c 32 | base64
}

step "8/10 POST /create: a pod with the VK's mesh annotation gets mesh-agent as a native sidecar"
pod_key=$(genkey)
shadow_key=$(genkey)
prefix=$(openssl rand -hex 16)
muid=$(cat /proc/sys/kernel/random/uuid)
spec=$(jq -nc --arg pk "$pod_key" --arg peer "$(pubkey "$shadow_key")" --arg prefix "$prefix" \
	'{version: "v1", privateKey: $pk, peerPublicKey: $peer, routes: ["10.244.0.0/24"],
	  tunnel: {url: "ws://192.168.50.1:28080", pathPrefix: $prefix}}')
mpod=$(jq -nc --arg uid "$muid" --arg spec "$spec" \
	'{pod: {metadata: {name: "web", namespace: "demo", uid: $uid,
	    annotations: {"mesh.interlink-k8s-mesh.io/spec": $spec}},
	  spec: {containers: [{name: "web", image: "nginx:1.27"}]}},
	  container: [{name: "web"}]}')
api POST /create "$mpod"
echo
mns=$(k get pods -A -l "interlink.io/source.pod_uid=$muid" -o jsonpath='{.items[0].metadata.namespace}')
mname=$(k get pods -A -l "interlink.io/source.pod_uid=$muid" -o jsonpath='{.items[0].metadata.name}')
echo "remote pod $mns/$mname, its containers:"
k get pod -n "$mns" "$mname" -o json | jq -c '.spec.initContainers[], .spec.containers[] |
	{name, restartPolicy, startupProbe: .startupProbe.httpGet.path, add: .securityContext.capabilities.add, privileged: .securityContext.privileged}'
secret=$(k get secrets -n "$mns" -l "interlink.io/source.pod_uid=$muid" -o name | grep mesh-agent | head -1)
k get -n "$mns" "$secret" -o jsonpath='{.data.mesh\.json}' | base64 -d >.cache/demo/mesh.json
chmod 600 .cache/demo/mesh.json
echo "$secret holds mesh.json (secrets hidden here):"
jq -c '.privateKey="…" | .peerPublicKey="…" | .tunnel.pathPrefix="…"' .cache/demo/mesh.json
echo "occurrences of the key or the prefix in the remote pod: $(k get pod -n "$mns" "$mname" -o json | grep -c -F -e "$prefix" -e "$pod_key" || true)"

step "9/10 two clusters in network namespaces: shadow-agent in the shadow pod, mesh-agent with that mesh.json"
sfx=$(openssl rand -hex 3)
client=ikm-demo-client-$sfx
shadow=ikm-demo-shadow-$sfx
remote=ikm-demo-pod-$sfx
for n in "$client" "$shadow" "$remote"; do
	ip netns add "$n"
	mesh_ns+=("$n")
	ip -n "$n" link set lo up
done
ip link add eth0 netns "$client" type veth peer name eth0 netns "$shadow"
ip link add wan0 netns "$shadow" type veth peer name eth0 netns "$remote"
ip -n "$client" addr add 10.244.0.10/24 dev eth0
ip -n "$shadow" addr add 10.244.0.17/24 dev eth0
ip -n "$shadow" addr add 192.168.50.1/24 dev wan0
ip -n "$remote" addr add 192.168.50.2/24 dev eth0
ip -n "$client" link set eth0 up
ip -n "$shadow" link set eth0 up
ip -n "$shadow" link set wan0 up
ip -n "$remote" link set eth0 up
echo "local client 10.244.0.10 -- shadow pod 10.244.0.17 | tunnel 192.168.50.1:28080 -- offloaded pod 192.168.50.2"
printf '%s' "$shadow_key" >.cache/demo/shadow.key
printf '%s' "$prefix" >.cache/demo/prefix
chmod 600 .cache/demo/shadow.key .cache/demo/prefix
POD_IP=10.244.0.17 ip netns exec "$shadow" bin/shadow-agent --private-key-file .cache/demo/shadow.key \
	--path-prefix-file .cache/demo/prefix --peer-public-key "$(pubkey "$pod_key")" --main-interface eth0 \
	--uapi-dir .cache/demo/uapi-shadow >.cache/demo/shadow-agent.log 2>&1 &
mesh_pids+=($!)
ip netns exec "$remote" bin/mesh-agent --config .cache/demo/mesh.json --uapi-dir .cache/demo/uapi-pod \
	>.cache/demo/mesh-agent.log 2>&1 &
mesh_pids+=($!)
# The offloaded workload: nginx answering on port 8080 of the offloaded pod.
mkdir -p .cache/demo/www
echo "hello from the offloaded pod" >.cache/demo/www/index.html
printf 'worker_processes 1; daemon off; pid %s/nginx.pid; error_log stderr;\nevents {}\nhttp { access_log off; server { listen 8080; root %s/www; } }\n' \
	"$PWD/.cache/demo" "$PWD/.cache/demo" >.cache/demo/nginx.conf
ip netns exec "$remote" nginx -c "$PWD/.cache/demo/nginx.conf" -p "$PWD/.cache/demo" >.cache/demo/nginx.log 2>&1 &
mesh_pids+=($!)
for _ in $(seq 100); do
	ip netns exec "$remote" curl -sf -m 1 http://127.0.0.1:9101/readyz >/dev/null && break
	sleep 0.1
done
echo "mesh-agent:   $(grep -o 'msg="first handshake".*' .cache/demo/mesh-agent.log || echo 'no handshake yet: .cache/demo/mesh-agent.log')"
echo "shadow-agent: $(grep -o 'msg="netfilter rules applied".*' .cache/demo/shadow-agent.log | head -1)"

step "10/10 the local client asks the shadow pod's IP; the offloaded workload answers"
echo "$ curl http://10.244.0.17:8080/     (in the local client's namespace)"
ip netns exec "$client" curl -sS -m 5 --retry 5 --retry-all-errors --retry-delay 1 http://10.244.0.17:8080/
api POST /delete "$(jq -c .pod <<<"$mpod")" >/dev/null
echo "logs: .cache/demo/{plugin,shadow-agent,mesh-agent}.log"
