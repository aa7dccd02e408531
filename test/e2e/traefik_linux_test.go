package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/pkitest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

// traefikIngress is Traefik proxying ingressHost to upstream from ns, as it routes a shadow
// Ingress: the same routers on ws:// (port 80, entrypoint web) and wss:// (443, websecure, a
// certificate for ingressHost from a test CA, whose PEM is caFile). Its file provider stands in
// for the Kubernetes provider, which only makes the routes: the data path is the same.
type traefikIngress struct {
	proc   *proc
	caFile string
}

func startTraefik(t testing.TB, ns *netnstest.NS, upstream string) *traefikIngress {
	t.Helper()
	dir := t.TempDir()
	ca := pkitest.NewCA(t, "bench ingress ca")
	leaf := ca.Issue(t, pkitest.LeafSpec{Name: ingressHost, DNS: []string{ingressHost}})
	cert, key := pkitest.Write(t, dir, "tls.crt", leaf.CertPEM), pkitest.Write(t, dir, "tls.key", leaf.KeyPEM)
	dynamic := pkitest.Write(t, dir, "dynamic.yaml", fmt.Appendf(nil, `http:
  routers:
    shadow:
      rule: "Host(%[1]s)"
      entryPoints: [web, websecure]
      service: shadow
  services:
    shadow:
      loadBalancer:
        servers: [{url: "http://%[2]s"}]
tls:
  certificates:
    - {certFile: %[3]q, keyFile: %[4]q}
`, "`"+ingressHost+"`", upstream, cert, key))
	tr := &traefikIngress{caFile: pkitest.Write(t, dir, "ca.crt", ca.PEM)}
	tr.proc = start(t, ns, nil, testcluster.Tool(t, "traefik"),
		"--global.checknewversion=false", "--global.sendanonymoususage=false", "--log.level=ERROR",
		"--entrypoints.web.address=127.0.0.1:80", "--entrypoints.websecure.address=127.0.0.1:443",
		"--entrypoints.websecure.http.tls=true", "--entrypoints.traefik.address=127.0.0.1:8080",
		"--api=true", "--api.insecure=true", "--api.dashboard=false", "--providers.file.filename="+dynamic)
	polltest.True(t, "traefik routing "+ingressHost, 20*time.Second, func() bool {
		code, body, err := httpGet(ns, "http://127.0.0.1:8080/api/http/routers/shadow@file", time.Second)
		return err == nil && code == 200 && strings.Contains(body, `"status":"enabled"`)
	})
	return tr
}
