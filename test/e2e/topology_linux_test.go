package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/ingresstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// The mesh topology's addresses. The local cluster is one bridged /24 (10.244.0.0/24) holding
// the client pod, the shadow pod, the ingress and a Service endpoint, with the Service IP
// (10.96.0.10) routed to that endpoint as kube-proxy would send it. The remote side is a
// separate network (192.168.50.0/24) where only the ingress is reachable.
const (
	clientIP     = "10.244.0.10"
	shadowIP     = "10.244.0.17"
	svcEndpoint  = "10.244.0.20"
	ingressLanIP = "10.244.0.30"
	serviceIP    = "10.96.0.10"
	ingressWAN   = "192.168.50.1"
	podWAN       = "192.168.50.2"
	ingressHost  = "shadow-demo.mesh.test"
	tunnelPort   = 28080
)

// topology is the namespaces of one mesh: a local client pod, the shadow pod, an ingress in
// front of it, a Service endpoint, and the offloaded pod on the remote network.
type topology struct {
	lan, client, shadow, ingress, svc, pod *netnstest.NS
}

// newTopology builds the namespaces and their links; nothing of the mesh runs yet.
func newTopology(t testing.TB) *topology {
	t.Helper()
	tp := &topology{
		lan: netnstest.New(t), client: netnstest.New(t), shadow: netnstest.New(t),
		ingress: netnstest.New(t), svc: netnstest.New(t), pod: netnstest.New(t),
	}
	tp.lan.MustExec("ip", "link", "add", "br0", "type", "bridge")
	tp.lan.MustExec("ip", "link", "set", "br0", "up")
	for _, m := range []struct {
		ns   *netnstest.NS
		port string
		ip   string
	}{{tp.client, "pclient", clientIP}, {tp.shadow, "pshadow", shadowIP}, {tp.svc, "psvc", svcEndpoint}, {tp.ingress, "pingress", ingressLanIP}} {
		netnstest.Veth(m.ns, "eth0", tp.lan, m.port)
		tp.lan.MustExec("ip", "link", "set", m.port, "master", "br0")
		m.ns.MustExec("ip", "addr", "add", m.ip+"/24", "dev", "eth0")
	}
	// The Service IP lives on its endpoint; the local pods reach it through the endpoint.
	tp.svc.MustExec("ip", "addr", "add", serviceIP+"/32", "dev", "lo")
	for _, ns := range []*netnstest.NS{tp.client, tp.shadow} {
		ns.MustExec("ip", "route", "add", "10.96.0.0/16", "via", svcEndpoint)
	}
	netnstest.Veth(tp.ingress, "wan0", tp.pod, "eth0")
	tp.ingress.MustExec("ip", "addr", "add", ingressWAN+"/24", "dev", "wan0")
	tp.pod.MustExec("ip", "addr", "add", podWAN+"/24", "dev", "eth0")
	return tp
}

// nginx is the ingress: it proxies WebSocket upgrades for ingressHost to the shadow pod, as an
// ingress controller's generated configuration does.
type nginx struct {
	ns    *netnstest.NS
	dir   string
	check string // an address of ns where nginx answers
	proc  *proc
}

// startNginx runs nginx in ns on port 80 of every address, proxying ingressHost to upstream
// (host:port); check is one of ns's addresses, to know when it listens.
func startNginx(t testing.TB, ns *netnstest.NS, check, upstream string) *nginx {
	t.Helper()
	return startNginxFor(t, ns, check, upstream, ingressHost)
}

// startNginxFor is startNginx for the virtual host host.
func startNginxFor(t testing.TB, ns *netnstest.NS, check, upstream, host string) *nginx {
	t.Helper()
	n := &nginx{ns: ns, dir: t.TempDir(), check: check}
	conf := ingresstest.Config{Dir: n.dir, Listen: "80", Routes: map[string]string{host: upstream},
		ErrorLog: "stderr", AccessLog: filepath.Join(n.dir, "access.log"), WorkerConnections: 256}
	if err := conf.Write(); err != nil {
		t.Fatal(err)
	}
	n.start(t)
	return n
}

func (n *nginx) start(t testing.TB) {
	t.Helper()
	n.proc = start(t, n.ns, nil, "nginx", "-c", filepath.Join(n.dir, "nginx.conf"), "-p", n.dir)
	polltest.True(t, "nginx listening", 10*time.Second, func() bool {
		code, _, err := httpGet(n.ns, "http://"+n.check+"/", time.Second)
		return err == nil && code == 404
	})

}

// restart stops nginx, cutting every WebSocket through it, and starts it again.
func (n *nginx) restart(t testing.TB) {
	t.Helper()
	if err := n.proc.stop(); err != nil {
		t.Logf("nginx stop: %v", err)
	}
	n.start(t)
}
