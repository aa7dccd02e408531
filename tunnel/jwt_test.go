package tunnel

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// jwtOf assembles a token from literal JSON, as jsonwebtoken would.
func jwtOf(header, claims string) string {
	enc := base64.RawURLEncoding
	s := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, []byte("any key: nobody checks"))
	mac.Write([]byte(s))
	return s + "." + enc.EncodeToString(mac.Sum(nil))
}

const (
	wstunnelHeader = `{"typ":"JWT","alg":"HS256"}`
	wstunnelClaims = `{"id":"6f1c0a9e-2a43-4a8e-9d57-8e0c1b7f3a21","p":{"Udp":{"timeout":null}},"r":"127.0.0.1","rp":51820}`
)

type tokenCase struct {
	name    string
	tok     string
	want    Claims
	wantErr error
}

func tokenCases() []tokenCase {
	stock := Claims{ID: "6f1c0a9e-2a43-4a8e-9d57-8e0c1b7f3a21", Protocol: ProtocolUDP, Host: "127.0.0.1", Port: 51820}
	return []tokenCase{
		{name: "stock wstunnel udp token", tok: jwtOf(wstunnelHeader, wstunnelClaims), want: stock},
		{name: "udp with a timeout", tok: jwtOf(wstunnelHeader, `{"id":"x","p":{"Udp":{"timeout":{"secs":30,"nanos":0}}},"r":"127.0.0.1","rp":51820}`),
			want: Claims{ID: "x", Protocol: ProtocolUDP, Host: "127.0.0.1", Port: 51820}},
		{name: "tcp token", tok: jwtOf(wstunnelHeader, `{"id":"x","p":{"Tcp":{"proxy_protocol":false}},"r":"10.0.0.1","rp":22}`),
			want: Claims{ID: "x", Protocol: ProtocolTCP, Host: "10.0.0.1", Port: 22}},
		{name: "unit variant", tok: jwtOf(wstunnelHeader, `{"id":"x","p":"ReverseTcp","r":"0.0.0.0","rp":80}`),
			want: Claims{ID: "x", Protocol: "ReverseTcp", Host: "0.0.0.0", Port: 80}},
		{name: "hostname destination", tok: jwtOf(wstunnelHeader, `{"id":"x","p":{"Udp":{"timeout":null}},"r":"localhost","rp":51820}`),
			want: Claims{ID: "x", Protocol: ProtocolUDP, Host: "localhost", Port: 51820}},
		{name: "extra claims are ignored", tok: jwtOf(`{"alg":"none"}`, `{"id":"x","p":{"Udp":{}},"r":"::1","rp":1,"exp":1}`),
			want: Claims{ID: "x", Protocol: ProtocolUDP, Host: "::1", Port: 1}},
		{name: "padded segments", tok: strings.Replace(jwtOf(wstunnelHeader, wstunnelClaims), ".", "==.", 1), want: stock},
		{name: "empty", tok: "", wantErr: ErrMalformedToken},
		{name: "two segments", tok: "eyJ9.eyJ9", wantErr: ErrMalformedToken},
		{name: "four segments", tok: jwtOf(wstunnelHeader, wstunnelClaims) + ".x", wantErr: ErrMalformedToken},
		{name: "bad base64", tok: "e$J9.eyJ9.sig", wantErr: ErrMalformedToken},
		{name: "header not an object", tok: jwtOf(`[]`, wstunnelClaims), wantErr: ErrMalformedToken},
		{name: "claims not json", tok: jwtOf(wstunnelHeader, `{"id":`), wantErr: ErrMalformedToken},
		{name: "port out of range", tok: jwtOf(wstunnelHeader, `{"id":"x","p":"Udp","r":"h","rp":70000}`), wantErr: ErrMalformedToken},
		{name: "two protocol variants", tok: jwtOf(wstunnelHeader, `{"id":"x","p":{"Udp":{},"Tcp":{}},"r":"h","rp":1}`), wantErr: ErrMalformedToken},
		{name: "no protocol", tok: jwtOf(wstunnelHeader, `{"id":"x","r":"h","rp":1}`), wantErr: ErrMalformedToken},
		{name: "no id", tok: jwtOf(wstunnelHeader, `{"p":"Udp","r":"h","rp":1}`), wantErr: ErrMalformedToken},
		{name: "too long", tok: jwtOf(wstunnelHeader, `{"id":"`+strings.Repeat("x", maxTokenLen)+`","p":"Udp","r":"h","rp":1}`), wantErr: ErrMalformedToken},
	}
}

func TestParseToken(t *testing.T) {
	for _, tc := range tokenCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseToken(tc.tok)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBuildTokenWireFormat checks the bytes wstunnel would produce: the
// jsonwebtoken HS256 header, serde's field order, a valid HMAC.
func TestBuildTokenWireFormat(t *testing.T) {
	key := []byte("per-process key")
	c := Claims{ID: "6f1c0a9e-2a43-4a8e-9d57-8e0c1b7f3a21", Protocol: ProtocolUDP, Host: "127.0.0.1", Port: 51820}
	tok, err := BuildToken(c, key)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	dec := func(s string) string {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("segment %q is not unpadded base64url: %v", s, err)
		}
		return string(b)
	}
	if diff := cmp.Diff(wstunnelHeader, dec(parts[0])); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wstunnelClaims, dec(parts[1])); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if got := dec(parts[2]); got != string(mac.Sum(nil)) {
		t.Error("signature is not HS256 over header.claims")
	}
	if _, err := BuildToken(Claims{ID: "x", Protocol: ProtocolTCP, Host: "h", Port: 1}, key); !errors.Is(err, ErrUnsupportedClaims) {
		t.Errorf("building a tcp token: err = %v, want ErrUnsupportedClaims", err)
	}
}

func TestUDPClaims(t *testing.T) {
	c := UDPClaims(netip.MustParseAddrPort("127.0.0.1:51820"))
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(c.ID) {
		t.Errorf("id %q is not a v4 uuid", c.ID)
	}
	if c2 := UDPClaims(DefaultDestination); c2.ID == c.ID {
		t.Error("two claims share an id")
	}
	c.ID = ""
	if diff := cmp.Diff(Claims{Protocol: ProtocolUDP, Host: "127.0.0.1", Port: 51820}, c); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

type protocolsCase struct {
	name    string
	values  []string
	tok     string
	v1      bool
	wantErr error
}

func protocolsCases() []protocolsCase {
	return []protocolsCase{
		{name: "stock wstunnel", values: []string{"v1, authorization.bearer.a.b.c"}, tok: "a.b.c", v1: true},
		{name: "no spaces", values: []string{"v1,authorization.bearer.a.b.c"}, tok: "a.b.c", v1: true},
		{name: "split over header lines", values: []string{"v1", "authorization.bearer.a.b.c"}, tok: "a.b.c", v1: true},
		{name: "token without v1", values: []string{"authorization.bearer.t"}, tok: "t"},
		{name: "first token wins", values: []string{"authorization.bearer.t1, authorization.bearer.t2"}, tok: "t1"},
		{name: "v1 only", values: []string{"v1"}, v1: true, wantErr: ErrNoToken},
		{name: "empty bearer", values: []string{"v1, authorization.bearer."}, v1: true, wantErr: ErrNoToken},
		{name: "no header", wantErr: ErrNoToken},
		{name: "other protocols", values: []string{"chat, superchat"}, wantErr: ErrNoToken},
	}
}

func TestParseProtocols(t *testing.T) {
	for _, tc := range protocolsCases() {
		t.Run(tc.name, func(t *testing.T) {
			tok, v1, err := ParseProtocols(tc.values)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tok != tc.tok || v1 != tc.v1 {
				t.Errorf("got (%q, %v), want (%q, %v)", tok, v1, tc.tok, tc.v1)
			}
		})
	}
	if diff := cmp.Diff([]string{"v1", "authorization.bearer.a.b.c"}, BuildProtocols("a.b.c")); diff != "" {
		t.Errorf("BuildProtocols (-want +got):\n%s", diff)
	}
}

// FuzzParseToken: never panics; every UDP token it accepts survives a
// build/parse round trip.
func FuzzParseToken(f *testing.F) {
	for _, tc := range tokenCases() {
		f.Add(tc.tok)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := ParseToken(tok)
		if err != nil || c.Protocol != ProtocolUDP {
			return
		}
		again, err := BuildToken(c, []byte("k"))
		if err != nil {
			t.Fatalf("build from parsed claims %+v: %v", c, err)
		}
		c2, err := ParseToken(again)
		if err != nil && errors.Is(err, ErrMalformedToken) && len(again) > maxTokenLen {
			return // re-encoding may grow past the limit
		}
		if err != nil {
			t.Fatalf("reparse: %v", err)
		}
		if diff := cmp.Diff(c, c2); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	})
}

// FuzzParseProtocols: never panics; a token it finds was offered.
func FuzzParseProtocols(f *testing.F) {
	for _, tc := range protocolsCases() {
		f.Add(strings.Join(tc.values, "\n"))
	}
	f.Fuzz(func(t *testing.T, header string) {
		values := strings.Split(header, "\n")
		tok, _, err := ParseProtocols(values)
		if err != nil {
			return
		}
		if tok == "" || !strings.Contains(header, BearerPrefix+tok) {
			t.Fatalf("token %q not in %q", tok, header)
		}
	})
}
