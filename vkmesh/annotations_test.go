package vkmesh

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// meshFile reads a sample mesh input from testdata/mesh (see its README for where each comes from).
func meshFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "mesh", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustKey(s string) meshspec.Key {
	k, err := meshspec.ParseKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// The specs the sample inputs describe, as read from the rendered templates by hand.
var (
	vkDefaultSpec = meshspec.Spec{
		Version:             meshspec.Version1,
		Interface:           "wg7f3c2a1e-9b4d",
		PrivateKey:          mustKey("ezD1pY64h3Sd2XsJjNUNe54QZf6in+uCfDczN0VUOf8="),
		PeerPublicKey:       mustKey("8miPa+vCFLUCBhrS1VyTIP1IDiTR9nD8xZbuRvwBVUM="),
		Address:             netip.MustParsePrefix("10.7.0.2/32"),
		PeerAddress:         netip.MustParseAddr("10.7.0.1"),
		MTU:                 1280,
		PersistentKeepalive: 25 * time.Second,
		Routes:              prefixes("10.7.0.0/16", "10.96.0.0/16", "10.244.0.0/16", "10.105.0.0/16"),
		DNS:                 meshspec.DNS{Nameservers: addrs("10.244.0.99")},
		Tunnel: meshspec.Tunnel{
			URL:         "ws://web-0-team-a-team-a-wstunnel.mesh.example.org:80",
			PathPrefix:  "8b447dc024ce4941beea979206cc6cdf",
			Destination: netip.MustParseAddrPort("127.0.0.1:51820"),
			Unmasked:    true,
		},
	}
	seedCustomSpec = meshspec.Spec{
		Version:             meshspec.Version1,
		Interface:           "wg2d9e8c41-5a7b",
		PrivateKey:          mustKey("Oyc/mRYMqsG8Tsz/d3RqW5FSVEd7HIpSbjIm+o2iAdc="),
		PeerPublicKey:       mustKey("sKhW/GRS2OFnVIimRW8DmNh2Mm0iDAAZZnpdq9r7DHQ="),
		Address:             netip.MustParsePrefix("10.7.0.2/32"),
		PeerAddress:         netip.MustParseAddr("10.7.0.1"),
		MTU:                 1380,
		PersistentKeepalive: 25 * time.Second,
		Routes:              prefixes("10.7.0.0/16", "10.96.0.0/16", "10.42.0.0/16", "10.43.0.0/16"),
		DNS:                 meshspec.DNS{Nameservers: addrs("10.43.0.10")},
		Tunnel: meshspec.Tunnel{
			URL:         "ws://train-mlaas-mlaas-wstunnel.k3s.example.org:80",
			PathPrefix:  "03526a08299e5f48205f407f9a0cfc84",
			Destination: netip.MustParseAddrPort("127.0.0.1:51820"),
			Unmasked:    true,
		},
	}
	structuredSpec = meshspec.Spec{
		Version:             meshspec.Version1,
		Interface:           "wg0",
		PrivateKey:          mustKey("tVqMqpYXjhM44zx5yRedNaH6HTFwXC5XrsV2ulgKnhs="),
		PeerPublicKey:       mustKey("GZ4YCZSqiuqwMjeZXojSK/ZfHgBh+LEIGjdJAU9T1wQ="),
		MTU:                 1280,
		PersistentKeepalive: 25 * time.Second,
		Routes:              prefixes("10.244.0.0/16", "10.96.0.0/12"),
		DNS:                 meshspec.DNS{Nameservers: addrs("10.96.0.10")},
		Tunnel: meshspec.Tunnel{
			URL:        "wss://web-1-team-a.mesh.example.org",
			PathPrefix: "4312dea07e3e7de0495774b1ecfecada",
		},
	}
	// The snippet adds what the structured form left to defaults.
	structuredWithSnippetSpec = func() meshspec.Spec {
		s := structuredSpec
		s.Address = netip.MustParsePrefix("10.7.0.2/32")
		s.PeerAddress = netip.MustParseAddr("10.7.0.1")
		return s
	}()
)

// meshSecrets are the secret strings of every sample input: no error and no remote pod may
// contain them.
var meshSecrets = []string{
	"ezD1pY64h3Sd2XsJjNUNe54QZf6in+uCfDczN0VUOf8=", "8b447dc024ce4941beea979206cc6cdf",
	"Oyc/mRYMqsG8Tsz/d3RqW5FSVEd7HIpSbjIm+o2iAdc=", "03526a08299e5f48205f407f9a0cfc84",
	"tVqMqpYXjhM44zx5yRedNaH6HTFwXC5XrsV2ulgKnhs=", "4312dea07e3e7de0495774b1ecfecada",
}

type meshInputCase struct {
	name        string
	annotations map[string]string
	want        *meshspec.Spec // nil: no mesh
	field       string         // the refusal's field, for an error
	reason      []string       // substrings of the refusal
}

func meshInputCases(t testing.TB) []meshInputCase {
	vkScript, vkSnippet := meshFile(t, "vk-default.sh"), meshFile(t, "vk-default.snippet")
	seedScript, seedSnippet := meshFile(t, "seed-custom.sh"), meshFile(t, "seed-custom.snippet")
	structured, structuredNoKeys, structuredSnippet := meshFile(t, "structured.json"), meshFile(t, "structured-nokeys.json"), meshFile(t, "structured.snippet")
	replace := func(s, old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("sample lacks %q", old)
		}
		return strings.ReplaceAll(s, old, new)
	}
	ptr := func(s meshspec.Spec) *meshspec.Spec { return &s }
	masked := vkDefaultSpec
	masked.Tunnel.URL, masked.Tunnel.Host, masked.Tunnel.Unmasked = "wss://shadow.example.org:443", "web-0.mesh.example.org", false
	return []meshInputCase{
		{name: "no annotations", annotations: nil},
		{name: "mesh-network disabled", annotations: map[string]string{AnnotPreExec: vkScript, AnnotWGSnippet: vkSnippet, AnnotMeshNetwork: "Disabled"}},
		{name: "pre-exec of another purpose", annotations: map[string]string{AnnotPreExec: "module load cuda/12\nsrun hostname\n"}},
		{name: "VK default template", annotations: map[string]string{AnnotPreExec: vkScript}, want: &vkDefaultSpec},
		{name: "VK default template and its snippet", annotations: map[string]string{AnnotPreExec: vkScript, AnnotWGSnippet: vkSnippet}, want: &vkDefaultSpec},
		{name: "VK default template followed by the pod's own pre-exec", annotations: map[string]string{AnnotPreExec: vkScript + "ip route add 192.168.0.0/16 dev $WG_IFACE\nmodule load cuda\n"}, want: &vkDefaultSpec},
		{name: "seed custom template", annotations: map[string]string{AnnotPreExec: seedScript}, want: &seedCustomSpec},
		{name: "seed custom template and its snippet", annotations: map[string]string{AnnotPreExec: seedScript, AnnotWGSnippet: seedSnippet}, want: &seedCustomSpec},
		{name: "structured annotation", annotations: map[string]string{AnnotMeshSpec: structured}, want: &structuredSpec},
		{name: "structured annotation without keys, keys in the snippet", annotations: map[string]string{AnnotMeshSpec: structuredNoKeys, AnnotWGSnippet: structuredSnippet}, want: &structuredWithSnippetSpec},
		{name: "structured form as the pre-exec", annotations: map[string]string{AnnotPreExec: structuredNoKeys + "module load cuda\n", AnnotWGSnippet: structuredSnippet}, want: &structuredWithSnippetSpec},
		{name: "structured form as the EOFMESH heredoc of a custom template", annotations: map[string]string{
			AnnotPreExec: "cat <<'EOFMESH' > $TMPDIR/mesh.json\n" + structuredNoKeys + "EOFMESH\n", AnnotWGSnippet: structuredSnippet,
		}, want: &structuredWithSnippetSpec},
		{name: "structured form and WireGuard config in heredocs of a custom template", annotations: map[string]string{
			AnnotPreExec: "cat <<'EOFMESH' > $TMPDIR/mesh.sh\ncat <<'EOFJSON' > mesh.json\n" + structuredNoKeys + "EOFJSON\ncat <<'EOFWG' > wg0.conf\n" + structuredSnippet + "\nEOFWG\nEOFMESH\n",
		}, want: &structuredWithSnippetSpec},
		{name: "wss, continuation lines, masked frames, Host header, command wrapper", annotations: map[string]string{
			AnnotPreExec: replace(replace(vkScript, "        ws://web-0-team-a-team-a-wstunnel.mesh.example.org:80 >",
				"        --websocket-mask-frame -H 'Host: web-0.mesh.example.org' \\\n        wss://shadow.example.org:443/ >"),
				`RUST_LOG="${WSTUNNEL_LOG_LEVEL:-debug}" ./wstunnel client`, `exec env RUST_LOG=debug ./wstunnel client`),
		}, want: ptr(masked)},

		{name: "snippet alone", annotations: map[string]string{AnnotWGSnippet: vkSnippet}, field: "mesh.tunnel.url", reason: []string{AnnotWGSnippet, "cannot carry it"}},
		{name: "no path prefix", annotations: map[string]string{AnnotPreExec: replace(vkScript, "--http-upgrade-path-prefix 8b447dc024ce4941beea979206cc6cdf", "")}, field: "mesh.tunnel.pathPrefix"},
		{name: "no tunnel", annotations: map[string]string{AnnotPreExec: replace(replace(vkScript, "./wstunnel client", "./wstunnel-disabled client"), "ws://", "")}, field: "mesh.tunnel.url"},
		{name: "two private keys in the script", annotations: map[string]string{
			AnnotPreExec: replace(vkScript, "EOFWG\n\n", "EOFWG\ncat <<'EOFWG2' > other.conf\n[Interface]\nPrivateKey = Oyc/mRYMqsG8Tsz/d3RqW5FSVEd7HIpSbjIm+o2iAdc=\nEOFWG2\n"),
		}, field: "mesh.privateKey", reason: []string{"two different values", AnnotPreExec}},
		{name: "script and snippet disagree on the private key", annotations: map[string]string{AnnotPreExec: seedScript, AnnotWGSnippet: vkSnippet},
			field: "mesh.privateKey", reason: []string{AnnotPreExec, AnnotWGSnippet, "disagree"}},
		{name: "script and snippet disagree on the MTU", annotations: map[string]string{AnnotPreExec: vkScript, AnnotWGSnippet: replace(vkSnippet, "MTU = 1280", "MTU = 1420")},
			field: "mesh.mtu", reason: []string{"1280 and 1420"}},
		{name: "structured form and script disagree on the URL", annotations: map[string]string{AnnotPreExec: vkScript, AnnotMeshSpec: `{"version":"v1","tunnel":{"url":"ws://elsewhere.example.org"}}`},
			field: "mesh.tunnel.url", reason: []string{AnnotMeshSpec, AnnotPreExec}},
		{name: "two WireGuard interfaces", annotations: map[string]string{AnnotPreExec: replace(vkScript, "./wireguard-go $WG_IFACE &", "./wireguard-go wg1 &")},
			field: "mesh.interface", reason: []string{"wg7f3c2a1e-9b4d", "wg1"}},
		{name: "placeholder instead of a key", annotations: map[string]string{AnnotPreExec: vkScript, AnnotWGSnippet: replace(vkSnippet, "ezD1pY64h3Sd2XsJjNUNe54QZf6in+uCfDczN0VUOf8=", "<CLIENT_PRIVATE_KEY>")},
			field: "mesh.privateKey", reason: []string{AnnotWGSnippet}},
		{name: "unexpanded variable in the server URL", annotations: map[string]string{AnnotPreExec: replace(vkScript, "ws://web-0-team-a-team-a-wstunnel.mesh.example.org:80 >", "ws://$INGRESS:80 >")},
			field: "mesh.tunnel.url"},
		{name: "destination is not an address", annotations: map[string]string{AnnotPreExec: replace(vkScript, "127.0.0.1:51820?timeout_sec=0' \\", "shadow:51820' \\")},
			field: "mesh.tunnel.destination"},
		{name: "structured form of another version", annotations: map[string]string{AnnotMeshSpec: `{"version":"v2"}`}, field: "mesh.version"},
		{name: "structured form is not JSON", annotations: map[string]string{AnnotMeshSpec: `version: v1`}, field: "pod.metadata.annotations[" + AnnotMeshSpec + "]"},
		{name: "structured form with an unknown field", annotations: map[string]string{AnnotMeshSpec: `{"version":"v1","privatekey2":"x"}`}, field: "mesh.privatekey2"},
		{name: "preshared key", annotations: map[string]string{AnnotPreExec: replace(vkScript, "PersistentKeepalive = 25", "PersistentKeepalive = 25\nPresharedKey = ezD1pY64h3Sd2XsJjNUNe54QZf6in+uCfDczN0VUOf8=")},
			field: "mesh.presharedKey"},
		{name: "two peers", annotations: map[string]string{AnnotWGSnippet: vkSnippet + "\n[Peer]\nPublicKey = 8miPa+vCFLUCBhrS1VyTIP1IDiTR9nD8xZbuRvwBVUM=\n", AnnotPreExec: vkScript},
			field: "mesh.peerPublicKey", reason: []string{"2 [Peer] sections"}},
		{name: "default route into the mesh", annotations: map[string]string{AnnotPreExec: replace(vkScript, "ip route add 10.105.0.0/16 dev $WG_IFACE", "ip route add default dev $WG_IFACE")},
			field: "mesh.routes[3]", reason: []string{"route everything"}},
		{name: "snippet without sections", annotations: map[string]string{AnnotPreExec: vkScript, AnnotWGSnippet: "PrivateKey = x"},
			field: "pod.metadata.annotations[" + AnnotWGSnippet + "]"},
	}
}

func TestParseMeshAnnotations(t *testing.T) {
	for _, tt := range meshInputCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := Parse(tt.annotations)
			if tt.field != "" {
				var verr *InputError
				if !errors.As(err, &verr) {
					t.Fatalf("got %v (ok=%v), want a InputError on %s", err, ok, tt.field)
				}
				if verr.Field != tt.field {
					t.Errorf("field %q, want %q (%v)", verr.Field, tt.field, err)
				}
				for _, r := range tt.reason {
					if !strings.Contains(err.Error(), r) {
						t.Errorf("error %q does not say %q", err, r)
					}
				}
				for _, s := range meshSecrets {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q reveals a secret", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if ok {
					t.Fatalf("a mesh was recovered from %v: %+v", tt.annotations, got)
				}
				return
			}
			if !ok {
				t.Fatal("no mesh recovered")
			}
			if diff := cmp.Diff(*tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLexShell(t *testing.T) {
	script := `# comment with an 'apostrophe
A="x y" B='$C' ./tool --flag "quoted \"word\"" $(echo a | tr a b) ${D:-e} 2>&1 > out.log &
ip route add 10.0.0.0/8 \
   dev "$WG_IFACE" || true; echo done
cat <<-'EOF' > f; cat <<X
	body $NOT_EXPANDED
	EOF
second
X
tail`
	var got [][]string
	var docs []heredoc
	for _, c := range lexShell(script) {
		got = append(got, c.words)
		docs = append(docs, c.heredocs...)
	}
	want := [][]string{
		{"A=x y", "B=$C", "./tool", "--flag", `quoted "word"`, "$(echo a | tr a b)", "${D:-e}"},
		{"ip", "route", "add", "10.0.0.0/8", "dev", "$WG_IFACE"},
		{"true"},
		{"echo", "done"},
		{"cat"},
		{"cat"},
		{"tail"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("words (-want +got):\n%s", diff)
	}
	wantDocs := []heredoc{{delim: "EOF", body: "body $NOT_EXPANDED\n"}, {delim: "X", body: "second\n"}}
	if diff := cmp.Diff(wantDocs, docs, cmp.AllowUnexported(heredoc{})); diff != "" {
		t.Errorf("heredocs (-want +got):\n%s", diff)
	}
}

// FuzzParseMeshAnnotations feeds arbitrary annotations to the mesh parser: it must never panic,
// refuse only with a InputError, and recover only specs that validate and survive the
// mesh.json round trip the mesh-agent depends on.
func FuzzParseMeshAnnotations(f *testing.F) {
	for _, tt := range meshInputCases(f) {
		f.Add(tt.annotations[AnnotPreExec], tt.annotations[AnnotWGSnippet], tt.annotations[AnnotMeshSpec])
	}
	f.Add("cat <<'EOFMESH'\nwstunnel client -L udp://[::1]:1:[::1]:2 -P p ws://h\n[Peer]\nEOFMESH", "[Interface]\nMTU = 1", "")
	f.Add("echo \"$(unterminated", "", "{")
	f.Fuzz(func(t *testing.T, preExec, snippet, structured string) {
		got, ok, err := Parse(map[string]string{AnnotPreExec: preExec, AnnotWGSnippet: snippet, AnnotMeshSpec: structured})
		if err != nil {
			var verr *InputError
			if !errors.As(err, &verr) || verr.Field == "" {
				t.Fatalf("refusal %v is not a InputError with a field", err)
			}
			return
		}
		if !ok {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("recovered an invalid spec: %v", err)
		}
		data, err := meshspec.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := meshspec.Parse(data)
		if err != nil {
			t.Fatalf("mesh.json does not parse back: %v\n%s", err, data)
		}
		if diff := cmp.Diff(got.WithDefaults(), back, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
			cmp.Comparer(func(a, b netip.Addr) bool { return a == b }), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
			t.Fatalf("mesh.json round trip (-want +got):\n%s", diff)
		}
	})
}
