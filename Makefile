# interlink-k8s-mesh: `make demo` shows the product, `make test` proves it.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

BINARIES := interlink-k8s-plugin mesh-agent shadow-agent
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IKM_CACHE ?= $(HOME)/.cache/interlink-k8s-mesh
export IKM_CACHE
KUBECONFIG_PATH := $(CURDIR)/.cache/cluster/kubeconfig
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(IKM_CACHE)/tools/staticcheck-$(STATICCHECK_VERSION)

.PHONY: all build test unit lint cluster cluster-down demo bench bench-mesh bench-real bench-scale conformance conformance-helm clean clean-cache help

all: build

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build the three binaries into bin/
	@mkdir -p bin
	@for b in $(BINARIES); do \
		echo "[build] bin/$$b ($(VERSION))"; \
		CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/$$b ./cmd/$$b; \
	done

# Images: built by cmd/ikm-images from images/images.yaml, without a container engine. Every file
# and config carries the commit's time, so the same commit gives the same digests.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 1)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IKM_IMAGES := VERSION=$(VERSION) REVISION=$(REVISION) SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) go run ./cmd/ikm-images

.PHONY: images manifests debs push lock
images: ## build the OCI images (linux/amd64 + arm64) into bin/images/<name>.tar, no container engine
	@echo "[images] $(VERSION) at $(REVISION) (SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH)); the first run compiles for arm64 (minutes)"
	@$(IKM_IMAGES) build

# The shadow Ingress's class: the local cluster's ingress controller (Traefik by default; nginx for
# an nginx-class controller).
INGRESS_CLASS ?= traefik

manifests: ## bin/manifests/: the plugin Deployment and the VK's templates naming the images of this VERSION (REGISTRY= to point them at yours, INGRESS_CLASS= for another ingress controller than traefik)
	@mkdir -p bin/manifests
	@if ! [[ "$(INGRESS_CLASS)" =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$$ ]]; then echo "make manifests: INGRESS_CLASS=$(INGRESS_CLASS) is not an IngressClass name" >&2; exit 1; fi
	@reg=$${REGISTRY:-ghcr.io/interlink-k8s-mesh}; for f in plugin.yaml plugin-inbound-rbac.yaml local-sweep-rbac.yaml vk-shadow-secrets-rbac.yaml shadow-pod.tmpl shadow-pod-netstack.tmpl shadow-pod-inbound.tmpl shadow-pod-inbound-netstack.tmpl mesh-script.tmpl mesh-script-ingress.tmpl vk-config-snippet.yaml; do \
		sed -E -e "s#ghcr\.io/interlink-k8s-mesh/(interlink-k8s-plugin|mesh-agent|shadow-agent):latest#$$reg/\1:$(VERSION)#g" \
			-e "s#^  ingressClassName: traefik\$$#  ingressClassName: $(INGRESS_CLASS)#" manifests/$$f >bin/manifests/$$f; \
	done
	@echo "[manifests] bin/manifests/ names $${REGISTRY:-ghcr.io/interlink-k8s-mesh}/*:$(VERSION), the tags make images gives this build; shadow Ingress class $(INGRESS_CLASS)"
	@if grep -q ':latest' bin/manifests/*; then echo "make manifests: an image is still :latest in bin/manifests" >&2; exit 1; fi

debs: ## download and verify the Debian packages pinned in images/debs.lock into the cache (root adds arm64 to apt)
	@$(IKM_IMAGES) fetch

push: images ## push the image indexes to REGISTRY=host[:port]/path, tagged with VERSION (git describe)
	@if [ -z "$(REGISTRY)" ]; then echo "make push: set REGISTRY=host[:port]/path" >&2; exit 1; fi
	@REGISTRY=$(REGISTRY) $(IKM_IMAGES) push

lock: ## pin the current Debian 12 versions of the images' packages in images/debs.lock
	@$(IKM_IMAGES) lock

$(STATICCHECK):
	@echo "[lint] installing staticcheck $(STATICCHECK_VERSION) into $(IKM_CACHE)/tools (once, about 1 min)"
	@mkdir -p $(IKM_CACHE)/tools
	@GOBIN=$(IKM_CACHE)/tools/.staticcheck go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@mv $(IKM_CACHE)/tools/.staticcheck/staticcheck $@

lint: $(STATICCHECK) ## gofmt, go vet and staticcheck
	@echo "[lint] gofmt"
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	@echo "[lint] go vet"
	@go vet ./...
	@echo "[lint] staticcheck"
	@$(STATICCHECK) ./...

cluster: ## start the test control plane; kubeconfig in .cache/cluster/kubeconfig
	@test/testcluster/cluster.sh up
	@echo "kubectl: $(IKM_CACHE)/bin/current/kubectl --kubeconfig $(KUBECONFIG_PATH) get nodes"

cluster-down: ## stop the test control plane, leaving no process behind
	@test/testcluster/cluster.sh down

test: lint build ## lint, every test (unit, fuzz seeds, cluster-backed, netns, a real node when root), then conformance with InterLink's VK (real-pod mesh when root), then as root conformance-helm
	@if [ "$$(id -u)" = 0 ]; then echo "[test] root: the cluster gets a real node, which runs the images from make images"; $(MAKE) --no-print-directory images; fi
	@echo "[test] starting the shared test cluster (the first run builds it: about 15 min on 2 cores)"
	@IKM_REAL_NODE=$$([ "$$(id -u)" = 0 ] && echo 1 || echo 0) test/testcluster/cluster.sh up
	@trap 'test/testcluster/cluster.sh down' INT TERM; \
		echo "[test] go test ./... (cluster-backed and, as root, network-namespace tests included)"; \
		rc=0; IKM_KUBECONFIG=$(KUBECONFIG_PATH) IKM_REQUIRE_CLUSTER=1 go test -count=1 -timeout 30m ./... || rc=$$?; \
		test/testcluster/cluster.sh down || { echo "[test] teardown failed or left something behind" >&2; rc=1; }; \
		[ $$rc = 0 ] || exit $$rc
	@il=$${INTERLINK_BIN_DIR:-../shared/interlink}; if [ -x "$$il/virtual-kubelet" ] && [ -x "$$il/interlink" ]; then \
		echo "[test] conformance: InterLink's VK and API server from $$il drive the plugin$$([ "$$(id -u)" = 0 ] && echo ', and the mesh runs as real pods on two real nodes') (about 6 min warm)"; \
		$(MAKE) --no-print-directory conformance; \
		chart=$${INTERLINK_CHART_DIR:-../shared/interlink-helm-chart/interlink}; \
		if [ "$$(id -u)" != 0 ] || [ "$${IKM_CONFORMANCE_REAL_MESH:-1}" = 0 ]; then \
			echo "[test] conformance-helm SKIPPED: it runs InterLink's chart on real nodes (root, IKM_CONFORMANCE_REAL_MESH unset)"; \
		elif [ ! -f "$$chart/Chart.yaml" ]; then \
			echo "[test] conformance-helm SKIPPED: no InterLink chart in $$chart (set INTERLINK_CHART_DIR to interlink-helm-chart/interlink)"; \
		else \
			echo "[test] conformance-helm: InterLink's Helm chart runs the VK, the API server and the plugin as pods on a real node (kernel and netstack mode), and the project's chart the plugin in the remote cluster behind its Ingress; the suite through both layouts, the mesh through the first (about 12 min)"; \
			$(MAKE) --no-print-directory conformance-helm; \
		fi; \
	else \
		echo "[test] conformance SKIPPED: no InterLink binaries in $$il (set INTERLINK_BIN_DIR to a directory holding interlink and virtual-kubelet); the real-pod mesh tests run there"; \
	fi

unit: ## tests that need no cluster (cluster tests skip)
	go test -count=1 ./...

demo: build ## start the control plane, offload a pod and show it running, then tear down
	@test/demo/demo.sh

bench-scale: ## the plugin at scale: 10,000 offloaded pods (RSS, /status of all), 2,000 creates and deletes at concurrency 1, 20, 100 next to the apiserver's own floor; as root, 100 meshed pods through InterLink's VK next to 100 plain ones (about 50 min; IKM_SCALE_PODS, IKM_SCALE_CREATES, IKM_SCALE_MESH_PODS: 0 skips the meshed pods)
	@mkdir -p bin
	@test/testcluster/cluster.sh up
	@trap 'test/testcluster/cluster.sh down' EXIT; \
		echo "[bench-scale] $${IKM_SCALE_PODS:-10000} pods, then $${IKM_SCALE_CREATES:-2000} creates and deletes at 3 concurrencies, through the plugin and directly (about 15 min; full log bin/bench-scale.log)"; \
		IKM_KUBECONFIG=$(KUBECONFIG_PATH) go test -count=1 -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout 90m -v ./plugin/ 2>&1 | tee bin/bench-scale.log | grep --line-buffered "^\[bench-scale" || true; \
		grep -q '^--- FAIL\|^FAIL' bin/bench-scale.log && { tail -40 bin/bench-scale.log; exit 1; }; true
	@il=$${INTERLINK_BIN_DIR:-../shared/interlink}; logs=bin/bench-scale.log; \
	if [ "$${IKM_SCALE_MESH_PODS:-100}" = 0 ]; then \
		echo "[bench-scale] meshed pods SKIPPED: IKM_SCALE_MESH_PODS=0"; \
	elif [ "$$(id -u)" != 0 ] || [ ! -x "$$il/virtual-kubelet" ]; then \
		echo "[bench-scale] meshed pods SKIPPED: needs root and InterLink's binaries in $$il (INTERLINK_BIN_DIR)"; \
	else \
		echo "[bench-scale] $${IKM_SCALE_MESH_PODS:-100} pods through InterLink's VK on real nodes, without then with the mesh (about 25 min; full log bin/bench-scale-mesh.log)"; \
		IKM_CONFORMANCE_SCALE_PODS=$${IKM_SCALE_MESH_PODS:-100} IKM_CONFORMANCE_TIMEOUT=60m test/conformance/run.sh 2>&1 | tee bin/bench-scale-mesh.log | grep --line-buffered '\[bench-scale\]\|^\[conformance' || true; \
		grep -q '^--- FAIL\|^FAIL\|exit [1-9]' bin/bench-scale-mesh.log && { grep -v 'level=debug' bin/bench-scale-mesh.log | tail -40; failed=1; }; \
		logs="$$logs bin/bench-scale-mesh.log"; \
	fi; \
	echo "| figure | value | limit | ratio |"; echo "|---|---|---|---|"; \
	grep -ho 'SCALE | .*' $$logs | sed 's/^SCALE //'; \
	grep -ho 'SCALE-NOTE .*' $$logs | sed 's/^SCALE-NOTE /- /'; \
	[ -z "$${failed:-}" ] || { echo "[bench-scale] the meshed pods' stage FAILED (above; full log bin/bench-scale-mesh.log)"; exit 1; }

conformance: ## the real InterLink VK and API server drive the plugin: two clusters, the suite, a JUnit report
	@test/conformance/run.sh

conformance-helm: ## as users install it (root): InterLink's Helm chart (INTERLINK_CHART_DIR) runs the VK, its API server and the plugin as one pod on the local real node (two releases: kernel and netstack mode), and with the project's chart in the remote cluster (the plugin behind its Ingress, a third release's API server dialing it), images from a test registry; the suite through both layouts, the real-pod mesh through the first; helm uninstall must leave nothing
	@IKM_CONFORMANCE_LAYOUT=helm test/conformance/run.sh

bench: ## benchmarks against the test cluster, then bench-mesh and bench-real (figures and commands in docs/performance.md)
	@test/testcluster/cluster.sh up
	@trap 'test/testcluster/cluster.sh down' EXIT; \
		echo "[bench] plugin: /status with 1,000 pods, create with 3 ConfigMaps + 2 Secrets, RSS (about 1 min)"; \
		IKM_KUBECONFIG=$(KUBECONFIG_PATH) go test -count=1 -run '^$$' -bench '^Benchmark(Status1000|Create|RSS1000)$$' -benchmem -benchtime 300x ./plugin/; \
		echo "[bench] plugin under load: 200 creates, polls and deletes at concurrency 1, 20, 100, two client limits (about 5 min)"; \
		IKM_KUBECONFIG=$(KUBECONFIG_PATH) go test -count=1 -run '^$$' -bench '^BenchmarkLoad$$' -benchtime 1x -timeout 30m ./plugin/; \
		echo "[bench] plugin after a 20 s apiserver outage: how long status stays stale, twice (about 1 min)"; \
		IKM_KUBECONFIG=$(KUBECONFIG_PATH) go test -count=1 -run '^$$' -bench '^BenchmarkResyncAfterOutage$$' -benchtime 2x ./plugin/
	@$(MAKE) --no-print-directory bench-mesh
	@$(MAKE) --no-print-directory bench-real

bench-mesh: ## tunnel benchmarks, then the mesh (direct, through nginx, through Traefik over ws:// and wss://, and inbound: direct and through Traefik) against wireguard-go over UDP in network namespaces (root; about 3 min)
	@mkdir -p bin
	@echo "[bench] tunnel: datagram round trip, batch and device throughput (about 30 s)"
	@go test -count=1 -run '^$$' -bench . -benchmem ./tunnel/
	@echo "[bench] mesh in network namespaces (root): iperf3 5 s per path, 9 paths, $${IKM_BENCH_ROUNDS:-3} interleaved rounds (about 3 min; full log bin/bench-mesh.log)"
	@go test -count=1 -run '^$$' -bench Throughput -benchtime 1x -timeout 20m -v ./test/e2e/ > bin/bench-mesh.log 2>&1 || { tail -50 bin/bench-mesh.log; exit 1; }
	@grep -E 'ratio:|wireguard-go-debian:|SKIP' bin/bench-mesh.log | sed -E 's/^ *bench_linux_test.go:[0-9]+: //'

bench-real: ## real pods through InterLink's VK (root, InterLink binaries): 20 offloaded pods created at once, created to mesh ready p50/p95 (about 4 min)
	@il=$${INTERLINK_BIN_DIR:-../shared/interlink}; \
	if [ "$$(id -u)" != 0 ] || [ ! -x "$$il/virtual-kubelet" ]; then \
		echo "[bench] real pods SKIPPED: needs root and InterLink's binaries in $$il (INTERLINK_BIN_DIR)"; exit 0; \
	fi; \
	echo "[bench] real pods: $${IKM_READY_PODS:-20} offloaded pods created at once, created to mesh ready (two clusters with real nodes, InterLink's VK; about 4 min; log bin/bench-real.log)"; \
	IKM_CONFORMANCE_TESTS='^TestMeshReadyTimes$$' IKM_CONFORMANCE_READY_PODS=$${IKM_READY_PODS:-20} test/conformance/run.sh > bin/bench-real.log 2>&1 || { tail -40 bin/bench-real.log; exit 1; }; \
	grep -E 'FIGURE' bin/bench-real.log | sed -E 's/^ *[a-z_]+\.go:[0-9]+: //'

clean: ## remove build outputs and the cluster state (keeps the binary cache)
	-@test/testcluster/cluster.sh down 2>/dev/null
	rm -rf bin .cache

clean-cache: clean ## also remove the cached control plane binaries and tools
	rm -rf $(IKM_CACHE)
