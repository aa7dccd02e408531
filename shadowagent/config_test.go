package shadowagent

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// fixedKey returns a stable key for golden files.
func fixedKey(seed byte) meshspec.Key {
	var k meshspec.Key
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

const testPrefix = "s3cr3t-pr3fix-9f8e7d"

// testConfig is a valid Config with fixed keys and every optional field unset.
func testConfig() Config {
	return Config{PathPrefix: testPrefix, PrivateKey: fixedKey(1), PeerPublicKey: fixedKey(101).PublicKey()}
}

func TestDefaults(t *testing.T) {
	got := testConfig().withDefaults()
	want := testConfig()
	want.ListenAddr, want.HealthAddr, want.Interface, want.UAPIDir = ":28080", ":9102", "wg0", "/var/run/wireguard"
	want.Destination = netip.MustParseAddrPort("127.0.0.1:51820")
	want.Address, want.PeerAddress = netip.MustParsePrefix("10.7.0.1/32"), netip.MustParseAddr("10.7.0.2")
	want.MTU, want.PersistentKeepalive = 1280, 25*time.Second
	want.Mode, want.MaxFlows, want.UDPIdle = meshspec.ModeKernel, 16384, time.Minute
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("withDefaults (-want +got):\n%s", diff)
	}
	if err := got.validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	if got.socketPath() != "/var/run/wireguard/wg0.sock" {
		t.Errorf("socket path %s", got.socketPath())
	}
	if diff := cmp.Diff([]uint16{28080, 9102}, got.excludedTCP()); diff != "" {
		t.Errorf("excludedTCP (-want +got):\n%s", diff)
	}
	got.ExcludeTCP = []uint16{22, 9102, 22}
	if diff := cmp.Diff([]uint16{28080, 9102, 22}, got.excludedTCP()); diff != "" {
		t.Errorf("excludedTCP with extras (-want +got):\n%s", diff)
	}
}

var configCases = []struct {
	name   string
	change func(*Config)
	fields []string // ConfigError.Field of each error, in order
	msg    string   // part of the message
}{
	{"valid", func(*Config) {}, nil, ""},
	{"valid, dialing", func(c *Config) {
		c.ConnectURL, c.ConnectHost, c.CAFile = "wss://10.0.0.1:443", "p-ns.remote.example", "/ca.crt"
	}, nil, ""},
	{"valid, everything set", func(c *Config) {
		c.ListenAddr, c.HealthAddr, c.Interface, c.MainInterface = "127.0.0.1:8443", "[::1]:9999", "wgs", "eth1"
		c.Address, c.PeerAddress = netip.MustParsePrefix("10.9.0.1/24"), netip.MustParseAddr("10.9.0.2")
		c.PodIP, c.MTU, c.PersistentKeepalive = netip.MustParseAddr("10.244.1.7"), 1420, time.Minute
		c.ExcludeTCP, c.ExcludeUDP, c.ReassertInterval = []uint16{22}, []uint16{53}, time.Second
	}, nil, ""},
	{"nothing set", func(c *Config) { *c = Config{} }, []string{"PathPrefix", "PrivateKey", "PeerPublicKey"}, "required"},
	{"prefix with a slash", func(c *Config) { c.PathPrefix = "a/b" }, []string{"PathPrefix"}, "one path segment"},
	{"prefix with a space", func(c *Config) { c.PathPrefix = "a b" }, []string{"PathPrefix"}, "one path segment"},
	{"prefix too long", func(c *Config) { c.PathPrefix = meshspec.Secret(strings.Repeat("x", 257)) }, []string{"PathPrefix"}, "at most 256"},
	{"own public key as peer", func(c *Config) { c.PeerPublicKey = c.PrivateKey.PublicKey() }, []string{"PeerPublicKey"}, "own public key"},
	{"listen without port", func(c *Config) { c.ListenAddr = "0.0.0.0" }, []string{"ListenAddr"}, "host:port"},
	{"listen on port 0", func(c *Config) { c.ListenAddr = ":0" }, []string{"ListenAddr"}, "numeric port"},
	{"named health port", func(c *Config) { c.HealthAddr = ":http" }, []string{"HealthAddr"}, "numeric port"},
	{"same ports", func(c *Config) { c.HealthAddr = "127.0.0.1:28080" }, []string{"HealthAddr"}, "also the tunnel's"},
	{"cert without key", func(c *Config) { c.TLSCertFile = "/tls.crt" }, []string{"TLSKeyFile"}, "both"},
	{"dial and serve tls", func(c *Config) { c.ConnectURL, c.TLSCertFile, c.TLSKeyFile = "wss://a.example", "/c", "/k" }, []string{"TLSCertFile"}, "serves no tunnel"},
	{"dial a path-less http url", func(c *Config) { c.ConnectURL = "https://a.example" }, []string{"ConnectURL"}, "ws://host"},
	{"connect host without url", func(c *Config) { c.ConnectHost = "a.example" }, []string{"ConnectHost"}, "only with ConnectURL"},
	{"ca file without url", func(c *Config) { c.CAFile = "/ca.crt" }, []string{"CAFile"}, "wss://"},
	{"ca file with ws url", func(c *Config) { c.ConnectURL, c.CAFile = "ws://a.example", "/ca.crt" }, []string{"CAFile"}, "wss://"},
	{"destination port 0", func(c *Config) { c.Destination = netip.MustParseAddrPort("127.0.0.1:0") }, []string{"Destination"}, "non-zero port"},
	{"interface too long", func(c *Config) { c.Interface = "wireguard-shadow0" }, []string{"Interface"}, "1 to 15 bytes"},
	{"interface with slash", func(c *Config) { c.Interface = "wg/0" }, []string{"Interface"}, "not allowed"},
	{"ipv6 address", func(c *Config) { c.Address = netip.MustParsePrefix("fd00::1/128") }, []string{"Address"}, "IPv4"},
	{"zero-length address", func(c *Config) { c.Address = netip.MustParsePrefix("10.7.0.1/0") }, []string{"Address"}, "zero-length"},
	{"peer is the shadow", func(c *Config) { c.PeerAddress = netip.MustParseAddr("10.7.0.1") }, []string{"PeerAddress"}, "also the shadow's"},
	{"multicast peer", func(c *Config) { c.PeerAddress = netip.MustParseAddr("224.0.0.1") }, []string{"PeerAddress"}, "unicast"},
	{"mtu too small", func(c *Config) { c.MTU = 100 }, []string{"MTU"}, "576..65535"},
	{"keepalive fraction", func(c *Config) { c.PersistentKeepalive = 1500 * time.Millisecond }, []string{"PersistentKeepalive"}, "whole number"},
	{"keepalive too long", func(c *Config) { c.PersistentKeepalive = 100000 * time.Second }, []string{"PersistentKeepalive"}, "outside"},
	{"main is the wireguard interface", func(c *Config) { c.MainInterface = "wg0" }, []string{"MainInterface"}, "also the WireGuard"},
	{"main interface invalid", func(c *Config) { c.MainInterface = "eth 0" }, []string{"MainInterface"}, "not allowed"},
	{"ipv6 pod ip", func(c *Config) { c.PodIP = netip.MustParseAddr("fd00::7") }, []string{"PodIP"}, "IPv4"},
	{"pod ip is the peer", func(c *Config) { c.PodIP = netip.MustParseAddr("10.7.0.2") }, []string{"PodIP"}, "mesh address"},
	{"exclude port 0", func(c *Config) { c.ExcludeTCP, c.ExcludeUDP = []uint16{80, 0}, []uint16{0} }, []string{"ExcludeTCP", "ExcludeUDP"}, "port 0"},
	{"negative interval", func(c *Config) { c.ReassertInterval = -time.Second }, []string{"ReassertInterval"}, "negative"},
	{"unknown mode", func(c *Config) { c.Mode = "userspace" }, []string{"Mode"}, "want \"kernel\" or \"netstack\""},
	{"netstack with its ports", func(c *Config) {
		c.Mode, c.TCPPorts, c.UDPPorts = meshspec.ModeNetstack, []uint16{80, 8080}, []uint16{53}
	}, nil, ""},
	{"declared port 0 or twice", func(c *Config) { c.TCPPorts, c.UDPPorts = []uint16{80, 0}, []uint16{53, 53} }, []string{"TCPPorts", "UDPPorts"}, ""},
	{"declared port is the tunnel's", func(c *Config) { c.TCPPorts = []uint16{28080} }, []string{"TCPPorts"}, "shadow's own"},
	{"negative flow bounds", func(c *Config) { c.MaxFlows, c.UDPIdle = -1, -time.Second }, []string{"MaxFlows", "UDPIdle"}, "negative"},
	{"socket path too long", func(c *Config) { c.UAPIDir = "/" + strings.Repeat("d", 110) }, []string{"UAPIDir"}, "longer than"},
	{"several at once", func(c *Config) { c.MTU, c.Interface, c.PodIP = 1, "", netip.MustParseAddr("::1") }, []string{"MTU", "PodIP"}, ""},
}

func TestValidate(t *testing.T) {
	for _, tc := range configCases {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			tc.change(&c)
			err := c.withDefaults().validate()
			var fields []string
			if joined, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range joined.Unwrap() {
					var ce *ConfigError
					if !errors.As(e, &ce) {
						t.Fatalf("error %v is not a *ConfigError", e)
					}
					fields = append(fields, ce.Field)
				}
			}
			if diff := cmp.Diff(tc.fields, fields); diff != "" {
				t.Errorf("fields at fault (-want +got):\n%s\nerror: %v", diff, err)
			}
			if tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)) {
				t.Errorf("error %v lacks %q", err, tc.msg)
			}
			if err != nil && tc.fields != nil && !strings.Contains(err.Error(), "config "+tc.fields[0]+": ") {
				t.Errorf("error %q does not name field %s", err, tc.fields[0])
			}
			if err != nil && tc.fields != nil && tc.fields[0] == "PathPrefix" && strings.Contains(err.Error(), string(c.PathPrefix)) && c.PathPrefix != "" {
				t.Errorf("error quotes the path prefix: %v", err)
			}
			if tc.fields != nil && tc.fields[0] == "ListenAddr" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Field != "ListenAddr" {
					t.Errorf("errors.As(*ConfigError) = %v", ce)
				}
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(Config{}); err == nil || !errors.Is(err, ErrRequired) {
		t.Errorf("New(zero) = %v, want ErrRequired", err)
	}
	c := testConfig()
	c.TLSCertFile, c.TLSKeyFile = "/nonexistent/tls.crt", "/nonexistent/tls.key"
	var ce *ConfigError
	if _, err := New(c); !errors.As(err, &ce) || ce.Field != "TLSCertFile" {
		t.Errorf("New with missing TLS files = %v, want a TLSCertFile error", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.TLSCertFile, c.TLSKeyFile = bad, bad
	if _, err := New(c); !errors.As(err, &ce) || !strings.Contains(err.Error(), "load tls key pair") {
		t.Errorf("New with bad TLS files = %v", err)
	}
}

// secretsOf lists every spelling of the config's secrets a log could leak.
func secretsOf(c Config) map[string]string {
	priv, pub := c.PrivateKey, c.PeerPublicKey
	return map[string]string{
		"path prefix":            string(c.PathPrefix),
		"private key, base64":    base64.StdEncoding.EncodeToString(priv[:]),
		"private key, hex":       hex.EncodeToString(priv[:]),
		"own public key, base64": base64.StdEncoding.EncodeToString(func() []byte { k := priv.PublicKey(); return k[:] }()),
		"peer key, base64":       base64.StdEncoding.EncodeToString(pub[:]),
		"peer key, hex":          hex.EncodeToString(pub[:]),
	}
}

// TestConfigLogValueRedacts logs a Config through both slog handlers and fmt: no secret shows.
func TestConfigLogValueRedacts(t *testing.T) {
	c := testConfig().withDefaults()
	c.PodIP = netip.MustParseAddr("10.244.1.7")
	c.ExcludeTCP = []uint16{22, 80}
	var out bytes.Buffer
	slog.New(slog.NewTextHandler(&out, nil)).Info("cfg", "config", c)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("cfg", "config", c, "ptr", &c)
	fmt.Fprintf(&out, "%v %+v %s\n", c.PathPrefix, c.PrivateKey, c.PeerPublicKey)
	for name, s := range secretsOf(c) {
		if strings.Contains(out.String(), s) {
			t.Errorf("the %s appears in:\n%s", name, out.String())
		}
	}
	for _, want := range []string{"config.path_prefix_set=true", "config.private_key_set=true", "config.pod_ip=10.244.1.7",
		"config.exclude_tcp=22,80", `"listen":":28080"`, `"interface":"wg0"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, out.String())
		}
	}
	var empty bytes.Buffer
	slog.New(slog.NewTextHandler(&empty, nil)).Info("cfg", "config", Config{})
	if !strings.Contains(empty.String(), "config.pod_ip=\"\"") || strings.Contains(empty.String(), "invalid") {
		t.Errorf("unset addresses logged as %s", empty.String())
	}
}
