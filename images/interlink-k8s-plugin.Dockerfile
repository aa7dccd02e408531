# syntax=docker/dockerfile:1
# interlink-k8s-plugin: a static Go binary on distroless, as the distroless nonroot user.
# Build from the repository root: docker build -f images/interlink-k8s-plugin.Dockerfile .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
    -o /out/interlink-k8s-plugin ./cmd/interlink-k8s-plugin

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/interlink-k8s-plugin /interlink-k8s-plugin
# nonroot: uid/gid 65532, as manifests/plugin.yaml's securityContext says.
USER 65532:65532
EXPOSE 4000
ENTRYPOINT ["/interlink-k8s-plugin"]
