package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/shadowagent"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const sekritPrefix = "sekrit-prefix-4242"

func keys(t *testing.T) (priv, peerPub meshspec.Key) {
	t.Helper()
	k, err := meshspec.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	p, err := meshspec.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k, p.PublicKey()
}

func b64(k meshspec.Key) string { return base64.StdEncoding.EncodeToString(k[:]) }

// TestHelp checks that --help documents every flag with its variable, every Config field through
// a flag, and the VK template fields, and never prints a secret given in the environment.
func TestHelp(t *testing.T) {
	priv, _ := keys(t)
	var out bytes.Buffer
	err := run(t.Context(), []string{"--help"}, env(map[string]string{"SHADOW_PATH_PREFIX": sekritPrefix, "SHADOW_PRIVATE_KEY": b64(priv)}), &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help = %v", err)
	}
	help := out.String()
	for _, f := range flagSpecs {
		if !strings.Contains(help, "  -"+f.name+" string\n") || !strings.Contains(help, "["+f.env+"]") {
			t.Errorf("--help does not document -%s [%s]", f.name, f.env)
		}
	}
	for _, want := range []string{"-version", ".RandomPassword", ".WGPrivateKey", ".ClientPublicKey", ".ExposedPorts", ".Name", ".Namespace",
		".WildcardDNS", `(default ":28080")`, `(default ":9102")`, `(default "127.0.0.1:51820")`, "POD_IP", "--path-prefix-file="} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if strings.Contains(help, sekritPrefix) || strings.Contains(help, b64(priv)) {
		t.Error("--help shows a secret from the environment")
	}
	// Every Config field but the logger is set by a flag.
	fields := map[string]bool{}
	for _, f := range flagSpecs {
		for _, name := range strings.Split(f.field, ",") {
			fields[name] = true
		}
	}
	ct := reflect.TypeFor[shadowagent.Config]()
	for i := range ct.NumField() {
		if name := ct.Field(i).Name; name != "Logger" && !fields[name] {
			t.Errorf("Config.%s has no flag", name)
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, env(nil), &out, &out); err != nil || out.String() != "shadow-agent dev\n" {
		t.Fatalf("run --version = %v, %q", err, out.String())
	}
}

// TestConfig maps flags, variables and files onto a Config: flags win over variables, files
// are trimmed.
func TestConfig(t *testing.T) {
	priv, peer := keys(t)
	dir := t.TempDir()
	prefixFile, keyFile := filepath.Join(dir, "prefix"), filepath.Join(dir, "key")
	if err := os.WriteFile(prefixFile, []byte(sekritPrefix+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(" "+b64(priv)+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{
		"--path-prefix-file", prefixFile, "--private-key-file", keyFile, "--listen", "127.0.0.1:8443",
		"--tls-cert", "/c.pem", "--tls-key", "/k.pem", "--destination", "127.0.0.1:51821", "--health-listen", ":9999",
		"--interface", "wgs", "--address", "10.9.0.1/24", "--peer-address", "10.9.0.2", "--mtu", "1420", "--keepalive", "30",
		"--exclude-tcp", "22, 80", "--reassert-interval", "1m", "--uapi-dir", "/run/wg", "--batch-size", "64",
		"--mode", "netstack", "--ports", "80,8080/TCP, 53/udp", "--max-flows", "100",
	}, env(map[string]string{
		"SHADOW_UDP_IDLE":        "5s",
		"SHADOW_PEER_PUBLIC_KEY": b64(peer), "SHADOW_MAIN_INTERFACE": "eth1", "POD_IP": "10.244.1.7", "SHADOW_EXCLUDE_UDP": "53",
		"SHADOW_LISTEN": "ignored:1", // the flag wins
	}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	want := shadowagent.Config{
		PathPrefix: sekritPrefix, PrivateKey: priv, PeerPublicKey: peer, ListenAddr: "127.0.0.1:8443",
		TLSCertFile: "/c.pem", TLSKeyFile: "/k.pem", Destination: netip.MustParseAddrPort("127.0.0.1:51821"), HealthAddr: ":9999",
		Interface: "wgs", Address: netip.MustParsePrefix("10.9.0.1/24"), PeerAddress: netip.MustParseAddr("10.9.0.2"), MTU: 1420,
		PersistentKeepalive: 30 * time.Second, MainInterface: "eth1", PodIP: netip.MustParseAddr("10.244.1.7"),
		ExcludeTCP: []uint16{22, 80}, ExcludeUDP: []uint16{53}, ReassertInterval: time.Minute, UAPIDir: "/run/wg", BatchSize: 64,
		Mode: meshspec.ModeNetstack, TCPPorts: []uint16{80, 8080}, UDPPorts: []uint16{53}, MaxFlows: 100, UDPIdle: 5 * time.Second,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}

	// Defaults: nothing set leaves the optional fields zero, for New to default.
	o, err = parseFlags(nil, env(map[string]string{"SHADOW_PATH_PREFIX": sekritPrefix, "SHADOW_PRIVATE_KEY": b64(priv),
		"SHADOW_PEER_PUBLIC_KEY": b64(peer), "SHADOW_KEEPALIVE": "1m"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got, err = o.config()
	if err != nil {
		t.Fatal(err)
	}
	if got.PathPrefix != sekritPrefix || got.PrivateKey != priv || got.ListenAddr != ":28080" || got.MTU != 1280 ||
		got.PersistentKeepalive != time.Minute || got.PodIP.IsValid() || got.MainInterface != "" {
		t.Errorf("config from the environment: %+v", got)
	}
}

// TestRunErrors checks that every error names the flag and its variable, and that no secret
// reaches an error or a log.
func TestRunErrors(t *testing.T) {
	priv, peer := keys(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	good := map[string]string{"SHADOW_PATH_PREFIX": sekritPrefix, "SHADOW_PRIVATE_KEY": b64(priv), "SHADOW_PEER_PUBLIC_KEY": b64(peer)}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, good, "flag provided but not defined"},
		{"extra argument", []string{"extra"}, good, "unexpected arguments"},
		{"bad log level", []string{"--log-level", "loud"}, good, "--log-level (SHADOW_LOG_LEVEL)"},
		{"bad log format", nil, with("SHADOW_LOG_FORMAT", "xml"), `--log-format (SHADOW_LOG_FORMAT): "xml"`},
		{"nothing set", nil, nil, "--path-prefix-file (SHADOW_PATH_PREFIX_FILE) or --path-prefix (SHADOW_PATH_PREFIX): required"},
		{"no private key", nil, with("SHADOW_PRIVATE_KEY", ""), "--private-key-file (SHADOW_PRIVATE_KEY_FILE) or --private-key (SHADOW_PRIVATE_KEY): required"},
		{"prefix and file", []string{"--path-prefix-file", empty}, good, "--path-prefix (SHADOW_PATH_PREFIX): set it or --path-prefix-file (SHADOW_PATH_PREFIX_FILE), not both"},
		{"missing file", nil, with("SHADOW_PRIVATE_KEY", "", "SHADOW_PRIVATE_KEY_FILE", filepath.Join(dir, "nope")), "--private-key-file (SHADOW_PRIVATE_KEY_FILE): read secret file"},
		{"empty file", []string{"--private-key-file", empty}, with("SHADOW_PRIVATE_KEY", ""), "--private-key-file (SHADOW_PRIVATE_KEY_FILE): secret file " + empty + " is empty"},
		{"big file", []string{"--path-prefix-file", big}, with("SHADOW_PATH_PREFIX", ""), "larger than 4096 bytes"},
		{"bad key", []string{"--private-key", sekritPrefix}, good, "--private-key (SHADOW_PRIVATE_KEY): key must be 32 bytes"},
		{"bad peer key", []string{"--peer-public-key", "AAAA"}, good, "--peer-public-key (SHADOW_PEER_PUBLIC_KEY): key must be"},
		{"peer is own key", []string{"--peer-public-key", b64(priv.PublicKey())}, good, "--peer-public-key (SHADOW_PEER_PUBLIC_KEY): is the shadow's own public key"},
		{"bad mtu", []string{"--mtu", "big"}, good, "--mtu (SHADOW_MTU)"},
		{"mtu out of range", []string{"--mtu", "100"}, good, "--mtu (SHADOW_MTU): 100 is outside"},
		{"bad port list", nil, with("SHADOW_EXCLUDE_TCP", "80,http"), `--exclude-tcp (SHADOW_EXCLUDE_TCP): "http" is not a port`},
		{"bad keepalive", []string{"--keepalive", "soon"}, good, "--keepalive (SHADOW_KEEPALIVE)"},
		{"bad pod ip", nil, with("POD_IP", "fd00::1"), "--pod-ip (POD_IP): fd00::1 is not an IPv4 unicast address"},
		{"bad listen", []string{"--listen", ":0"}, good, "--listen (SHADOW_LISTEN)"},
		{"same ports", []string{"--health-listen", ":28080"}, good, "--health-listen (SHADOW_HEALTH_LISTEN): port 28080 is also the tunnel's"},
		{"tls half", []string{"--tls-cert", "/c.pem"}, good, "--tls-key (SHADOW_TLS_KEY): set both"},
		{"several errors", []string{"--mtu", "1", "--interface", "a/b"}, good, "--interface (SHADOW_INTERFACE)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, logs bytes.Buffer
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := run(ctx, tc.args, env(tc.env), &out, &logs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run = %v, want an error containing %q", err, tc.want)
			}
			for _, s := range []string{sekritPrefix, b64(priv)} {
				if strings.Contains(err.Error(), s) || strings.Contains(logs.String(), s) || strings.Contains(out.String(), s) {
					t.Errorf("a secret leaked: %v\n%s%s", err, logs.String(), out.String())
				}
			}
		})
	}
}
