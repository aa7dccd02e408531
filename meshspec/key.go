package meshspec

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
)

// Redacted is what a Key or a Secret prints and logs as.
const Redacted = "[redacted]"

// KeyLen is the length of a WireGuard (Curve25519) key.
const KeyLen = 32

// Key is a WireGuard private or public key. Its String, Format and LogValue methods redact it, so
// no fmt verb and no slog attribute holding a Key leaks it; MarshalJSON keeps it (standard base64,
// as wg(8) prints keys). Caveat: slog's JSON handler marshals composite values ([]Key, a struct
// holding a Key) with encoding/json, which reveals the keys inside; Spec and Tunnel have LogValue
// methods for that reason. Read the bytes with k[:].
type Key [KeyLen]byte

var (
	_ fmt.Stringer     = Key{}
	_ fmt.Formatter    = Key{}
	_ slog.LogValuer   = Key{}
	_ json.Marshaler   = Key{}
	_ json.Unmarshaler = (*Key)(nil)
)

// ParseKey decodes a key in standard, padded base64 (44 characters). Its errors never contain
// the input.
func ParseKey(s string) (Key, error) {
	if len(s) != base64.StdEncoding.EncodedLen(KeyLen) {
		return Key{}, fmt.Errorf("key must be %d bytes of base64 (%d characters), got %d characters",
			KeyLen, base64.StdEncoding.EncodedLen(KeyLen), len(s))
	}
	var buf [KeyLen + 1]byte // 44 characters without padding would decode to 33 bytes
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil {
		return Key{}, fmt.Errorf("decode key: %w", err)
	}
	if n != KeyLen {
		return Key{}, fmt.Errorf("key must be %d bytes, got %d", KeyLen, n)
	}
	return Key(buf[:KeyLen]), nil
}

// GeneratePrivateKey returns a fresh random private key, as wg genkey does.
func GeneratePrivateKey() (Key, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return Key(priv.Bytes()), nil
}

// PublicKey returns the public key of the private key k, as wg pubkey computes it.
func (k Key) PublicKey() Key {
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil { // only for a wrong length, which a Key cannot have
		panic(err)
	}
	return Key(priv.PublicKey().Bytes())
}

// IsZero reports whether k is unset.
func (k Key) IsZero() bool { return k == Key{} }

// String redacts the key.
func (k Key) String() string { return redact(!k.IsZero()) }

// Format redacts the key for every verb, %x and %#v included.
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue redacts the key in slog records, whatever the handler.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalJSON encodes the key in standard base64: it is meant for the mesh spec file only.
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.StdEncoding.EncodeToString(k[:]))
}

// UnmarshalJSON decodes a base64 JSON string with ParseKey.
func (k *Key) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("decode key: want a JSON string")
	}
	v, err := ParseKey(s)
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// Secret is a string that must not be printed or logged, such as the tunnel path prefix. Its
// String, Format and LogValue methods redact it; JSON encodes it as the plain string. Read it
// with string(s).
type Secret string

var (
	_ fmt.Stringer   = Secret("")
	_ fmt.Formatter  = Secret("")
	_ slog.LogValuer = Secret("")
)

// String redacts the secret; an empty one stays empty, so "unset" remains visible.
func (s Secret) String() string { return redact(s != "") }

// Format redacts the secret for every verb.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// LogValue redacts the secret in slog records.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

func redact(set bool) string {
	if set {
		return Redacted
	}
	return ""
}
