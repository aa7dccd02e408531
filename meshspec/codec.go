package meshspec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"
)

// MaxSize bounds the spec files Parse reads; real ones are well under 4 KiB.
const MaxSize = 64 << 10

// Parse decodes a mesh.json strictly (unknown fields, trailing data and a missing or unknown
// version are errors), applies the defaults and validates. Errors name the field at fault
// (*FieldError) and never quote a secret.
func Parse(data []byte) (Spec, error) {
	s, err := decode(data)
	if err != nil {
		return Spec{}, fmt.Errorf("parse mesh spec: %w", err)
	}
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return Spec{}, fmt.Errorf("parse mesh spec: %w", err)
	}
	return s, nil
}

// Marshal applies the defaults, validates and encodes s as indented JSON with a final newline,
// the form the plugin stores as mesh.json. The output contains the keys and the path prefix.
func Marshal(s Spec) ([]byte, error) {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("marshal mesh spec: %w", err)
	}
	b, err := json.MarshalIndent(toWire(s), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal mesh spec: %w", err)
	}
	return append(b, '\n'), nil
}

// MarshalJSON encodes s as Marshal does (PersistentKeepalive as a duration string, unset fields
// left out) but neither applies defaults nor validates.
func (s Spec) MarshalJSON() ([]byte, error) { return json.Marshal(toWire(s)) }

// UnmarshalJSON decodes as strictly as Parse but applies no defaults and does not validate.
func (s *Spec) UnmarshalJSON(data []byte) error {
	v, err := decode(data)
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// The wire form, used both ways: leaves are strings, so decoding errors can name their field. The
// JSON names must match the tags of Spec, Tunnel and DNS (a test checks).
type (
	wireSpec struct {
		Version             *string       `json:"version"`
		Mode                string        `json:"mode,omitempty"`
		Interface           string        `json:"interface,omitempty"`
		PrivateKey          string        `json:"privateKey,omitempty"`
		PeerPublicKey       string        `json:"peerPublicKey,omitempty"`
		Address             string        `json:"address,omitempty"`
		PeerAddress         string        `json:"peerAddress,omitempty"`
		MTU                 int           `json:"mtu,omitempty"`
		PersistentKeepalive string        `json:"persistentKeepalive,omitempty"`
		Routes              []string      `json:"routes,omitempty"`
		DNS                 *wireDNS      `json:"dns,omitempty"`
		Tunnel              *wireTunnel   `json:"tunnel"`
		Forwards            []wireForward `json:"forwards,omitempty"`
	}
	wireDNS struct {
		Nameservers []string `json:"nameservers,omitempty"`
		Searches    []string `json:"searches,omitempty"`
	}
	wireTunnel struct {
		URL         string   `json:"url,omitempty"`
		Listen      string   `json:"listen,omitempty"`
		PathPrefix  string   `json:"pathPrefix"`
		Host        string   `json:"host,omitempty"`
		Destination string   `json:"destination,omitempty"`
		Unmasked    bool     `json:"unmasked,omitempty"`
		CAFile      string   `json:"caFile,omitempty"`
		Nameservers []string `json:"nameservers,omitempty"`
	}
	wireForward struct {
		Protocol string `json:"protocol,omitempty"`
		Listen   string `json:"listen"`
		To       string `json:"to"`
	}
)

func toWire(s Spec) wireSpec {
	str := func(ok bool, f func() string) string {
		if ok {
			return f()
		}
		return ""
	}
	key := func(k Key) string {
		return str(!k.IsZero(), func() string { return base64.StdEncoding.EncodeToString(k[:]) })
	}
	w := wireSpec{
		Version:             &s.Version,
		Mode:                string(s.Mode),
		Interface:           s.Interface,
		PrivateKey:          key(s.PrivateKey),
		PeerPublicKey:       key(s.PeerPublicKey),
		Address:             str(s.Address.IsValid(), s.Address.String),
		PeerAddress:         str(s.PeerAddress.IsValid(), s.PeerAddress.String),
		MTU:                 s.MTU,
		PersistentKeepalive: str(s.PersistentKeepalive != 0, s.PersistentKeepalive.String),
		Tunnel: &wireTunnel{
			URL:         s.Tunnel.URL,
			Listen:      s.Tunnel.Listen,
			PathPrefix:  string(s.Tunnel.PathPrefix),
			Host:        s.Tunnel.Host,
			Destination: str(s.Tunnel.Destination.IsValid(), s.Tunnel.Destination.String),
			Unmasked:    s.Tunnel.Unmasked,
			CAFile:      s.Tunnel.CAFile,
		},
	}
	for _, a := range s.Tunnel.Nameservers {
		w.Tunnel.Nameservers = append(w.Tunnel.Nameservers, a.String())
	}
	for _, r := range s.Routes {
		w.Routes = append(w.Routes, r.String())
	}
	for _, f := range s.Forwards {
		w.Forwards = append(w.Forwards, wireForward{Protocol: f.Protocol, Listen: str(f.Listen.IsValid(), f.Listen.String), To: f.To})
	}
	if len(s.DNS.Nameservers) > 0 || len(s.DNS.Searches) > 0 {
		w.DNS = &wireDNS{Searches: s.DNS.Searches}
		for _, a := range s.DNS.Nameservers {
			w.DNS.Nameservers = append(w.DNS.Nameservers, a.String())
		}
	}
	return w
}

// decode parses the JSON and converts it, checking syntax and types only.
func decode(data []byte) (Spec, error) {
	if len(data) > MaxSize {
		return Spec{}, fmt.Errorf("%d bytes, at most %d", len(data), MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w wireSpec
	if err := dec.Decode(&w); err != nil {
		return Spec{}, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Spec{}, errors.New("trailing data after the JSON object")
	}
	return w.spec()
}

// jsonError turns encoding/json's errors into FieldErrors where it can.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			return fmt.Errorf("the spec must be a JSON object, got JSON %s", te.Value)
		}
		return fieldErrf(field, "got JSON %s, want %s", te.Value, jsonKind(te.Type.Kind().String()))
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fieldErr(strings.Trim(name, `"`), ErrUnknownField)
	}
	if errors.Is(err, io.EOF) {
		return errors.New("empty input, want a JSON object")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("decode json at byte %d: %w", se.Offset, err)
	}
	return fmt.Errorf("decode json: %w", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int":
		return "an integer"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	default:
		return "an object"
	}
}

func (w *wireSpec) spec() (Spec, error) {
	if w.Version == nil {
		return Spec{}, fieldErrf("version", "%w (want %q)", ErrRequired, Version1)
	}
	if *w.Version != Version1 {
		return Spec{}, fieldErrf("version", "unsupported version %q, want %q", *w.Version, Version1)
	}
	if w.Tunnel == nil {
		return Spec{}, fieldErr("tunnel", ErrRequired)
	}
	s := Spec{
		Version:   *w.Version,
		Mode:      Mode(w.Mode),
		Interface: w.Interface,
		MTU:       w.MTU,

		Tunnel: Tunnel{
			URL:        w.Tunnel.URL,
			Listen:     w.Tunnel.Listen,
			PathPrefix: Secret(w.Tunnel.PathPrefix),
			Host:       w.Tunnel.Host,
			Unmasked:   w.Tunnel.Unmasked,
			CAFile:     w.Tunnel.CAFile,
		},
	}
	if w.DNS == nil {
		w.DNS = &wireDNS{}
	}
	s.DNS.Searches = w.DNS.Searches
	var errs []error
	conv := func(field, text string, parse func(string) error) {
		if text == "" {
			return // unset: WithDefaults or Validate decide
		}
		if err := parse(text); err != nil {
			errs = append(errs, fieldErr(field, err))
		}
	}
	conv("privateKey", w.PrivateKey, func(t string) (err error) { s.PrivateKey, err = ParseKey(t); return })
	conv("peerPublicKey", w.PeerPublicKey, func(t string) (err error) { s.PeerPublicKey, err = ParseKey(t); return })
	conv("address", w.Address, func(t string) (err error) { s.Address, err = parsePrefixOrAddr(t); return })
	conv("peerAddress", w.PeerAddress, func(t string) (err error) { s.PeerAddress, err = netip.ParseAddr(t); return })
	conv("persistentKeepalive", w.PersistentKeepalive, func(t string) (err error) {
		s.PersistentKeepalive, err = time.ParseDuration(t)
		return
	})
	for i, r := range w.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		if r == "" {
			errs = append(errs, fieldErr(field, errors.New("empty prefix")))
		}
		conv(field, r, func(t string) error {
			p, err := netip.ParsePrefix(t)
			s.Routes = append(s.Routes, p)
			return err
		})
	}
	addrs := func(field string, list []string, into *[]netip.Addr) {
		for i, a := range list {
			f := fmt.Sprintf("%s[%d]", field, i)
			if a == "" {
				errs = append(errs, fieldErr(f, errors.New("empty address")))
			}
			conv(f, a, func(t string) error {
				v, err := netip.ParseAddr(t)
				*into = append(*into, v)
				return err
			})
		}
	}
	addrs("dns.nameservers", w.DNS.Nameservers, &s.DNS.Nameservers)
	addrs("tunnel.nameservers", w.Tunnel.Nameservers, &s.Tunnel.Nameservers)
	for i, f := range w.Forwards {
		fw := Forward{Protocol: f.Protocol, To: f.To}
		conv(fmt.Sprintf("forwards[%d].listen", i), f.Listen, func(t string) (err error) { fw.Listen, err = netip.ParseAddrPort(t); return })
		s.Forwards = append(s.Forwards, fw)
	}
	conv("tunnel.destination", w.Tunnel.Destination, func(t string) (err error) {
		s.Tunnel.Destination, err = netip.ParseAddrPort(t)
		return
	})
	if err := errors.Join(errs...); err != nil {
		return Spec{}, err
	}
	return s, nil
}

// parsePrefixOrAddr accepts "10.7.0.2/32" or a bare "10.7.0.2", meaning a host prefix.
func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q has a zone", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
