#!/usr/bin/env bash
# build-binaries.sh builds the test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, kwokctl) and the real node's kubelet, kube-proxy, CoreDNS, containerd,
# containerd-shim-runc-v2 and ctr, Helm for the chart tests, and Traefik (the ingress controller), from the Go module proxy into a cache keyed by the pinned versions,
# the build flags and the Go toolchain. A cache entry is trusted only when its stamp lists every binary with
# a matching checksum; anything else is removed and rebuilt. Prints the cache's bin directory last.
#
# Environment: IKM_CACHE (default ~/.cache/interlink-k8s-mesh) holds the binaries so that every clone
# on this machine, and every CI run, reuses them.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${IKM_CACHE:-$HOME/.cache/interlink-k8s-mesh}
mkdir -p "$cache/bin"

log() { printf '[cluster-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# One build at a time per cache: two test processes (or clones) building at once raced on the
# symlink directories below and failed ("ln: failed to create symbolic link .../current.tmp/etcd").
# The second waits, then finds every group cached. The lock lasts as long as this script: every
# child it starts ends before it does.
exec 9>"$cache/bin/.build.lock"
if ! flock -n 9; then
	log "another build of the test binaries holds $cache/bin/.build.lock: waiting for it (up to 60 min)"
	flock -w 3600 9 || { log "still locked after 60 min: giving up"; exit 1; }
	log "lock acquired"
fi

# stop_ticker PID stops a progress ticker and its sleep, which would otherwise hold the output open.
stop_ticker() {
	pkill -P "$1" 2>/dev/null || true
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# group NAME MINUTES BINARY=PACKAGE...: one cache entry per tools module.
build_group() {
	local name=$1 minutes=$2
	shift 2
	local mod="$here/tools/$name"
	local key
	local ldflags="-s -w" tags=""
	case $name in
	kube | kubelet | kube-proxy) ldflags="$ldflags -X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" ;;
	containerd)
		# No cgo: the snapshotters that need C libraries are left out; overlayfs and native remain.
		ldflags="$ldflags -X github.com/containerd/containerd/v2/version.Version=v2.4.2"
		tags="no_btrfs no_devmapper no_zfs"
		;;
	traefik) ldflags="$ldflags -X github.com/traefik/traefik/v3/pkg/version.Version=v3.6.12" ;;
	esac
	# A group built with tags keys its flags too; the others keep the key they always had, so their
	# cache entries stay valid.
	# A group with a main package of its own (coredns) keys its source too.
	key=$( { cat "$mod/go.mod" "$mod/go.sum"; go version; echo "$*"; [ -z "$tags" ] || echo "$ldflags|$tags"; [ ! -f "$mod/main.go" ] || cat "$mod/main.go"; } | sha256sum | cut -c1-16)
	local dest="$cache/bin/$name-$key"
	if [ -f "$dest/.complete" ] && (cd "$dest" && sha256sum --quiet -c .complete >/dev/null 2>&1); then
		log "$name: cached in $dest"
		echo "$dest"
		return
	fi
	if [ -e "$dest" ]; then
		log "$name: cache entry $dest is incomplete or corrupt, rebuilding"
		rm -rf "$dest"
	fi
	local tmp
	tmp=$(mktemp -d "$cache/bin/.$name-XXXXXX")
	local start=$SECONDS
	local pair bin pkg
	for pair in "$@"; do
		bin=${pair%%=*}
		pkg=${pair#*=}
		log "$name: building $bin (the whole group takes about $minutes min cold on 2 cores; elapsed $((SECONDS - start)) s)"
		# A background ticker keeps a watcher informed during the long compile.
		# It writes to stderr only: stdout is the caller's command substitution, which would wait for it.
		# Its sleep runs in the background and a stop ends it quietly: a foreground sleep killed by
		# stop_ticker made bash print a stray "Terminated" between the progress lines.
		(
			trap 'exit 0' TERM
			while :; do
				sleep 60 &
				wait $! || exit 0
				log "$name: still building $bin, $((SECONDS - start)) s elapsed of about $((minutes * 60)) s"
			done
		) >&2 &
		local ticker=$!
		if ! (cd "$mod" && CGO_ENABLED=0 go build -mod=mod -trimpath -tags "$tags" -ldflags "$ldflags" -o "$tmp/$bin" "$pkg"); then
			stop_ticker "$ticker"
			rm -rf "$tmp"
			log "$name: build of $bin failed"
			return 1
		fi
		stop_ticker "$ticker"
	done
	(cd "$tmp" && sha256sum -- * >.complete)
	mv "$tmp" "$dest"
	log "$name: built in $((SECONDS - start)) s into $dest"
	echo "$dest"
}

etcd=$(build_group etcd 1 etcd=go.etcd.io/etcd/server/v3)
kwok=$(build_group kwok 6 kwok=sigs.k8s.io/kwok/cmd/kwok kwokctl=sigs.k8s.io/kwok/cmd/kwokctl)
kube=$(build_group kube 11 \
	kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
	kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
	kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
	kubectl=k8s.io/kubernetes/cmd/kubectl)
# The real node: apart from the control plane so that each cache entry stays valid on its own.
kubelet=$(build_group kubelet 4 kubelet=k8s.io/kubernetes/cmd/kubelet)
kubeproxy=$(build_group kube-proxy 3 kube-proxy=k8s.io/kubernetes/cmd/kube-proxy)
# CoreDNS with the plugins the nodes use (tools/coredns/main.go).
coredns=$(build_group coredns 5 coredns=.)
# Helm, for the chart tests (lint, template, install).
helm=$(build_group helm 4 helm=helm.sh/helm/v4/cmd/helm)
# Traefik, the ingress controller of the local cluster in the real-pod mesh tests and the demo.
traefik=$(build_group traefik 6 traefik=github.com/traefik/traefik/v3/cmd/traefik)
containerd=$(build_group containerd 4 \
	containerd=github.com/containerd/containerd/v2/cmd/containerd \
	containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
	ctr=github.com/containerd/containerd/v2/cmd/ctr)

# One stable directory of symlinks for the scripts and tests.
link="$cache/bin/current"
rm -rf "$link.tmp"
mkdir -p "$link.tmp"
for d in "$etcd" "$kwok" "$kube" "$kubelet" "$kubeproxy" "$coredns" "$helm" "$traefik" "$containerd"; do
	for f in "$d"/*; do ln -s "$f" "$link.tmp/$(basename "$f")"; done
done
rm -rf "$link"
mv "$link.tmp" "$link"
# The real node's binaries also in a directory of their own: clones whose build-binaries.sh predates
# the real node rewrite current without them.
node="$cache/bin/node"
rm -rf "$node.tmp"
mkdir -p "$node.tmp"
for d in "$kubelet" "$kubeproxy" "$coredns" "$containerd"; do
	for f in "$d"/*; do ln -s "$f" "$node.tmp/$(basename "$f")"; done
done
rm -rf "$node"
mv "$node.tmp" "$node"
echo "$link"
