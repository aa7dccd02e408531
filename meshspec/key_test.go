package meshspec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	k := testKey(7)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"valid", b64(k), true},
		{"unpadded", strings.TrimRight(b64(k), "="), false},
		{"url alphabet", base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), false},
		{"too long", base64.StdEncoding.EncodeToString(make([]byte, 33)), false},
		{"non-canonical padding bits", b64(k)[:42] + "B=", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseKey(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if tc.ok && got != k {
				t.Errorf("ParseKey = %x, want %x", got[:], k[:])
			}
			if err != nil && tc.in != "" && strings.Contains(err.Error(), tc.in) {
				t.Errorf("error %q quotes the input", err)
			}
		})
	}
}

func TestPublicKey(t *testing.T) {
	// RFC 7748 section 6.1, Alice's key pair.
	priv, _ := ParseKey(base64.StdEncoding.EncodeToString(mustHex(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")))
	want := mustHex(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	if got := priv.PublicKey(); !bytes.Equal(got[:], want) {
		t.Errorf("PublicKey = %x, want %x", got[:], want)
	}
	g1, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := GeneratePrivateKey()
	if g1.IsZero() || g1 == g2 {
		t.Error("GeneratePrivateKey returned a zero or repeated key")
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	if _, err := fmt.Sscanf(s, "%x", &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSecretsNeverPrint formats and logs keys, the prefix and whole specs every way a program
// might, and checks that none of the secrets shows up.
func TestSecretsNeverPrint(t *testing.T) {
	s := fullSpec()
	secrets := secretStrings(s.PrivateKey, s.PeerPublicKey, s.Tunnel.PathPrefix)
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d", "%T"} {
		for _, v := range []any{s, &s, s.PrivateKey, &s.PrivateKey, s.Tunnel, s.Tunnel.PathPrefix, []Key{s.PrivateKey}, map[string]Secret{"p": s.Tunnel.PathPrefix}} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
	}
	fmt.Fprintln(&out, s.PrivateKey, s.Tunnel.PathPrefix, s)
	slog.New(slog.NewTextHandler(&out, nil)).Info("slice", "keys", []Key{s.PrivateKey}) // the JSON handler would reveal it: see Key
	for _, h := range []slog.Handler{
		slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}),
		slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}),
	} {
		log := slog.New(h)
		log.Info("spec", "spec", s, "ptr", &s, "tunnel", s.Tunnel, "key", s.PrivateKey, "peer", s.PeerPublicKey, "prefix", s.Tunnel.PathPrefix)
		log.Info("group", slog.Group("g", "key", s.PrivateKey, "spec", s))
		log.With("spec", s).Info("with")
	}
	text := out.String()
	for _, sec := range secrets {
		if strings.Contains(text, sec) {
			t.Errorf("secret %q printed in:\n%s", sec, text)
		}
	}
	if !strings.Contains(text, Redacted) || !strings.Contains(text, "wss://10.20.30.40:443") {
		t.Errorf("output lacks the redaction marker or the plain fields:\n%s", text)
	}
	if testing.Verbose() {
		t.Log(text)
	}
}

func TestSecretsMarshalJSON(t *testing.T) {
	s := fullSpec()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{b64(s.PrivateKey), b64(s.PeerPublicKey), string(s.Tunnel.PathPrefix)} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("json.Marshal lost a secret value %q: %s", want, b)
		}
	}
	var k Key
	if err := json.Unmarshal([]byte(`"`+b64(podKey)+`"`), &k); err != nil || k != podKey {
		t.Errorf("Key.UnmarshalJSON = %v", err)
	}
	if err := json.Unmarshal([]byte(`12`), &k); err == nil {
		t.Error("Key.UnmarshalJSON accepted a number")
	}
	if (Key{}).String() != "" || Secret("").String() != "" {
		t.Error("unset secrets should print empty")
	}
}
