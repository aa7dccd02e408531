# syntax=docker/dockerfile:1
# shadow-agent: runs in the shadow pod of the local cluster. Its netfilter package execs
# iptables (github.com/coreos/go-iptables), so the image needs the iptables binaries: Debian
# slim with iptables only (nft backend by default), no recommends.
# Build from the repository root: docker build -f images/shadow-agent.Dockerfile .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/shadow-agent ./cmd/shadow-agent

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/shadow-agent /usr/local/bin/shadow-agent
# uid 0 for NET_ADMIN (and MKNOD), the only capabilities manifests/shadow-pod.tmpl adds; see
# mesh-agent.Dockerfile for why capabilities require root here.
USER 0:0
EXPOSE 28080 9102
ENTRYPOINT ["/usr/local/bin/shadow-agent"]
