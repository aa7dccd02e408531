package meshspec

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Limits enforced by Validate.
const (
	MinMTU          = 576
	MaxMTU          = 65535
	MinIPv6MTU      = 1280
	MaxKeepalive    = 65535 * time.Second // UAPI carries it as a 16-bit count of seconds
	MaxNameservers  = 3                   // what glibc and Kubernetes accept
	MaxSearches     = 32                  // Kubernetes' dnsConfig limit
	MaxPathPrefix   = 256
	MaxForwards     = 64
	maxIfaceNameLen = 15 // IFNAMSIZ - 1
)

// Sentinel errors inside a FieldError.
var (
	// ErrRequired: a required field is missing.
	ErrRequired = errors.New("required")
	// ErrUnknownField: the JSON has a field the format does not define.
	ErrUnknownField = errors.New("unknown field")
)

// FieldError says which field of a spec is wrong, by its JSON path ("tunnel.url", "routes[1]").
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field string, err error) error { return &FieldError{Field: field, Err: err} }

func fieldErrf(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate checks s after WithDefaults, so unset optional fields pass. It reports every wrong
// field, each as a *FieldError, joined with errors.Join; secrets are never quoted.
func (s Spec) Validate() error {
	s = s.WithDefaults()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if s.Version != Version1 {
		add(fieldErrf("version", "unsupported version %q, want %q", s.Version, Version1))
	}
	if _, err := ParseMode(string(s.Mode)); err != nil {
		add(fieldErr("mode", err))
	}
	add(validateInterface(s.Interface))
	switch {
	case s.PrivateKey.IsZero():
		add(fieldErr("privateKey", ErrRequired))
	case s.PeerPublicKey == s.PrivateKey.PublicKey():
		add(fieldErrf("peerPublicKey", "is the public key of privateKey: the peer must be the shadow pod"))
	}
	if s.PeerPublicKey.IsZero() {
		add(fieldErr("peerPublicKey", ErrRequired))
	}
	errs = append(errs, validateAddresses(s)...)
	v6 := s.Address.Addr().Is6() || s.PeerAddress.Is6()
	for i, r := range s.Routes {
		add(validateRoute(fmt.Sprintf("routes[%d]", i), r, s.Routes[:i]))
		v6 = v6 || r.Addr().Is6()
	}
	switch {
	case s.MTU < MinMTU || s.MTU > MaxMTU:
		add(fieldErrf("mtu", "%d is outside %d..%d", s.MTU, MinMTU, MaxMTU))
	case v6 && s.MTU < MinIPv6MTU:
		add(fieldErrf("mtu", "%d is below %d, the IPv6 minimum, and the mesh uses IPv6", s.MTU, MinIPv6MTU))
	}
	switch k := s.PersistentKeepalive; {
	case k < time.Second || k > MaxKeepalive:
		add(fieldErrf("persistentKeepalive", "%v is outside 1s..%v", k, MaxKeepalive))
	case k%time.Second != 0:
		add(fieldErrf("persistentKeepalive", "%v is not a whole number of seconds", k))
	}
	errs = append(errs, validateDNS(s.DNS)...)
	errs = append(errs, validateForwards(s.Forwards)...)
	errs = append(errs, validateTunnel(s.Tunnel)...)
	return errors.Join(errs...)
}

// validateInterface accepts what Linux's dev_valid_name accepts, restricted to printable ASCII
// and without '%' (a kernel name template): the name is also a socket file name.
func validateInterface(name string) error {
	if name == "." || name == ".." || len(name) > maxIfaceNameLen {
		return fieldErrf("interface", "%q is not a valid interface name (1 to %d bytes)", name, maxIfaceNameLen)
	}
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == '%' {
			return fieldErrf("interface", "%q has a character not allowed in an interface name", name)
		}
	}
	return nil
}

func validateAddresses(s Spec) []error {
	var errs []error
	a := s.Address.Addr()
	switch {
	case a.IsUnspecified() || a.IsMulticast():
		errs = append(errs, fieldErrf("address", "%v is not a unicast address", s.Address))
	case s.Address.Bits() == 0:
		errs = append(errs, fieldErrf("address", "%v has a zero-length prefix", s.Address))
	}
	switch p := s.PeerAddress; {
	case p.IsUnspecified() || p.IsMulticast() || p.Zone() != "":
		errs = append(errs, fieldErrf("peerAddress", "%v is not a unicast address without zone", p))
	case p == a:
		errs = append(errs, fieldErrf("peerAddress", "%v is also the pod's address", p))
	}
	return errs
}

func validateRoute(field string, r netip.Prefix, before []netip.Prefix) error {
	switch {
	case !r.IsValid():
		return fieldErrf(field, "invalid prefix")
	case r != r.Masked():
		return fieldErrf(field, "%v has host bits set; did you mean %v?", r, r.Masked())
	case r.Bits() == 0:
		return fieldErrf(field, "%v would route everything, the tunnel's own connection included", r)
	}
	for _, b := range before {
		if b == r {
			return fieldErrf(field, "%v is listed twice", r)
		}
	}
	return nil
}

// validateNameservers checks a list of nameservers named field.
func validateNameservers(field string, ns []netip.Addr) []error {
	var errs []error
	if len(ns) > MaxNameservers {
		errs = append(errs, fieldErrf(field, "%d entries, at most %d", len(ns), MaxNameservers))
	}
	for i, a := range ns {
		if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			errs = append(errs, fieldErrf(fmt.Sprintf("%s[%d]", field, i), "%v is not a unicast address", a))
		}
	}
	return errs
}

func validateDNS(d DNS) []error {
	errs := validateNameservers("dns.nameservers", d.Nameservers)
	if len(d.Searches) > MaxSearches {
		errs = append(errs, fieldErrf("dns.searches", "%d entries, at most %d", len(d.Searches), MaxSearches))
	}
	for i, s := range d.Searches {
		if !validDomain(s) {
			errs = append(errs, fieldErrf(fmt.Sprintf("dns.searches[%d]", i), "%q is not a domain name", s))
		}
	}
	return errs
}

// validDomain accepts names of labels of letters, digits, '-' and '_' (not at a label's ends),
// 1 to 63 bytes each, 253 in all, with an optional final dot.
func validDomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func validateTunnel(t Tunnel) []error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	if t.Listen != "" {
		errs = append(errs, validateListen(t)...)
	} else {
		u, err := url.Parse(t.URL)
		switch {
		case t.URL == "":
			add(fieldErrf("tunnel.url", "%w: the shadow's tunnel to dial (or tunnel.listen, to be dialed)", ErrRequired))
		case err != nil:
			add(fieldErrf("tunnel.url", "%q is not a URL", t.URL))
		case u.Scheme != "ws" && u.Scheme != "wss":
			add(fieldErrf("tunnel.url", "scheme %q, want ws or wss", u.Scheme))
		case u.Host == "" || u.Hostname() == "":
			add(fieldErrf("tunnel.url", "%q has no host", t.URL))
		case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.User != nil, u.Opaque != "":
			add(fieldErrf("tunnel.url", "must be scheme://host[:port] only, without path, query, fragment or user (the path prefix has its own field)"))
		}
		if t.CAFile != "" && err == nil && u.Scheme != "wss" {
			add(fieldErrf("tunnel.caFile", "is set but the url is not wss://"))
		}
	}
	switch p := string(t.PathPrefix); {
	case p == "":
		add(fieldErr("tunnel.pathPrefix", ErrRequired))
	case len(p) > MaxPathPrefix:
		add(fieldErrf("tunnel.pathPrefix", "%d bytes, at most %d", len(p), MaxPathPrefix))
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' || r == '?' || r == '#' }):
		add(fieldErrf("tunnel.pathPrefix", "must be one path segment: no '/', '?', '#', space or control character"))
	}
	if strings.ContainsFunc(t.Host, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }) {
		add(fieldErrf("tunnel.host", "%q is not a host[:port]", t.Host))
	}
	if d := t.Destination; !d.Addr().IsValid() || d.Port() == 0 {
		add(fieldErrf("tunnel.destination", "%v needs an address and a non-zero port", d))
	}
	return append(errs, validateNameservers("tunnel.nameservers", t.Nameservers)...)
}

// validateListen checks a tunnel the mesh-agent serves (the inbound direction): a port to listen
// on, and none of the settings that only a dialing agent uses.
func validateListen(t Tunnel) []error {
	var errs []error
	host, port, err := net.SplitHostPort(t.Listen)
	if err != nil {
		errs = append(errs, fieldErrf("tunnel.listen", "%q is not host:port", t.Listen))
	} else if p, perr := strconv.ParseUint(port, 10, 16); perr != nil || p == 0 {
		errs = append(errs, fieldErrf("tunnel.listen", "%q: want a numeric port from 1 to 65535", t.Listen))
	} else if host != "" {
		if _, aerr := netip.ParseAddr(host); aerr != nil {
			errs = append(errs, fieldErrf("tunnel.listen", "%q: the host must be an IP address or empty (every address)", t.Listen))
		}
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"url", t.URL != ""}, {"caFile", t.CAFile != ""}, {"unmasked", t.Unmasked}, {"nameservers", len(t.Nameservers) > 0}} {
		if f.set {
			errs = append(errs, fieldErrf("tunnel."+f.name, "only for a tunnel the agent dials, not with tunnel.listen"))
		}
	}
	return errs
}

func validateForwards(fs []Forward) []error {
	var errs []error
	if len(fs) > MaxForwards {
		errs = append(errs, fieldErrf("forwards", "%d forwards, at most %d", len(fs), MaxForwards))
	}
	type key struct {
		proto string
		port  uint16
	}
	seen := map[key]bool{}
	for i, f := range fs {
		field := fmt.Sprintf("forwards[%d]", i)
		proto := f.Protocol
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			errs = append(errs, fieldErrf(field+".protocol", "%q: want tcp or udp", f.Protocol))
		}
		switch l := f.Listen; {
		case !l.IsValid():
			errs = append(errs, fieldErr(field+".listen", ErrRequired))
		case !l.Addr().IsLoopback() || l.Port() == 0:
			errs = append(errs, fieldErrf(field+".listen", "%v: want a loopback address and a port (the pod's own, never exposed)", l))
		case seen[key{proto, l.Port()}]:
			errs = append(errs, fieldErrf(field+".listen", "%s port %d is listed twice", proto, l.Port()))
		}
		seen[key{proto, f.Listen.Port()}] = true
		host, port, err := net.SplitHostPort(f.To)
		if p, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || p == 0 {
			errs = append(errs, fieldErrf(field+".to", "%q: want host:port", f.To))
		}
	}
	return errs
}
