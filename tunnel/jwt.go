package tunnel

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Wire constants of the wstunnel v10 upgrade.
const (
	// Subprotocol is the WebSocket subprotocol a wstunnel server selects.
	Subprotocol = "v1"
	// BearerPrefix introduces the JWT inside Sec-WebSocket-Protocol.
	BearerPrefix = "authorization.bearer."
	// ProtocolUDP is the claim "p" variant of a UDP tunnel.
	ProtocolUDP = "Udp"
	// ProtocolTCP is the claim "p" variant of a TCP tunnel.
	ProtocolTCP = "Tcp"

	// maxTokenLen bounds the work spent on a token a peer sends.
	maxTokenLen = 4096
)

// Errors returned by the token and subprotocol parsers.
var (
	ErrNoToken           = errors.New("no bearer token in subprotocols")
	ErrMalformedToken    = errors.New("malformed token")
	ErrUnsupportedClaims = errors.New("unsupported claims")
)

// Claims are the tunnel claims wstunnel puts in its JWT. They only name the
// destination: wstunnel servers never verify the signature, and neither
// does ParseToken.
type Claims struct {
	// ID is the tunnel id, a UUID string that wstunnel draws per connection.
	ID string
	// Protocol is the variant name of claim "p" ("Udp", "Tcp", "ReverseTcp"…).
	Protocol string
	// Host is claim "r", the remote host the server should reach.
	Host string
	// Port is claim "rp", the remote port.
	Port uint16
}

// Destination returns the claimed destination as an address, or false when
// the host is not an IP literal.
func (c Claims) Destination() (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(c.Host)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), c.Port), true
}

// UDPClaims returns the claims a wstunnel client sends for
// "-L udp://…:<dst>?timeout_sec=0", with a fresh random id.
func UDPClaims(dst netip.AddrPort) Claims {
	return Claims{ID: newUUID(), Protocol: ProtocolUDP, Host: dst.Addr().String(), Port: dst.Port()}
}

// jwtHeader is the header jsonwebtoken writes for HS256, field order included.
const jwtHeader = `{"typ":"JWT","alg":"HS256"}`

type wireClaims struct {
	ID string          `json:"id"`
	P  json.RawMessage `json:"p"`
	R  string          `json:"r"`
	RP uint16          `json:"rp"`
}

// BuildToken encodes c as an HS256 JWT signed with key. Only the UDP
// protocol can be built (p = {"Udp":{"timeout":null}}); key may be any
// length, since no server checks it.
func BuildToken(c Claims, key []byte) (string, error) {
	if c.Protocol != ProtocolUDP {
		return "", fmt.Errorf("build token for protocol %q: %w", c.Protocol, ErrUnsupportedClaims)
	}
	// Hand-ordered JSON keeps the exact field order wstunnel's serde emits.
	id, err := json.Marshal(c.ID)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	host, err := json.Marshal(c.Host)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	payload := fmt.Sprintf(`{"id":%s,"p":{"Udp":{"timeout":null}},"r":%s,"rp":%d}`, id, host, c.Port)

	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(jwtHeader)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil)), nil
}

// ParseToken decodes the claims of a wstunnel JWT without verifying its
// signature. It requires three base64url segments, a JSON object header
// and claims with an id, exactly one protocol variant, a host and a port.
func ParseToken(tok string) (Claims, error) {
	if len(tok) > maxTokenLen {
		return Claims{}, fmt.Errorf("parse token of %d bytes: %w", len(tok), ErrMalformedToken)
	}
	hdr, rest, ok := strings.Cut(tok, ".")
	if !ok {
		return Claims{}, fmt.Errorf("parse token: missing payload: %w", ErrMalformedToken)
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return Claims{}, fmt.Errorf("parse token: want three segments: %w", ErrMalformedToken)
	}
	if _, err := decodeSegment(sig); err != nil {
		return Claims{}, fmt.Errorf("parse token signature: %w", err)
	}
	hb, err := decodeSegment(hdr)
	if err != nil {
		return Claims{}, fmt.Errorf("parse token header: %w", err)
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(hb, &h); err != nil || h == nil {
		return Claims{}, fmt.Errorf("parse token header: %w", ErrMalformedToken)
	}
	pb, err := decodeSegment(payload)
	if err != nil {
		return Claims{}, fmt.Errorf("parse token claims: %w", err)
	}
	var w wireClaims
	if err := json.Unmarshal(pb, &w); err != nil {
		return Claims{}, fmt.Errorf("parse token claims: %w", errors.Join(ErrMalformedToken, err))
	}
	proto, err := protocolName(w.P)
	if err != nil {
		return Claims{}, err
	}
	if w.ID == "" || w.R == "" {
		return Claims{}, fmt.Errorf("parse token claims: missing id or host: %w", ErrMalformedToken)
	}
	return Claims{ID: w.ID, Protocol: proto, Host: w.R, Port: w.RP}, nil
}

// protocolName extracts the variant of serde's externally tagged enum
// "p": either {"Variant":{…}} or the bare string "Variant".
func protocolName(raw json.RawMessage) (string, error) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) == nil && len(obj) == 1 {
		for k := range obj {
			if k != "" {
				return k, nil
			}
		}
	}
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s, nil
	}
	return "", fmt.Errorf("parse token claims: protocol needs exactly one variant: %w", ErrMalformedToken)
}

func decodeSegment(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, errors.Join(ErrMalformedToken, err)
	}
	return b, nil
}

// BuildProtocols returns the Sec-WebSocket-Protocol value a wstunnel client
// sends: "v1, authorization.bearer.<token>".
func BuildProtocols(token string) []string {
	return []string{Subprotocol, BearerPrefix + token}
}

// ParseProtocols finds the bearer token in the Sec-WebSocket-Protocol header
// values (one or several header lines, comma separated). It reports whether
// the "v1" subprotocol was offered too.
func ParseProtocols(values []string) (token string, v1 bool, err error) {
	for _, line := range values {
		for item := range strings.SplitSeq(line, ",") {
			item = strings.TrimSpace(item)
			switch {
			case item == Subprotocol:
				v1 = true
			case strings.HasPrefix(item, BearerPrefix) && token == "":
				token = item[len(BearerPrefix):]
			}
		}
	}
	if token == "" {
		return "", v1, ErrNoToken
	}
	return token, v1, nil
}

// newUUID returns a random RFC 4122 version 4 UUID string.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux.
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out bytes.Buffer
	const hex = "0123456789abcdef"
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out.WriteByte('-')
		}
		out.WriteByte(hex[c>>4])
		out.WriteByte(hex[c&0xf])
	}
	return out.String()
}
