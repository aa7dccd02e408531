package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/netnstest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// wgPeer is one end of a reference WireGuard link.
type wgPeer struct {
	ns       *netnstest.NS
	iface    string
	key      wgtypes.Key
	under    netip.Addr // the address WireGuard's UDP travels between
	overlay  netip.Addr // the address inside the tunnel
	proc     *proc
	uapiSock string
}

// udpWireGuard links a and b with a wireguard-go binary (bin) over plain UDP (port 51820),
// overlay addresses 10.7.0.1 (a) and 10.7.0.2 (b) at mtu: the reference the mesh is measured
// against. under are the addresses a and b already have on their link.
func udpWireGuard(t testing.TB, bin string, a, b *netnstest.NS, underA, underB netip.Addr, mtu int) (pa, pb *wgPeer) {
	t.Helper()
	pa = &wgPeer{ns: a, iface: uniqueIface("wgu"), under: underA, overlay: netip.MustParseAddr("10.7.0.1")}
	pb = &wgPeer{ns: b, iface: uniqueIface("wgu"), under: underB, overlay: netip.MustParseAddr("10.7.0.2")}
	client, err := wgctrl.New()
	if err != nil {
		t.Fatalf("wgctrl: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	for _, p := range []*wgPeer{pa, pb} {
		if p.key, err = wgtypes.GeneratePrivateKey(); err != nil {
			t.Fatal(err)
		}
		p.uapiSock = "/var/run/wireguard/" + p.iface + ".sock"
		p.proc = start(t, p.ns, []string{"LOG_LEVEL=error"}, bin, "-f", p.iface)
		polltest.True(t, p.iface+" UAPI socket", 10*time.Second, func() bool {
			_, err := os.Stat(p.uapiSock)
			return err == nil
		})

	}
	port := 51820
	keepalive := 25 * time.Second
	for _, pair := range [][2]*wgPeer{{pa, pb}, {pb, pa}} {
		me, peer := pair[0], pair[1]
		err := client.ConfigureDevice(me.iface, wgtypes.Config{
			PrivateKey:   &me.key,
			ListenPort:   &port,
			ReplacePeers: true,
			Peers: []wgtypes.PeerConfig{{
				PublicKey:                   peer.key.PublicKey(),
				Endpoint:                    &net.UDPAddr{IP: peer.under.AsSlice(), Port: port},
				AllowedIPs:                  []net.IPNet{{IP: peer.overlay.AsSlice(), Mask: net.CIDRMask(32, 32)}},
				PersistentKeepaliveInterval: &keepalive,
				ReplaceAllowedIPs:           true,
			}},
		})
		if err != nil {
			t.Fatalf("configure %s: %v", me.iface, err)
		}
		me.ns.MustExec("ip", "addr", "add", me.overlay.String()+"/32", "dev", me.iface)
		me.ns.MustExec("ip", "link", "set", me.iface, "mtu", itoa(mtu), "up")
		me.ns.MustExec("ip", "route", "add", peer.overlay.String()+"/32", "dev", me.iface)
	}
	return pa, pb
}

func uniqueIface(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
