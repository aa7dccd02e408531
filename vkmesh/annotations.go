package vkmesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// The pod annotations that carry a pod's mesh. The first four are the virtual kubelet's
// (network.fullMesh); AnnotMeshSpec is this project's structured form.
const (
	// AnnotPreExec holds the shell script rendered from the VK's mesh script template (its
	// default or a custom meshScriptTemplatePath): WireGuard keys, the wstunnel client command
	// with the tunnel's secret path prefix, addresses, MTU, routes and resolv.conf lines.
	AnnotPreExec = "slurm-job.vk.io/pre-exec"
	// AnnotWGSnippet holds a wg-quick style config (Address, PrivateKey, DNS, MTU, [Peer]
	// PublicKey, AllowedIPs, Endpoint, PersistentKeepalive). It lacks the ingress host and the
	// path prefix, so it only complements AnnotPreExec or AnnotMeshSpec.
	AnnotWGSnippet = "interlink.eu/wireguard-client-snippet"
	// AnnotMeshNetwork set to "disabled" opts a pod out of the mesh: it is offloaded untouched.
	AnnotMeshNetwork = "interlink.eu/mesh-network"
	// AnnotWstunnelCommands is the VK's tunnel command when the full mesh is off; it holds the
	// tunnel's path prefix, so it never reaches the remote pod either (nor does any other
	// interlink.eu/*-client-commands annotation: rathole and ssh tunnels carry credentials too).
	AnnotWstunnelCommands = "interlink.eu/wstunnel-client-commands"
	// AnnotMeshSpec is the structured form of a pod's mesh: a mesh.json document (package
	// meshspec, "version": "v1", the same field names and formats). Every field is optional
	// here except version, so a template that cannot render the keys (the VK hands them to
	// templates only inside a rendered WireGuard config) may leave them to AnnotWGSnippet; what
	// is present must agree with the other annotations. The same document is also accepted as
	// the whole AnnotPreExec value, or as a heredoc body inside it, which is how a custom VK mesh
	// script template (meshScriptTemplatePath) delivers it.
	AnnotMeshSpec = "mesh.interlink-k8s-mesh.io/spec"
)

// Parse recovers the mesh a pod must join from its annotations. ok is false when
// the pod carries no mesh input or opts out with AnnotMeshNetwork: disabled. Every source must
// agree with the others on each value it gives; a missing, contradictory or invalid value is a
// *InputError whose Field is "mesh.<mesh.json field>" and whose reason names the
// annotations involved, never a key or the path prefix.
//
// By meaning: the WireGuard interface is the one wireguard-go and wg are run on (or WG_IFACE);
// keys, MTU and keepalive come from [Interface]/[Peer] sections; the address from `ip addr add`
// or Address; routes from `ip route add … dev <that interface>` (AllowedIPs only tell the
// shadow's address: their first single-address entry); the tunnel from the `wstunnel client`
// command (server URL, --http-upgrade-path-prefix, the udp -L destination; unmasked frames
// unless --websocket-mask-frame); nameservers from resolv.conf lines and DNS keys, keeping only
// those the mesh routes reach (public resolvers and the host's are not the mesh's DNS).
func Parse(annotations map[string]string) (spec meshspec.Spec, ok bool, err error) {
	if strings.EqualFold(strings.TrimSpace(annotations[AnnotMeshNetwork]), "disabled") {
		return spec, false, nil
	}
	var sources []meshSource
	if v := annotations[AnnotMeshSpec]; strings.TrimSpace(v) != "" {
		s, err := decodePartialSpec(v)
		if err != nil {
			return spec, false, annotationErr(AnnotMeshSpec, err)
		}
		sources = append(sources, meshSource{name: AnnotMeshSpec, spec: s})
	}
	if v := annotations[AnnotPreExec]; strings.TrimSpace(v) != "" {
		src, isMesh, err := preExecSource(v)
		if err != nil {
			return spec, false, annotationErr(AnnotPreExec, err)
		}
		if isMesh {
			sources = append(sources, src)
		}
	}
	if v := annotations[AnnotWGSnippet]; strings.TrimSpace(v) != "" {
		src, err := snippetSource(v)
		if err != nil {
			return spec, false, annotationErr(AnnotWGSnippet, err)
		}
		sources = append(sources, src)
	}
	if len(sources) == 0 {
		return spec, false, nil
	}

	var fs fieldSetter
	for _, src := range sources {
		mergeSpec(&fs, &spec, src.spec, src.name)
	}
	// The shadow's address: the first single-address entry of each source's AllowedIPs.
	for _, src := range sources {
		for _, p := range src.allowedIPs {
			if p.IsSingleIP() {
				setField(&fs, &spec.PeerAddress, p.Addr(), "peerAddress", src.name)
				break
			}
		}
	}
	if fs.err != nil {
		return spec, false, fs.err
	}
	if spec.DNS.Nameservers == nil {
		spec.DNS.Nameservers = meshNameservers(spec, sources)
	}
	spec.Version = meshspec.Version1
	if err := requireMeshFields(spec, sources); err != nil {
		return spec, false, err
	}
	if err := spec.Validate(); err != nil {
		return spec, false, SpecError(err, sourceNames(sources))
	}
	return spec, true, nil
}

// meshSource is what one annotation says.
type meshSource struct {
	name        string
	spec        meshspec.Spec  // zero fields: not said
	allowedIPs  []netip.Prefix // [Peer] AllowedIPs
	nameservers []netip.Addr   // candidate nameservers, in order
}

func preExecSource(v string) (meshSource, bool, error) {
	src := meshSource{name: AnnotPreExec}
	if strings.HasPrefix(strings.TrimSpace(v), "{") {
		// A custom template that renders mesh.json itself; what follows the document is the
		// pod's own pre-exec, which the VK appends.
		var s meshspec.Spec
		if err := json.NewDecoder(strings.NewReader(v)).Decode(&s); err != nil {
			return src, false, err
		}
		if err := checkVersion(s); err != nil {
			return src, false, err
		}
		src.spec = s
		return src, true, nil
	}
	facts, isMesh, err := parseMeshScript(v)
	if err != nil || !isMesh {
		return src, false, err
	}
	src.spec, src.allowedIPs, err = facts.spec()
	src.nameservers = facts.nameservers()
	return src, true, err
}

func snippetSource(v string) (meshSource, error) {
	src := meshSource{name: AnnotWGSnippet}
	if !isWGConfig(v) {
		return src, &InputError{Field: "pod.metadata.annotations[" + AnnotWGSnippet + "]", Reason: "holds no WireGuard [Interface] or [Peer] section"}
	}
	c, err := parseWGConfig(v)
	if err != nil {
		return src, err
	}
	if len(c.addresses) > 1 {
		return src, meshFieldErr("address", "%s gives %d addresses; the mesh gives the pod one", AnnotWGSnippet, len(c.addresses))
	}
	p := c.peer()
	src.spec = meshspec.Spec{PrivateKey: c.privateKey, PeerPublicKey: p.publicKey, MTU: c.mtu, PersistentKeepalive: p.keepalive}
	if len(c.addresses) == 1 {
		src.spec.Address = c.addresses[0]
	}
	src.allowedIPs = p.allowedIPs
	src.nameservers = c.dns
	return src, nil
}

// decodePartialSpec reads the structured form: strict mesh.json, any field but version optional.
func decodePartialSpec(v string) (meshspec.Spec, error) {
	var s meshspec.Spec
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		return s, err
	}
	return s, checkVersion(s)
}

func checkVersion(s meshspec.Spec) error {
	if s.Version != meshspec.Version1 {
		return meshFieldErr("version", "structured mesh spec version %q, want %q", s.Version, meshspec.Version1)
	}
	return nil
}

// meshNameservers keeps the candidate nameservers the mesh reaches: inside a route, or the shadow
// itself. At most meshspec.MaxNameservers, in the order of the sources.
func meshNameservers(spec meshspec.Spec, sources []meshSource) []netip.Addr {
	var out []netip.Addr
	peer := spec.WithDefaults().PeerAddress
	for _, src := range sources {
		for _, a := range src.nameservers {
			reached := a == peer || slices.ContainsFunc(spec.Routes, func(r netip.Prefix) bool { return r.Contains(a) })
			if reached && len(out) < meshspec.MaxNameservers {
				out = appendNew(out, a)
			}
		}
	}
	return out
}

// requireMeshFields reports a missing required value with where it was looked for.
func requireMeshFields(s meshspec.Spec, sources []meshSource) error {
	from := strings.Join(sourceNames(sources), " and ")
	switch {
	case s.PrivateKey.IsZero():
		return meshFieldErr("privateKey", "missing: no WireGuard [Interface] PrivateKey in %s", from)
	case s.PeerPublicKey.IsZero():
		return meshFieldErr("peerPublicKey", "missing: no WireGuard [Peer] PublicKey in %s", from)
	case s.Tunnel.URL == "":
		return meshFieldErr("tunnel.url", "missing: no `wstunnel client … ws://<ingress host>` command in %s and no tunnel.url in %s (%s cannot carry it)", AnnotPreExec, AnnotMeshSpec, AnnotWGSnippet)
	case s.Tunnel.PathPrefix == "":
		return meshFieldErr("tunnel.pathPrefix", "missing: no --http-upgrade-path-prefix on the wstunnel client command in %s and no tunnel.pathPrefix in %s (%s cannot carry it)", AnnotPreExec, AnnotMeshSpec, AnnotWGSnippet)
	}
	return nil
}

func sourceNames(sources []meshSource) []string {
	names := make([]string, len(sources))
	for i, s := range sources {
		names[i] = s.name
	}
	return names
}

// annotationErr names the annotation in an error that does not already name a mesh field.
func annotationErr(annotation string, err error) error {
	var verr *InputError
	if errors.As(err, &verr) {
		if !strings.Contains(verr.Reason, annotation) {
			verr.Reason += " (in " + annotation + ")"
		}
		return verr
	}
	var ferr *meshspec.FieldError
	if errors.As(err, &ferr) {
		return meshFieldErr(ferr.Field, "%v (in %s)", ferr.Err, annotation)
	}
	return &InputError{Field: "pod.metadata.annotations[" + annotation + "]", Reason: err.Error()}
}

// SpecError turns meshspec.Validate's errors into one InputError on the first field.
func SpecError(err error, sources []string) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	verr := &InputError{Field: "mesh"}
	var reasons []string
	for i, e := range errs {
		var ferr *meshspec.FieldError
		if errors.As(e, &ferr) {
			if i == 0 {
				verr.Field = "mesh." + ferr.Field
				reasons = append(reasons, ferr.Err.Error())
				continue
			}
		}
		reasons = append(reasons, e.Error())
	}
	verr.Reason = strings.Join(reasons, "; ") + " (from " + strings.Join(sources, " and ") + ")"
	return verr
}

// fieldSetter fills a spec from several sources and remembers the first contradiction.
type fieldSetter struct {
	err  error
	from map[string]string // field → the source that set it
}

// setField sets *dst to v unless v is zero; a different value already set is a contradiction.
// Keys and the path prefix are never quoted.
func setField[T comparable](fs *fieldSetter, dst *T, v T, field, src string) {
	var zero T
	if fs.err != nil || v == zero {
		return
	}
	if fs.from == nil {
		fs.from = map[string]string{}
	}
	if *dst == zero {
		*dst = v
		fs.from[field] = src
		return
	}
	if *dst == v {
		return
	}
	values := ""
	switch any(v).(type) {
	case meshspec.Key, meshspec.Secret:
	default:
		values = fmt.Sprintf(": %v and %v", *dst, v)
	}
	prev := fs.from[field]
	if prev == src || prev == "" {
		fs.err = meshFieldErr(field, "%s gives two different values%s", src, values)
		return
	}
	fs.err = meshFieldErr(field, "%s and %s disagree%s", prev, src, values)
}

// mergeSpec merges every field v gives into dst. Routes and nameservers are compared as sets.
func mergeSpec(fs *fieldSetter, dst *meshspec.Spec, v meshspec.Spec, src string) {
	setField(fs, &dst.Interface, v.Interface, "interface", src)
	setField(fs, &dst.PrivateKey, v.PrivateKey, "privateKey", src)
	setField(fs, &dst.PeerPublicKey, v.PeerPublicKey, "peerPublicKey", src)
	setField(fs, &dst.Address, v.Address, "address", src)
	setField(fs, &dst.PeerAddress, v.PeerAddress, "peerAddress", src)
	setField(fs, &dst.MTU, v.MTU, "mtu", src)
	setField(fs, &dst.PersistentKeepalive, v.PersistentKeepalive, "persistentKeepalive", src)
	setField(fs, &dst.Tunnel.URL, v.Tunnel.URL, "tunnel.url", src)
	setField(fs, &dst.Tunnel.PathPrefix, v.Tunnel.PathPrefix, "tunnel.pathPrefix", src)
	setField(fs, &dst.Tunnel.Host, v.Tunnel.Host, "tunnel.host", src)
	setField(fs, &dst.Tunnel.Destination, v.Tunnel.Destination, "tunnel.destination", src)
	setField(fs, &dst.Tunnel.CAFile, v.Tunnel.CAFile, "tunnel.caFile", src)
	dst.Tunnel.Unmasked = dst.Tunnel.Unmasked || v.Tunnel.Unmasked
	setList(fs, &dst.Routes, v.Routes, "routes", src)
	setList(fs, &dst.DNS.Nameservers, v.DNS.Nameservers, "dns.nameservers", src)
	setList(fs, &dst.DNS.Searches, v.DNS.Searches, "dns.searches", src)
}

func setList[T comparable](fs *fieldSetter, dst *[]T, v []T, field, src string) {
	if fs.err != nil || len(v) == 0 {
		return
	}
	if fs.from == nil {
		fs.from = map[string]string{}
	}
	if len(*dst) == 0 {
		*dst = slices.Clone(v)
		fs.from[field] = src
		return
	}
	if subset(*dst, v) && subset(v, *dst) {
		return
	}
	if prev := fs.from[field]; prev != "" && prev != src {
		fs.err = meshFieldErr(field, "%s and %s disagree: %v and %v", prev, src, *dst, v)
		return
	}
	fs.err = meshFieldErr(field, "%s gives two different lists: %v and %v", src, *dst, v)
}

// subset reports whether every element of a is in b.
func subset[T comparable](a, b []T) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
