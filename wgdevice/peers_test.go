package wgdevice

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// fixedKey returns a stable key.
func fixedKey(seed byte) meshspec.Key {
	var k meshspec.Key
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

var testPeerKey = fixedKey(101).PublicKey()

// testConfig is UAPI "set" text for a device with one peer, testPeerKey, whose endpoint is a
// label.
func testConfig() string {
	priv := fixedKey(1)
	return "private_key=" + hex.EncodeToString(priv[:]) + "\nreplace_peers=true\n" +
		"public_key=" + hex.EncodeToString(testPeerKey[:]) + "\nendpoint=127.0.0.1:51820\n" +
		"persistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.7.0.2/32\n"
}

// testDevice is a real wireguard-go device on an in-memory TUN that is never brought up, so
// its Bind opens no socket: enough to check what the device reports. With configure, it has
// the one peer of testConfig.
func testDevice(t *testing.T, configure bool) *device.Device {
	t.Helper()
	dev := device.NewDevice(tuntest.NewChannelTUN().TUN(), conn.NewDefaultBind(),
		&device.Logger{Verbosef: device.DiscardLogf, Errorf: device.DiscardLogf})
	t.Cleanup(dev.Close)
	if configure {
		if err := dev.IpcSet(testConfig()); err != nil {
			t.Fatalf("IpcSet: %v", err)
		}
	}
	return dev
}

func TestReadPeer(t *testing.T) {
	p, err := ReadPeer(testDevice(t, true))
	if err != nil {
		t.Fatal(err)
	}
	if p.PublicKey != testPeerKey || !p.LastHandshake.IsZero() || p.Endpoint != "127.0.0.1:51820" {
		t.Errorf("ReadPeer: key match %v, handshake %v, endpoint %q; want the peer, none, the label",
			p.PublicKey == testPeerKey, p.LastHandshake, p.Endpoint)
	}
	if _, err := ReadPeer(testDevice(t, false)); err == nil || !strings.Contains(err.Error(), "0 peers") {
		t.Errorf("ReadPeer of a device without peers = %v, want 0 peers", err)
	}
}

var peerCases = []struct {
	name string
	in   string
	want []Peer
	err  string
}{
	{name: "device only", in: "private_key=" + strings.Repeat("ab", 32) + "\nlisten_port=51820\n"},
	{name: "one peer, no handshake", in: "private_key=" + strings.Repeat("ab", 32) + "\nlisten_port=51820\npublic_key=" + strings.Repeat("01", 32) +
		"\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nrx_bytes=0\ntx_bytes=0\npersistent_keepalive_interval=25\nallowed_ip=10.7.0.2/32\nprotocol_version=1\nerrno=0\n\n",
		want: []Peer{{PublicKey: meshspec.Key(bytesOf(0x01))}}},
	{name: "one peer, no handshake, label endpoint", in: "private_key=" + strings.Repeat("ab", 32) + "\npublic_key=" + strings.Repeat("01", 32) +
		"\nendpoint=127.0.0.1:51820\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nrx_bytes=0\ntx_bytes=148\nallowed_ip=10.7.0.1/32\n",
		want: []Peer{{PublicKey: meshspec.Key(bytesOf(0x01)), Endpoint: "127.0.0.1:51820", TxBytes: 148}}},
	{name: "one peer, handshake", in: "public_key=" + strings.Repeat("01", 32) + "\nendpoint=192.0.2.1:40000\nrx_bytes=92\ntx_bytes=148\n" +
		"last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\nunknown_key=whatever\n",
		want: []Peer{{PublicKey: meshspec.Key(bytesOf(0x01)), Endpoint: "192.0.2.1:40000", RxBytes: 92, TxBytes: 148, LastHandshake: time.Unix(1700000000, 5)}}},
	{name: "two peers and socket framing", in: "public_key=" + strings.Repeat("01", 32) + "\nrx_bytes=92\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
		"public_key=" + strings.Repeat("02", 32) + "\nprotocol_version=1\nerrno=0\n\nignored=after the end\n",
		want: []Peer{{PublicKey: meshspec.Key(bytesOf(0x01)), RxBytes: 92, LastHandshake: time.Unix(1700000000, 5)}, {PublicKey: meshspec.Key(bytesOf(0x02))}}},
	{name: "two peers, text after the end", in: "public_key=" + strings.Repeat("01", 32) + "\nrx_bytes=1\npublic_key=" + strings.Repeat("02", 32) + "\ntx_bytes=2\n\nrx_bytes=x\n",
		want: []Peer{{PublicKey: meshspec.Key(bytesOf(0x01)), RxBytes: 1}, {PublicKey: meshspec.Key(bytesOf(0x02)), TxBytes: 2}}},
	{name: "no equals", in: "public_key\n", err: "no '='"},
	{name: "short key", in: "public_key=abcd\n", err: "hex digits"},
	{name: "bad hex", in: "public_key=" + strings.Repeat("zz", 32) + "\n", err: "not hex"},
	{name: "bad rx counter", in: "public_key=" + strings.Repeat("01", 32) + "\nrx_bytes=-1\n", err: "rx_bytes is not a number"},
	{name: "bad tx counter", in: "public_key=" + strings.Repeat("01", 32) + "\ntx_bytes=-1\n", err: "tx_bytes is not a number"},
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
			got, err := ParsePeers(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParsePeers error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParsePeers (-want +got):\n%s", diff)
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
	f.Add(testConfig())
	f.Fuzz(func(t *testing.T, text string) {
		peers, err := ParsePeers(text)
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
