package meshagent

import (
	"encoding/hex"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/goldentest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// fixedKey returns a stable key for golden files.
func fixedKey(seed byte) meshspec.Key {
	var k meshspec.Key
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

func testSpec() meshspec.Spec {
	return meshspec.Spec{
		PrivateKey:    fixedKey(1),
		PeerPublicKey: fixedKey(101).PublicKey(),
		Routes:        []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/12")},
		Tunnel:        meshspec.Tunnel{URL: "ws://127.0.0.1:1", PathPrefix: "s3cr3t-pr3fix"},
	}.WithDefaults()
}

func TestUAPIConfigGolden(t *testing.T) {
	s := testSpec()
	s.PersistentKeepalive = 15 * time.Second
	got := identity(s).UAPI()
	path := filepath.Join("testdata", "uapi.golden")
	goldentest.Check(t, path, []byte(got))
}

// testDevice is a real wireguard-go device on an in-memory TUN, with the tunnel's ClientBind
// over a client that never runs: enough to check what the device accepts and reports.
func testDevice(t *testing.T) *device.Device {
	t.Helper()
	c, err := tunnel.NewClient(tunnel.ClientConfig{URL: "ws://127.0.0.1:1", PathPrefix: "x"})
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), tunnel.NewClientBind(c),
		&device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf})
	t.Cleanup(dev.Close)
	return dev
}

// TestUAPIConfigAccepted feeds the computed text to a real device and reads its state back.
func TestUAPIConfigAccepted(t *testing.T) {
	s := testSpec()
	dev := testDevice(t)
	if err := dev.IpcSet(identity(s).UAPI()); err != nil {
		t.Fatalf("IpcSet: %v", err)
	}
	if err := dev.IpcSet(identity(s).UAPI()); err != nil { // replace_*: applying twice is fine
		t.Fatalf("IpcSet again: %v", err)
	}
	text, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"public_key=" + hex.EncodeToString(s.PeerPublicKey[:]),
		"endpoint=127.0.0.1:51820",
		"persistent_keepalive_interval=25",
		"allowed_ip=10.7.0.1/32", "allowed_ip=10.244.0.0/16", "allowed_ip=10.96.0.0/12",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("device state lacks %q", want)
		}
	}
	if n := strings.Count(text, "allowed_ip="); n != 3 {
		t.Errorf("device has %d allowed IPs, want 3", n)
	}
	p, err := wgdevice.ReadPeer(dev)
	if err != nil {
		t.Fatal(err)
	}
	if p.PublicKey != s.PeerPublicKey || !p.LastHandshake.IsZero() {
		t.Errorf("ReadPeer = key match %v, handshake %v; want the peer, no handshake", p.PublicKey == s.PeerPublicKey, p.LastHandshake)
	}
}

func TestPlanLink(t *testing.T) {
	got := planLink(testSpec())
	want := wgdevice.LinkPlan{Name: "wg0", MTU: 1280, Address: netip.MustParsePrefix("10.7.0.2/32"), Routes: []netip.Prefix{
		netip.MustParsePrefix("10.7.0.1/32"), netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/12")}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("planLink (-want +got):\n%s", diff)
	}
}
