package meshagent

import (
	"encoding/hex"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

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
	got := uapiConfig(s)
	path := filepath.Join("testdata", "uapi.golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("uapiConfig (-want +got):\n%s", diff)
	}
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
	if err := dev.IpcSet(uapiConfig(s)); err != nil {
		t.Fatalf("IpcSet: %v", err)
	}
	if err := dev.IpcSet(uapiConfig(s)); err != nil { // replace_*: applying twice is fine
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
	p, err := readPeer(dev)
	if err != nil {
		t.Fatal(err)
	}
	if p.PublicKey != s.PeerPublicKey || !p.LastHandshake.IsZero() {
		t.Errorf("readPeer = key match %v, handshake %v; want the peer, no handshake", p.PublicKey == s.PeerPublicKey, p.LastHandshake)
	}
}

var peerCases = []struct {
	name string
	in   string
	want []peerStatus
	err  string
}{
	{name: "device only", in: "private_key=" + strings.Repeat("ab", 32) + "\nlisten_port=51820\n", want: nil},
	{name: "one peer, no handshake", in: "private_key=" + strings.Repeat("ab", 32) + "\npublic_key=" + strings.Repeat("01", 32) +
		"\nendpoint=127.0.0.1:51820\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nrx_bytes=0\ntx_bytes=148\nallowed_ip=10.7.0.1/32\n",
		want: []peerStatus{{PublicKey: meshspec.Key(bytesOf(0x01)), TxBytes: 148}}},
	{name: "two peers and socket framing", in: "public_key=" + strings.Repeat("01", 32) + "\nrx_bytes=92\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
		"public_key=" + strings.Repeat("02", 32) + "\nprotocol_version=1\nerrno=0\n\nignored=after the end\n",
		want: []peerStatus{{PublicKey: meshspec.Key(bytesOf(0x01)), RxBytes: 92, LastHandshake: time.Unix(1700000000, 5)}, {PublicKey: meshspec.Key(bytesOf(0x02))}}},
	{name: "no equals", in: "public_key\n", err: "no '='"},
	{name: "short key", in: "public_key=abcd\n", err: "hex digits"},
	{name: "bad hex", in: "public_key=" + strings.Repeat("zz", 32) + "\n", err: "invalid byte"},
	{name: "bad counter", in: "public_key=" + strings.Repeat("01", 32) + "\nrx_bytes=-1\n", err: "rx_bytes"},
	{name: "bad nsec", in: "public_key=" + strings.Repeat("01", 32) + "\nlast_handshake_time_nsec=1000000000\n", err: "out of range"},
	{name: "errno", in: "errno=-22\n", err: "errno=-22"},
}

func bytesOf(b byte) (k [32]byte) {
	for i := range k {
		k[i] = b
	}
	return k
}

func TestParsePeers(t *testing.T) {
	for _, tc := range peerCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePeers(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parsePeers error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parsePeers (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzParsePeers checks that the parser of device state never panics and that it never keeps
// more peers than the text has public_key lines.
func FuzzParsePeers(f *testing.F) {
	for _, tc := range peerCases {
		f.Add(tc.in)
	}
	f.Add(uapiConfig(testSpec()))
	f.Fuzz(func(t *testing.T, text string) {
		peers, err := parsePeers(text)
		if err == nil && len(peers) > strings.Count(text, "public_key=") {
			t.Fatalf("%d peers from %d public_key lines", len(peers), strings.Count(text, "public_key="))
		}
	})
}

func TestPlanLink(t *testing.T) {
	got := planLink(testSpec())
	want := linkPlan{Name: "wg0", MTU: 1280, Address: netip.MustParsePrefix("10.7.0.2/32"), Routes: []netip.Prefix{
		netip.MustParsePrefix("10.7.0.1/32"), netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/12")}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("planLink (-want +got):\n%s", diff)
	}
}
