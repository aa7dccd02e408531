package shadowagent

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
			got := uapiConfig(c.withDefaults())
			path := filepath.Join("testdata", "uapi-"+tc.name+".golden")
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
		if err := dev.IpcSet(uapiConfig(c)); err != nil {
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
	p, err := readPeer(dev)
	if err != nil {
		t.Fatal(err)
	}
	if p.PublicKey != c.PeerPublicKey || !p.LastHandshake.IsZero() || p.Endpoint != "127.0.0.1:51820" {
		t.Errorf("readPeer: key match %v, handshake %v, endpoint %q; want the peer, none, the label",
			p.PublicKey == c.PeerPublicKey, p.LastHandshake, p.Endpoint)
	}
}

var peerCases = []struct {
	name string
	in   string
	want []peerState
	err  string
}{
	{name: "device only", in: "private_key=" + strings.Repeat("ab", 32) + "\nlisten_port=51820\n"},
	{name: "one peer, no handshake", in: "private_key=" + strings.Repeat("ab", 32) + "\nlisten_port=51820\npublic_key=" + strings.Repeat("01", 32) +
		"\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nrx_bytes=0\ntx_bytes=0\npersistent_keepalive_interval=25\nallowed_ip=10.7.0.2/32\nprotocol_version=1\nerrno=0\n\n",
		want: []peerState{{PublicKey: meshspec.Key(bytesOf(0x01))}}},
	{name: "one peer, handshake", in: "public_key=" + strings.Repeat("01", 32) + "\nendpoint=192.0.2.1:40000\nrx_bytes=92\ntx_bytes=148\n" +
		"last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\nunknown_key=whatever\n",
		want: []peerState{{PublicKey: meshspec.Key(bytesOf(0x01)), Endpoint: "192.0.2.1:40000", RxBytes: 92, TxBytes: 148, LastHandshake: time.Unix(1700000000, 5)}}},
	{name: "two peers, text after the end", in: "public_key=" + strings.Repeat("01", 32) + "\nrx_bytes=1\npublic_key=" + strings.Repeat("02", 32) + "\ntx_bytes=2\n\nrx_bytes=x\n",
		want: []peerState{{PublicKey: meshspec.Key(bytesOf(0x01)), RxBytes: 1}, {PublicKey: meshspec.Key(bytesOf(0x02)), TxBytes: 2}}},
	{name: "no equals", in: "public_key\n", err: "no '='"},
	{name: "short key", in: "public_key=abcd\n", err: "hex digits"},
	{name: "bad hex", in: "public_key=" + strings.Repeat("zz", 32) + "\n", err: "not hex"},
	{name: "bad counter", in: "public_key=" + strings.Repeat("01", 32) + "\ntx_bytes=-1\n", err: "tx_bytes is not a number"},
	{name: "bad nsec", in: "public_key=" + strings.Repeat("01", 32) + "\nlast_handshake_time_nsec=1000000000\n", err: "out of range"},
	{name: "negative sec", in: "public_key=" + strings.Repeat("01", 32) + "\nlast_handshake_time_sec=-1\n", err: "out of range"},
	{name: "errno", in: "errno=-22\n", err: "errno=-22"},
	{name: "bad device line is not quoted", in: "private_key=secretsecret\nlisten_port=x\n"},
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

// FuzzParsePeers checks that the parser never panics, never keeps more peers than the text has
// public_key lines, and never quotes the device's private key in an error.
func FuzzParsePeers(f *testing.F) {
	for _, tc := range peerCases {
		f.Add(tc.in)
	}
	f.Add(uapiConfig(testConfig().withDefaults()))
	f.Fuzz(func(t *testing.T, text string) {
		peers, err := parsePeers(text)
		if err == nil && len(peers) > strings.Count(text, "public_key=") {
			t.Fatalf("%d peers from %d public_key lines", len(peers), strings.Count(text, "public_key="))
		}
		if err != nil {
			for line := range strings.Lines(text) {
				if v, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "private_key="); ok && len(v) >= 8 && strings.Contains(err.Error(), v) {
					t.Fatalf("error %q quotes the private key", err)
				}
			}
		}
	})
}

func TestPlanLink(t *testing.T) {
	got := planLink(testConfig().withDefaults())
	want := linkPlan{Name: "wg0", MTU: 1280, Address: netip.MustParsePrefix("10.7.0.1/32"),
		Routes: []netip.Prefix{netip.MustParsePrefix("10.7.0.2/32")}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("planLink (-want +got):\n%s", diff)
	}
}
