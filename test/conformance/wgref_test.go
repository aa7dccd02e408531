package conformance

import (
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"golang.org/x/net/ipv4"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// The reference path of the real-pod throughput figures: wireguard-go over plain UDP between the
// same two pods the mesh joins (the local iperf3 client pod and the offloaded pod), each with a
// "wgref" container (the wireguard-go image) on its own interface and addresses. The remote site
// reaches the local one only through an ingress, so a UDP relay on the remote node's bridge address
// plays a UDP ingress of the local site (a user-space hop, as nginx is for the mesh).
const (
	envWireGuardImage = "IKM_CONFORMANCE_WIREGUARD_IMAGE" // wireguard-go from make images
	wgRefLocal        = "10.99.0.1"                       // the local client pod's reference address
	wgRefRemote       = "10.99.0.2"                       // the offloaded pod's
	wgRefPort         = 51820                             // the local pod's WireGuard port
	wgRefRelayPort    = 51999                             // the relay's, on the remote node's bridge address
)

// wgRef holds the two ends' keys and where the remote end dials: the relay.
type wgRef struct {
	image         string
	local, remote meshspec.Key
	relay         netip.AddrPort
}

// newWGRef makes the keys, or returns nil without the image (run.sh names it).
func newWGRef(t *testing.T, ingress netip.AddrPort) *wgRef {
	image := os.Getenv(envWireGuardImage)
	if image == "" {
		t.Logf("no wireguard-go reference: %s unset", envWireGuardImage)
		return nil
	}
	r := &wgRef{image: image, relay: netip.AddrPortFrom(ingress.Addr(), wgRefRelayPort)}
	var err error
	if r.local, err = meshspec.GeneratePrivateKey(); err == nil {
		r.remote, err = meshspec.GeneratePrivateKey()
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wgRefScript brings wgref0 up from the container's environment and keeps wireguard-go running in
// the foreground of the container (it exits, and the container with it, if the device goes).
const wgRefScript = `set -e
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
WG_PROCESS_FOREGROUND=1 wireguard wgref0 &
while ! ip link show wgref0 >/dev/null 2>&1; do sleep 0.1; done
echo "$WG_KEY" >/tmp/key
wg set wgref0 private-key /tmp/key ${WG_PORT:+listen-port $WG_PORT} peer "$WG_PEER" allowed-ips "$WG_PEER_ADDR/32" ${WG_ENDPOINT:+endpoint $WG_ENDPOINT persistent-keepalive 1}
ip addr add "$WG_ADDR/24" dev wgref0
ip link set wgref0 mtu 1380 up
echo "wgref0 up: $WG_ADDR"
wait
`

// container is one end's wgref container: NET_ADMIN for the interface and MKNOD for /dev/net/tun,
// as the mesh-agent has (never privileged). The remote end dials the relay.
func (r *wgRef) container(remoteEnd bool) corev1.Container {
	key, peer, addr, peerAddr := r.local, r.remote, wgRefLocal, wgRefRemote
	if remoteEnd {
		key, peer, addr, peerAddr = r.remote, r.local, wgRefRemote, wgRefLocal
	}
	env := []corev1.EnvVar{
		{Name: "WG_KEY", Value: b64Key(key)},
		{Name: "WG_PEER", Value: b64Key(peer.PublicKey())},
		{Name: "WG_ADDR", Value: addr},
		{Name: "WG_PEER_ADDR", Value: peerAddr},
	}
	if remoteEnd {
		env = append(env, corev1.EnvVar{Name: "WG_ENDPOINT", Value: r.relay.String()})
	} else {
		env = append(env, corev1.EnvVar{Name: "WG_PORT", Value: strconv.Itoa(wgRefPort)})
	}
	return corev1.Container{
		Name: "wgref", Image: r.image, ImagePullPolicy: corev1.PullIfNotPresent,
		Command: []string{"/bin/sh", "-c", wgRefScript}, Env: env,
		SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN", "MKNOD"},
		}},
	}
}

func b64Key(k meshspec.Key) string { return base64.StdEncoding.EncodeToString(k[:]) }

// startUDPRelay forwards datagrams between listen and target for one client (the last one heard),
// until the test ends. It moves up to 64 datagrams per system call each way (recvmmsg and
// sendmmsg), so the relay is not what limits the reference.
func startUDPRelay(t *testing.T, listen, target netip.AddrPort) {
	t.Helper()
	in, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(listen))
	if err != nil {
		t.Fatalf("UDP relay on %s: %v", listen, err)
	}
	up, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		in.Close()
		t.Fatalf("UDP relay to %s: %v", target, err)
	}
	for _, c := range []*net.UDPConn{in, up} {
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
	}
	var (
		mu     sync.Mutex
		client net.Addr
		wg     sync.WaitGroup
	)
	// pump reads batches from src and writes them to dst, addressed by to (nil: dst is connected).
	pump := func(src, dst *ipv4.PacketConn, learn bool, to func() net.Addr) {
		msgs := make([]ipv4.Message, 64)
		for i := range msgs {
			msgs[i].Buffers = [][]byte{make([]byte, 65535)}
		}
		out := make([]ipv4.Message, 0, len(msgs))
		for {
			n, err := src.ReadBatch(msgs, 0)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil || n == 0 {
				continue // ECONNREFUSED before the local end listens
			}
			if learn {
				mu.Lock()
				client = msgs[n-1].Addr
				mu.Unlock()
			}
			dest := to()
			if dest == nil && !learn {
				continue // no client yet to answer
			}
			out = out[:0]
			for _, m := range msgs[:n] {
				out = append(out, ipv4.Message{Buffers: [][]byte{m.Buffers[0][:m.N]}, Addr: dest})
			}
			for len(out) > 0 {
				w, err := dst.WriteBatch(out, 0)
				if err != nil {
					break
				}
				out = out[w:]
			}
		}
	}
	pin, pup := ipv4.NewPacketConn(in), ipv4.NewPacketConn(up)
	wg.Go(func() { pump(pin, pup, true, func() net.Addr { return nil }) })
	wg.Go(func() {
		pump(pup, pin, false, func() net.Addr {
			mu.Lock()
			defer mu.Unlock()
			return client
		})
	})
	t.Cleanup(func() {
		in.Close()
		up.Close()
		wg.Wait()
	})
}

// TestUDPRelay: datagrams from a client reach the target through the relay, and the target's
// answers reach the client, in batches both ways.
func TestUDPRelay(t *testing.T) {
	target, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := target.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = target.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	listen := probe.LocalAddr().(*net.UDPAddr).AddrPort()
	probe.Close() // a free port for the relay
	startUDPRelay(t, listen, target.LocalAddr().(*net.UDPAddr).AddrPort())
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(listen))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 200
	for i := range n {
		if _, err := c.Write([]byte{byte(i), 'x'}); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := 0
	buf := make([]byte, 2048)
	for got < n {
		m, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%d of %d echoes back through the relay: %v", got, n, err)
		}
		if m != 2 || buf[1] != 'x' {
			t.Fatalf("echo %q", buf[:m])
		}
		got++
	}
}
