# syntax=docker/dockerfile:1
# mesh-agent: the sidecar of every offloaded pod; a static Go binary (wireguard-go embedded, no
# wg/ip/iptables binaries needed) on distroless static.
# Build from the repository root: docker build -f images/mesh-agent.Dockerfile .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/mesh-agent ./cmd/mesh-agent

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/mesh-agent /mesh-agent
# uid 0, only because the capabilities the plugin grants the sidecar (NET_ADMIN, MKNOD) are
# effective for root alone: Kubernetes adds them to a non-root process's bounding set but not to
# its effective set (no ambient capabilities), so a non-root agent could not create its
# WireGuard interface. The plugin drops every other capability and never sets privileged.
USER 0:0
ENTRYPOINT ["/mesh-agent"]
