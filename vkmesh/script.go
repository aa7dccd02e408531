package vkmesh

import (
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// maxScriptDepth bounds the recursion into here-documents: the VK's pre-exec holds mesh.sh,
// which holds slirp.sh.
const maxScriptDepth = 4

// scriptFacts is what a mesh pre-exec script says, read by meaning: which commands it runs with
// which arguments, wherever they sit in the script and whatever the template around them.
type scriptFacts struct {
	vars      map[string][]string // standalone assignments, NAME → values in order
	wgIfaces  []string            // arguments naming the WireGuard interface (wireguard-go, wg setconf)
	ipCmds    []ipFact
	tunnels   []wstunnelClient
	configs   []wgConfig
	specs     []meshspec.Spec // mesh.json bodies written by the script (structured form)
	nameTexts []string        // text searched for resolv.conf nameserver lines
}

// ipFact is one `ip addr add`, `ip link set … mtu` or `ip route add` with its device, resolved
// against the WireGuard interface once the whole script has been read.
type ipFact struct {
	kind  string // "address", "mtu", "route"
	value string
	dev   string
}

// wstunnelClient is one `wstunnel client` command line.
type wstunnelClient struct {
	urls, prefixes, locals []string
	host                   string
	masked                 bool
}

// parseMeshScript reads the mesh part of a pre-exec script: the body of the EOFMESH heredoc
// when there is one (the VK prepends its mesh script to any pre-exec the pod already had),
// otherwise the whole script. isMesh is false when the script neither configures WireGuard nor
// runs a wstunnel client: a pre-exec of another purpose.
func parseMeshScript(script string) (f *scriptFacts, isMesh bool, err error) {
	f = &scriptFacts{vars: map[string][]string{}}
	body := script
find:
	for _, c := range lexShell(script) {
		for _, h := range c.heredocs {
			if h.delim == "EOFMESH" {
				body = h.body
				break find
			}
		}
	}
	f.nameTexts = append(f.nameTexts, body)
	if isSpecJSON(body) { // a custom template writing mesh.json itself
		s, err := decodePartialSpec(body)
		if err != nil {
			return nil, false, err
		}
		f.specs = append(f.specs, s)
	} else if err := f.walk(body, 0); err != nil {
		return nil, false, err
	}
	return f, len(f.configs) > 0 || len(f.tunnels) > 0 || len(f.specs) > 0, nil
}

func (f *scriptFacts) walk(script string, depth int) error {
	for _, c := range lexShell(script) {
		f.command(c.words)
		for _, h := range c.heredocs {
			switch {
			case isWGConfig(h.body):
				wc, err := parseWGConfig(h.body)
				if err != nil {
					return err
				}
				f.configs = append(f.configs, wc)
			case isSpecJSON(h.body):
				s, err := decodePartialSpec(h.body)
				if err != nil {
					return err
				}
				f.specs = append(f.specs, s)
			case depth < maxScriptDepth:
				if err := f.walk(h.body, depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func isAssignment(w string) bool {
	name, _, ok := strings.Cut(w, "=")
	if !ok || name == "" {
		return false
	}
	for i, c := range name {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (f *scriptFacts) command(words []string) {
	i := 0
	if len(words) > 0 && (words[0] == "export" || words[0] == "local" || words[0] == "readonly") {
		i = 1
	}
	start := i
	for i < len(words) && isAssignment(words[i]) {
		i++
	}
	if i == len(words) { // only assignments: shell variables
		for _, w := range words[start:] {
			name, v, _ := strings.Cut(w, "=")
			f.vars[name] = append(f.vars[name], v)
		}
		return
	}
	name, args := path.Base(words[i]), words[i+1:]
	// Wrappers that run the next word as the command (env also takes assignments first).
	for (name == "exec" || name == "sudo" || name == "nohup" || name == "env" || name == "command") && len(args) > 0 {
		j := 0
		for j < len(args)-1 && (isAssignment(args[j]) || strings.HasPrefix(args[j], "-")) {
			j++
		}
		name, args = path.Base(args[j]), args[j+1:]
	}
	switch name {
	case "ip":
		f.ip(args)
	case "wstunnel":
		if len(args) > 0 && args[0] == "client" {
			f.tunnels = append(f.tunnels, parseWstunnelClient(args[1:]))
		}
	case "wireguard-go":
		for j := len(args) - 1; j >= 0; j-- {
			if !strings.HasPrefix(args[j], "-") {
				f.wgIfaces = append(f.wgIfaces, args[j])
				break
			}
		}
	case "wg":
		if len(args) >= 2 {
			switch args[0] {
			case "setconf", "addconf", "syncconf", "set":
				f.wgIfaces = append(f.wgIfaces, args[1])
			}
		}
	}
}

// ip records the ip(8) commands that configure an interface; iproute2 accepts any prefix of an
// object name ("a", "addr", "address").
func (f *scriptFacts) ip(args []string) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-n", "-netns", "-b", "-batch", "-rc", "-rcvbuf", "-f", "-family":
			args = args[min(2, len(args)):]
		default:
			args = args[1:]
		}
	}
	if len(args) < 2 {
		return
	}
	obj, verb, rest := args[0], args[1], args[2:]
	after := func(key string) string {
		for j := 0; j+1 < len(rest); j++ {
			if rest[j] == key {
				return rest[j+1]
			}
		}
		return ""
	}
	firstValue := func() string {
		for j := 0; j < len(rest); j++ {
			switch rest[j] {
			case "dev", "via", "src", "table", "metric", "proto", "scope", "label", "peer", "mtu":
				j++
			case "local", "to", "unicast":
			default:
				return rest[j]
			}
		}
		return ""
	}
	switch {
	case isAbbrev(obj, "address") && (verb == "add" || verb == "replace"):
		f.ipCmds = append(f.ipCmds, ipFact{kind: "address", value: firstValue(), dev: after("dev")})
	case isAbbrev(obj, "link") && verb == "set":
		if mtu := after("mtu"); mtu != "" {
			dev := after("dev")
			if dev == "" && len(rest) > 0 {
				dev = rest[0]
			}
			f.ipCmds = append(f.ipCmds, ipFact{kind: "mtu", value: mtu, dev: dev})
		}
	case isAbbrev(obj, "route") && (verb == "add" || verb == "replace" || verb == "append"):
		f.ipCmds = append(f.ipCmds, ipFact{kind: "route", value: firstValue(), dev: after("dev")})
	}
}

func isAbbrev(s, full string) bool { return s != "" && strings.HasPrefix(full, s) }

// wstunnel client options that take a value, so that value is never taken for the server URL.
var wstunnelValueFlags = map[string]bool{
	"-R": true, "--remote-to-local": true, "-p": true, "--http-proxy": true, "--http-proxy-login": true,
	"--http-proxy-password": true, "--tls-sni-override": true, "--tls-certificate": true,
	"--tls-private-key": true, "-c": true, "--connection-min-idle": true,
	"--connection-retry-max-backoff": true, "--http-upgrade-credentials": true,
	"--websocket-ping-frequency": true, "--dns-resolver": true, "--nb-worker-threads": true,
	"--log-lvl": true,
}

func parseWstunnelClient(args []string) wstunnelClient {
	var t wstunnelClient
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := a, "", false
		if strings.HasPrefix(a, "--") {
			name, val, hasVal = strings.Cut(a, "=")
		}
		value := func() string {
			if hasVal {
				return val
			}
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch {
		case name == "-L" || name == "--local-to-remote":
			t.locals = append(t.locals, value())
		case strings.HasPrefix(name, "-L") && !strings.HasPrefix(name, "--"):
			t.locals = append(t.locals, name[2:])
		case name == "-P" || name == "--http-upgrade-path-prefix":
			t.prefixes = append(t.prefixes, value())
		case name == "-H" || name == "--http-headers":
			if k, v, ok := strings.Cut(value(), ":"); ok && strings.EqualFold(strings.TrimSpace(k), "host") {
				t.host = strings.TrimSpace(v)
			}
		case name == "--websocket-mask-frame":
			t.masked = true
		case wstunnelValueFlags[name]:
			value()
		case strings.HasPrefix(a, "ws://") || strings.HasPrefix(a, "wss://"):
			t.urls = append(t.urls, a)
		}
	}
	return t
}

// resolve replaces a lone $NAME or ${NAME} by the single value the script assigns to NAME.
func (f *scriptFacts) resolve(w string) string {
	name := strings.TrimPrefix(w, "$")
	if name == w {
		return w
	}
	if strings.HasPrefix(name, "{") && strings.HasSuffix(name, "}") {
		name = name[1 : len(name)-1]
	}
	if vs := appendNew([]string(nil), f.vars[name]...); len(vs) == 1 {
		return vs[0]
	}
	return w
}

// spec turns the facts into the mesh spec the script describes; unset fields are zero.
// allowedIPs are the WireGuard configs' [Peer] AllowedIPs, which name the shadow's address.
func (f *scriptFacts) spec() (s meshspec.Spec, allowedIPs []netip.Prefix, err error) {
	var fs fieldSetter
	const src = "the pre-exec script"

	// The WireGuard interface: what wireguard-go and wg are run on, else WG_IFACE.
	var ifaces []string
	for _, w := range f.wgIfaces {
		if r := f.resolve(w); !strings.Contains(r, "$") {
			ifaces = appendNew(ifaces, r)
		}
	}
	if len(ifaces) == 0 {
		ifaces = appendNew(ifaces, f.vars["WG_IFACE"]...)
	}
	if len(ifaces) > 1 {
		return s, nil, meshFieldErr("interface", "the pre-exec script names several WireGuard interfaces (%s)", strings.Join(ifaces, ", "))
	}
	if len(ifaces) == 1 {
		s.Interface = ifaces[0]
	}
	meshDev := func(dev string) bool {
		if dev == "" {
			return false
		}
		return f.resolve(dev) == s.Interface || s.Interface == "" && (dev == "$WG_IFACE" || dev == "${WG_IFACE}")
	}

	for _, c := range f.ipCmds {
		if !meshDev(c.dev) {
			continue
		}
		switch c.kind {
		case "address":
			p, perr := parsePrefixOrAddr(c.value)
			if perr != nil {
				return s, nil, meshFieldErr("address", "`ip addr add %s dev %s` does not name an address", c.value, c.dev)
			}
			setField(&fs, &s.Address, p, "address", src)
		case "mtu":
			n, perr := strconv.Atoi(c.value)
			if perr != nil {
				return s, nil, meshFieldErr("mtu", "`ip link set %s mtu %s` does not name a number", c.dev, c.value)
			}
			setField(&fs, &s.MTU, n, "mtu", src)
		case "route":
			v := c.value
			if v == "default" {
				v = "0.0.0.0/0"
			}
			p, perr := parsePrefixOrAddr(v)
			if perr != nil {
				return s, nil, meshFieldErr("routes", "`ip route add %s dev %s` does not name a CIDR", c.value, c.dev)
			}
			s.Routes = appendNew(s.Routes, p)
		}
	}

	for _, c := range f.configs {
		setField(&fs, &s.PrivateKey, c.privateKey, "privateKey", src)
		for _, a := range c.addresses {
			setField(&fs, &s.Address, a, "address", src)
		}
		setField(&fs, &s.MTU, c.mtu, "mtu", src)
		p := c.peer()
		setField(&fs, &s.PeerPublicKey, p.publicKey, "peerPublicKey", src)
		setField(&fs, &s.PersistentKeepalive, p.keepalive, "persistentKeepalive", src)
		allowedIPs = appendNew(allowedIPs, p.allowedIPs...)
	}

	for _, t := range f.tunnels {
		for _, u := range t.urls {
			if strings.ContainsAny(u, "${}") {
				return s, nil, meshFieldErr("tunnel.url", "the wstunnel client's server URL %q is not literal: a shell variable or template field is left unexpanded", u)
			}
			setField(&fs, &s.Tunnel.URL, strings.TrimSuffix(u, "/"), "tunnel.url", src)
		}
		for _, p := range t.prefixes {
			if strings.ContainsAny(p, "${}") {
				return s, nil, meshFieldErr("tunnel.pathPrefix", "the wstunnel client's --http-upgrade-path-prefix is not literal: a shell variable or template field is left unexpanded")
			}
			setField(&fs, &s.Tunnel.PathPrefix, meshspec.Secret(p), "tunnel.pathPrefix", src)
		}
		setField(&fs, &s.Tunnel.Host, t.host, "tunnel.host", src)
		// A default-flag wstunnel client sends unmasked frames and a stock wstunnel server
		// relies on it; the shadow-agent accepts both.
		s.Tunnel.Unmasked = s.Tunnel.Unmasked || !t.masked
		for _, l := range t.locals {
			dst, ok, lerr := parseUDPLocal(l)
			if lerr != nil {
				return s, nil, lerr
			}
			if ok {
				setField(&fs, &s.Tunnel.Destination, dst, "tunnel.destination", src)
			}
		}
	}
	for _, js := range f.specs {
		mergeSpec(&fs, &s, js, src)
	}
	return s, allowedIPs, fs.err
}

// parseUDPLocal reads a wstunnel -L spec "udp://[BIND:]PORT:HOST:PORT[?options]" and returns
// the destination the server is asked to reach; ok is false for other protocols (tcp://,
// socks5://…).
func parseUDPLocal(spec string) (dst netip.AddrPort, ok bool, err error) {
	scheme, rest, found := strings.Cut(spec, "://")
	if !found || scheme != "udp" {
		return dst, false, nil
	}
	rest, _, _ = strings.Cut(rest, "?")
	var parts []string
	for rest != "" && len(parts) < 5 {
		var part string
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				break
			}
			part, rest = rest[1:end], strings.TrimPrefix(rest[end+1:], ":")
		} else {
			part, rest, _ = strings.Cut(rest, ":")
		}
		parts = append(parts, part)
	}
	bad := meshFieldErr("tunnel.destination", "wstunnel -L %q is not udp://[BIND:]PORT:HOST:PORT with an IP address as HOST", spec)
	if len(parts) != 3 && len(parts) != 4 || rest != "" {
		return dst, false, bad
	}
	host, port := parts[len(parts)-2], parts[len(parts)-1]
	if host == "localhost" {
		host = "127.0.0.1" // resolved by the server, which is the shadow pod itself
	}
	a, aerr := netip.ParseAddr(host)
	p, perr := strconv.ParseUint(port, 10, 16)
	if aerr != nil || perr != nil || p == 0 {
		return dst, false, bad
	}
	return netip.AddrPortFrom(a, uint16(p)), true, nil
}

// nameserverRE finds resolv.conf lines the script writes, in echo arguments or heredocs.
var nameserverRE = regexp.MustCompile(`\bnameserver[ \t]+([0-9A-Fa-f:.]+)`)

// nameservers lists, in order of appearance, the literal nameserver addresses the script writes
// into resolv.conf files. Which of them belong to the mesh is decided later, against the routes.
func (f *scriptFacts) nameservers() []netip.Addr {
	var out []netip.Addr
	for _, text := range f.nameTexts {
		for _, m := range nameserverRE.FindAllStringSubmatch(text, -1) {
			if a, err := netip.ParseAddr(m[1]); err == nil {
				out = appendNew(out, a)
			}
		}
	}
	return out
}

// isSpecJSON reports whether a heredoc body is a mesh.json (the structured form written by a
// custom mesh template).
func isSpecJSON(body string) bool {
	return strings.HasPrefix(strings.TrimSpace(body), "{") && strings.Contains(body, `"version"`)
}
