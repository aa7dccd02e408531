package shadowagent

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
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

func TestUAPIConfigGolden(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
	}{
		{"default", func(*Config) {}},
		{"custom", func(c *Config) {
			c.PeerAddress, c.PersistentKeepalive = netip.MustParseAddr("10.9.0.2"), 15*time.Second
			c.Destination = netip.MustParseAddrPort("127.0.0.1:51821")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			tc.change(&c)
			got := identity(c.withDefaults()).UAPI()
			path := filepath.Join("testdata", "uapi-"+tc.name+".golden")
			goldentest.Check(t, path, []byte(got))
		})
	}
}

// testDevice is a real wireguard-go device on an in-memory TUN, with the tunnel's ServerBind
// over a server that never runs: enough to check what the device accepts and reports.
func testDevice(t *testing.T) *device.Device {
	t.Helper()
	srv, err := tunnel.NewServer(tunnel.ServerConfig{PathPrefix: "x"})
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), tunnel.NewServerBind(srv),
		&device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf})
	t.Cleanup(dev.Close)
	return dev
}

// TestUAPIConfigAccepted feeds the computed text to a real device, twice, and reads its state
// back.
func TestUAPIConfigAccepted(t *testing.T) {
	c := testConfig().withDefaults()
	dev := testDevice(t)
	for range 2 { // replace_*: applying twice is fine
		if err := dev.IpcSet(identity(c).UAPI()); err != nil {
			t.Fatalf("IpcSet: %v", err)
		}
	}
	text, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	clamped := c.PrivateKey // wireguard-go clamps private keys, as Curve25519 does
	clamped[0] &= 248
	clamped[31] = clamped[31]&127 | 64
	for _, want := range []string{
		"private_key=" + hex.EncodeToString(clamped[:]),
		"listen_port=51820",
		"public_key=" + hex.EncodeToString(c.PeerPublicKey[:]),
		"persistent_keepalive_interval=25",
		"allowed_ip=10.7.0.2/32",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("device state lacks %q", want)
		}
	}
	if n := strings.Count(text, "allowed_ip="); n != 1 {
		t.Errorf("device has %d allowed IPs, want 1", n)
	}
	if !strings.Contains(text, "endpoint=127.0.0.1:51820\n") {
		t.Error("the peer lacks its label endpoint")
	}
	p, err := wgdevice.ReadPeer(dev)
	if err != nil {
		t.Fatal(err)
	}
	if p.PublicKey != c.PeerPublicKey || !p.LastHandshake.IsZero() || p.Endpoint != "127.0.0.1:51820" {
		t.Errorf("ReadPeer: key match %v, handshake %v, endpoint %q; want the peer, none, the label",
			p.PublicKey == c.PeerPublicKey, p.LastHandshake, p.Endpoint)
	}
}

func TestPlanLink(t *testing.T) {
	got := planLink(testConfig().withDefaults())
	want := wgdevice.LinkPlan{Name: "wg0", MTU: 1280, Address: netip.MustParsePrefix("10.7.0.1/32"),
		Routes: []netip.Prefix{netip.MustParsePrefix("10.7.0.2/32")}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("planLink (-want +got):\n%s", diff)
	}
}
