package meshspec

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/goldentest"
)

var cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{})

// testKey returns a fixed key, different for each seed: golden files need stable keys.
func testKey(seed byte) Key {
	var k Key
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

var (
	podKey     = testKey(1)
	shadowKey  = testKey(101)
	testPrefix = Secret("pR3f1x-s3cr3t-4f9c")
)

// fullSpec sets every field, none to its default.
func fullSpec() Spec {
	return Spec{
		Version:             Version1,
		Interface:           "wg7a3c9e51d2b4f",
		PrivateKey:          podKey,
		PeerPublicKey:       shadowKey.PublicKey(),
		Address:             netip.MustParsePrefix("10.7.0.2/24"),
		PeerAddress:         netip.MustParseAddr("10.7.0.1"),
		MTU:                 1380,
		PersistentKeepalive: 15 * time.Second,
		Routes:              []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:10:96::/112")},
		DNS: DNS{
			Nameservers: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
			Searches:    []string{"team-a.svc.cluster.local", "svc.cluster.local", "cluster.local"},
		},
		Tunnel: Tunnel{
			URL:         "wss://10.20.30.40:443",
			PathPrefix:  testPrefix,
			Host:        "web-team-a.mesh.example.org",
			Destination: netip.MustParseAddrPort("127.0.0.1:51821"),
			Unmasked:    true,
			CAFile:      "/etc/mesh-agent/ca.crt",
			Nameservers: []netip.Addr{netip.MustParseAddr("10.43.0.10")},
		},
	}
}

// minimalSpec sets only the required fields.
func minimalSpec() Spec {
	return Spec{
		PrivateKey:    podKey,
		PeerPublicKey: shadowKey.PublicKey(),
		Tunnel:        Tunnel{URL: "ws://web-team-a.mesh.example.org", PathPrefix: testPrefix},
	}
}

func b64(k Key) string { return base64.StdEncoding.EncodeToString(k[:]) }

// minimalJSON is the smallest valid mesh.json, with text spliced in before the tunnel.
func minimalJSON(extra string) string {
	return `{"version":"v1","privateKey":"` + b64(podKey) + `","peerPublicKey":"` + b64(shadowKey.PublicKey()) + `",` +
		extra + `"tunnel":{"url":"ws://web-team-a.mesh.example.org","pathPrefix":"` + string(testPrefix) + `"}}`
}

// parseCases is the table of TestParse, also the seed corpus of FuzzParse.
var parseCases = []struct {
	name  string
	in    string
	want  func() Spec // nil: an error is expected
	field string      // the FieldError.Field expected, if any
	msg   string      // a substring of the error
}{
	{name: "minimal gets defaults", in: minimalJSON(""), want: func() Spec { return minimalSpec().WithDefaults() }},
	{name: "bare address is a host prefix", in: minimalJSON(`"address":"10.7.0.9",`), want: func() Spec {
		s := minimalSpec().WithDefaults()
		s.Address = netip.MustParsePrefix("10.7.0.9/32")
		return s
	}},
	{name: "explicit defaults", in: minimalJSON(`"interface":"wg0","mtu":1280,"persistentKeepalive":"25s","address":"10.7.0.2/32","peerAddress":"10.7.0.1",`),
		want: func() Spec { return minimalSpec().WithDefaults() }},
	{name: "routes and dns", in: minimalJSON(`"routes":["10.96.0.0/16"],"dns":{"nameservers":["10.96.0.10"],"searches":["cluster.local"]},`), want: func() Spec {
		s := minimalSpec().WithDefaults()
		s.Routes = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")}
		s.DNS = DNS{Nameservers: []netip.Addr{netip.MustParseAddr("10.96.0.10")}, Searches: []string{"cluster.local"}}
		return s
	}},

	{name: "netstack mode", in: minimalJSON(`"mode":"netstack",`), want: func() Spec {
		s := minimalSpec().WithDefaults()
		s.Mode = ModeNetstack
		return s
	}},
	{name: "forwards", in: minimalJSON(`"forwards":[{"listen":"127.0.0.1:5432","to":"db.team-a:5432"},{"protocol":"udp","listen":"127.0.0.1:8125","to":"10.96.0.20:8125"}],`), want: func() Spec {
		s := minimalSpec().WithDefaults()
		s.Forwards = []Forward{{Listen: netip.MustParseAddrPort("127.0.0.1:5432"), To: "db.team-a:5432"},
			{Protocol: "udp", Listen: netip.MustParseAddrPort("127.0.0.1:8125"), To: "10.96.0.20:8125"}}
		return s
	}},
	{name: "forward off loopback", in: minimalJSON(`"forwards":[{"listen":"0.0.0.0:5432","to":"db:5432"}],`), field: "forwards[0].listen", msg: "loopback"},
	{name: "forward without port", in: minimalJSON(`"forwards":[{"listen":"127.0.0.1:5432","to":"db"}],`), field: "forwards[0].to", msg: "host:port"},
	{name: "forward twice", in: minimalJSON(`"forwards":[{"listen":"127.0.0.1:5432","to":"db:5432"},{"listen":"127.0.0.2:5432","to":"db:5433"}],`), field: "forwards[1].listen", msg: "twice"},
	{name: "forward protocol", in: minimalJSON(`"forwards":[{"protocol":"sctp","listen":"127.0.0.1:5432","to":"db:5432"}],`), field: "forwards[0].protocol", msg: "tcp or udp"},
	{name: "unknown mode", in: minimalJSON(`"mode":"userspace",`), field: "mode", msg: `want "kernel" or "netstack"`},
	{name: "empty input", in: "", msg: "empty input"},
	{name: "not an object", in: `[1]`, msg: "must be a JSON object"},
	{name: "syntax error", in: `{"version":"v1",}`, msg: "decode json at byte"},
	{name: "trailing data", in: minimalJSON("") + ` {}`, msg: "trailing data"},
	{name: "too big", in: minimalJSON(`"interface":"` + strings.Repeat(" ", MaxSize) + `",`), msg: "at most"},
	{name: "missing version", in: strings.Replace(minimalJSON(""), `"version":"v1",`, "", 1), field: "version", msg: "required"},
	{name: "unknown version", in: strings.Replace(minimalJSON(""), `"v1"`, `"v2"`, 1), field: "version", msg: `"v2"`},
	{name: "unknown field", in: minimalJSON(`"listenPort":51820,`), field: "listenPort", msg: "unknown field"},
	{name: "unknown nested field", in: strings.Replace(minimalJSON(""), `"url"`, `"sni":"x","url"`, 1), field: "sni", msg: "unknown field"},
	{name: "wrong type", in: minimalJSON(`"mtu":"1280",`), field: "mtu", msg: "want an integer"},
	{name: "wrong nested type", in: strings.Replace(minimalJSON(""), `"url"`, `"unmasked":"yes","url"`, 1), field: "tunnel.unmasked", msg: "want a boolean"},
	{name: "missing tunnel", in: `{"version":"v1","privateKey":"` + b64(podKey) + `","peerPublicKey":"` + b64(shadowKey) + `"}`, field: "tunnel", msg: "required"},
	{name: "missing private key", in: strings.Replace(minimalJSON(""), `"privateKey":"`+b64(podKey)+`",`, "", 1), field: "privateKey", msg: "required"},
	{name: "short key", in: strings.Replace(minimalJSON(""), b64(podKey), "AAAA", 1), field: "privateKey", msg: "44 characters"},
	{name: "key not base64", in: strings.Replace(minimalJSON(""), b64(podKey), strings.Repeat("!", 43)+"=", 1), field: "privateKey", msg: "illegal base64"},
	{name: "peer is self", in: strings.Replace(minimalJSON(""), b64(shadowKey.PublicKey()), b64(podKey.PublicKey()), 1), field: "peerPublicKey", msg: "public key of privateKey"},
	{name: "interface too long", in: minimalJSON(`"interface":"wg0123456789abcd",`), field: "interface", msg: "1 to 15 bytes"},
	{name: "interface with slash", in: minimalJSON(`"interface":"wg/0",`), field: "interface", msg: "not allowed"},
	{name: "interface template", in: minimalJSON(`"interface":"wg%d",`), field: "interface", msg: "not allowed"},
	{name: "bad address", in: minimalJSON(`"address":"10.7.0.300/32",`), field: "address"},
	{name: "zoned address", in: minimalJSON(`"address":"fe80::1%eth0",`), field: "address", msg: "zone"},
	{name: "unspecified address", in: minimalJSON(`"address":"0.0.0.0/32",`), field: "address", msg: "unicast"},
	{name: "peer is pod address", in: minimalJSON(`"peerAddress":"10.7.0.2",`), field: "peerAddress", msg: "also the pod's"},
	{name: "mtu too small", in: minimalJSON(`"mtu":500,`), field: "mtu", msg: "outside 576..65535"},
	{name: "mtu too small for ipv6", in: minimalJSON(`"mtu":1200,"routes":["fd00::/64"],`), field: "mtu", msg: "IPv6"},
	{name: "keepalive not a duration", in: minimalJSON(`"persistentKeepalive":"25",`), field: "persistentKeepalive", msg: "missing unit"},
	{name: "keepalive fraction", in: minimalJSON(`"persistentKeepalive":"2.5s",`), field: "persistentKeepalive", msg: "whole number"},
	{name: "keepalive too long", in: minimalJSON(`"persistentKeepalive":"24h",`), field: "persistentKeepalive", msg: "outside"},
	{name: "route host bits", in: minimalJSON(`"routes":["10.96.0.0/12","10.96.0.1/16"],`), field: "routes[1]", msg: "did you mean 10.96.0.0/16"},
	{name: "route default", in: minimalJSON(`"routes":["0.0.0.0/0"],`), field: "routes[0]", msg: "route everything"},
	{name: "route twice", in: minimalJSON(`"routes":["10.96.0.0/16","10.96.0.0/16"],`), field: "routes[1]", msg: "twice"},
	{name: "route empty", in: minimalJSON(`"routes":[""],`), field: "routes[0]", msg: "empty"},
	{name: "route garbage", in: minimalJSON(`"routes":["cluster"],`), field: "routes[0]"},
	{name: "too many nameservers", in: minimalJSON(`"dns":{"nameservers":["1.1.1.1","1.0.0.1","8.8.8.8","8.8.4.4"]},`), field: "dns.nameservers", msg: "at most 3"},
	{name: "bad nameserver", in: minimalJSON(`"dns":{"nameservers":["10.96.0.10","dns"]},`), field: "dns.nameservers[1]"},
	{name: "bad tunnel nameserver", in: strings.Replace(minimalJSON(""), `"url"`, `"nameservers":["10.0.0.10","ns1"],"url"`, 1), field: "tunnel.nameservers[1]"},
	{name: "multicast tunnel nameserver", in: strings.Replace(minimalJSON(""), `"url"`, `"nameservers":["224.0.0.1"],"url"`, 1), field: "tunnel.nameservers[0]", msg: "unicast"},
	{name: "too many tunnel nameservers", in: strings.Replace(minimalJSON(""), `"url"`, `"nameservers":["10.0.0.1","10.0.0.2","10.0.0.3","10.0.0.4"],"url"`, 1), field: "tunnel.nameservers", msg: "at most 3"},
	{name: "bad search", in: minimalJSON(`"dns":{"searches":["-bad.local"]},`), field: "dns.searches[0]", msg: "not a domain"},
	{name: "url scheme", in: strings.Replace(minimalJSON(""), "ws://", "http://", 1), field: "tunnel.url", msg: `scheme "http"`},
	{name: "url with path", in: strings.Replace(minimalJSON(""), "example.org", "example.org/x/events", 1), field: "tunnel.url", msg: "without path"},
	{name: "url without host", in: strings.Replace(minimalJSON(""), "web-team-a.mesh.example.org", "", 1), field: "tunnel.url", msg: "no host"},
	{name: "missing prefix", in: strings.Replace(minimalJSON(""), string(testPrefix), "", 1), field: "tunnel.pathPrefix", msg: "required"},
	{name: "prefix with slash", in: strings.Replace(minimalJSON(""), string(testPrefix), "a/"+string(testPrefix), 1), field: "tunnel.pathPrefix", msg: "one path segment"},
	{name: "listen", in: strings.Replace(minimalJSON(""), `"url":"ws://web-team-a.mesh.example.org"`, `"listen":":28081"`, 1), want: func() Spec {
		s := minimalSpec().WithDefaults()
		s.Tunnel.URL, s.Tunnel.Listen = "", ":28081"
		return s
	}},
	{name: "listen and url", in: strings.Replace(minimalJSON(""), `"url"`, `"listen":":28081","url"`, 1), field: "tunnel.url", msg: "not with tunnel.listen"},
	{name: "listen without port", in: strings.Replace(minimalJSON(""), `"url":"ws://web-team-a.mesh.example.org"`, `"listen":"0.0.0.0"`, 1), field: "tunnel.listen", msg: "host:port"},
	{name: "listen on a name", in: strings.Replace(minimalJSON(""), `"url":"ws://web-team-a.mesh.example.org"`, `"listen":"pod:28081"`, 1), field: "tunnel.listen", msg: "IP address"},
	{name: "listen with nameservers", in: strings.Replace(minimalJSON(""), `"url":"ws://web-team-a.mesh.example.org"`, `"listen":":28081","nameservers":["10.0.0.10"]`, 1), field: "tunnel.nameservers", msg: "not with tunnel.listen"},
	{name: "neither url nor listen", in: strings.Replace(minimalJSON(""), `"url":"ws://web-team-a.mesh.example.org",`, ``, 1), field: "tunnel.url", msg: "or tunnel.listen"},
	{name: "ca file on ws", in: strings.Replace(minimalJSON(""), `"url"`, `"caFile":"/ca.crt","url"`, 1), field: "tunnel.caFile", msg: "not wss"},
	{name: "destination without port", in: strings.Replace(minimalJSON(""), `"url"`, `"destination":"127.0.0.1","url"`, 1), field: "tunnel.destination"},
	{name: "destination port zero", in: strings.Replace(minimalJSON(""), `"url"`, `"destination":"127.0.0.1:0","url"`, 1), field: "tunnel.destination", msg: "non-zero port"},
}

func TestParse(t *testing.T) {
	secrets := secretStrings(podKey, shadowKey.PublicKey(), testPrefix)
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if tc.want != nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if diff := cmp.Diff(tc.want(), got, cmpNetip); diff != "" {
					t.Errorf("Parse (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want an error")
			}
			if tc.field != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field {
					t.Errorf("error %q does not name field %q", err, tc.field)
				}
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error %q quotes a secret", err)
				}
			}
		})
	}
}

// TestValidateReportsEveryField checks that one Validate call lists all wrong fields.
func TestValidateReportsEveryField(t *testing.T) {
	s := Spec{MTU: 10, Routes: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}
	err := s.Validate()
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a FieldError", e)
		}
		got = append(got, fe.Field)
	}
	want := []string{"privateKey", "peerPublicKey", "routes[0]", "mtu", "tunnel.url", "tunnel.pathPrefix"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	if !errors.Is(err, ErrRequired) {
		t.Errorf("errors.Is(%v, ErrRequired) = false", err)
	}
}

func TestAllowedIPs(t *testing.T) {
	got := fullSpec().AllowedIPs()
	want := []netip.Prefix{netip.MustParsePrefix("10.7.0.1/32"), netip.MustParsePrefix("10.244.0.0/16"),
		netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("fd00:10:96::/112")}
	if diff := cmp.Diff(want, got, cmpNetip); diff != "" {
		t.Errorf("AllowedIPs (-want +got):\n%s", diff)
	}
}

// TestMarshalGolden pins the file format the plugin writes; run with -update after a deliberate
// change. It also checks that the file parses back to the same spec.
func TestMarshalGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"full", fullSpec()},
		{"minimal", minimalSpec()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Marshal(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", tc.name+".golden"), got)
			back, err := Parse(got)
			if err != nil {
				t.Fatalf("Parse(Marshal): %v", err)
			}
			if diff := cmp.Diff(tc.spec.WithDefaults(), back, cmpNetip); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMarshalRefusesInvalid(t *testing.T) {
	s := fullSpec()
	s.MTU = 100
	if _, err := Marshal(s); err == nil || !strings.Contains(err.Error(), "mtu") {
		t.Fatalf("Marshal = %v, want an mtu error", err)
	}
}

// TestJSONMethods checks that encoding/json alone gives the same format: MarshalJSON writes the
// duration as text, UnmarshalJSON is strict but applies no defaults.
func TestJSONMethods(t *testing.T) {
	b, err := json.Marshal(struct{ Mesh Spec }{fullSpec()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"persistentKeepalive":"15s"`) {
		t.Errorf("json.Marshal = %s, want the keepalive as a duration", b)
	}
	var back struct{ Mesh Spec }
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fullSpec(), back.Mesh, cmpNetip); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	var s Spec
	if err := json.Unmarshal([]byte(minimalJSON("")), &s); err != nil {
		t.Fatal(err)
	}
	if s.MTU != 0 || s.Interface != "" {
		t.Errorf("UnmarshalJSON applied defaults: %+v", s)
	}
	if err := json.Unmarshal([]byte(minimalJSON(`"bogus":1,`)), &s); err == nil {
		t.Error("UnmarshalJSON accepted an unknown field")
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts survives
// Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.in))
	}
	for _, name := range []string{"full.golden", "minimal.golden"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		out, err := Marshal(s)
		if err != nil {
			t.Fatalf("Marshal of a parsed spec: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse of Marshal output: %v\n%s", err, out)
		}
		if diff := cmp.Diff(s, back, cmpNetip); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	goldentest.Check(t, path, got)
}

// secretStrings lists every way a secret could leak into text.
func secretStrings(keys ...any) []string {
	var out []string
	for _, k := range keys {
		switch k := k.(type) {
		case Key:
			out = append(out, b64(k), hex.EncodeToString(k[:]), strings.ToUpper(hex.EncodeToString(k[:])),
				base64.RawURLEncoding.EncodeToString(k[:]))
		case Secret:
			out = append(out, string(k))
		}
	}
	return out
}

// TestWireNamesMatchTags keeps the JSON names of the private wire form equal to the tags that
// document Spec, DNS and Tunnel, in the same order.
func TestWireNamesMatchTags(t *testing.T) {
	for _, tc := range []struct{ doc, wire any }{
		{Spec{}, wireSpec{}},
		{DNS{}, wireDNS{}},
		{Tunnel{}, wireTunnel{}},
	} {
		if diff := cmp.Diff(jsonNames(tc.doc), jsonNames(tc.wire)); diff != "" {
			t.Errorf("%T vs %T (-doc +wire):\n%s", tc.doc, tc.wire, diff)
		}
	}
}

func jsonNames(v any) []string {
	var names []string
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}
