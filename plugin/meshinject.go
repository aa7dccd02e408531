package plugin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/vkmesh"
)

// Names and places of the injected sidecar.
const (
	// MeshAgentContainer is the name of the injected sidecar; a pod that already has a
	// container of that name is refused.
	MeshAgentContainer = "mesh-agent"
	// MeshSpecKey is the key of the mesh spec in the pod's mesh Secret, mounted read-only as
	// /etc/mesh-agent/mesh.json (the mesh-agent's default --config).
	MeshSpecKey = "mesh.json"
	// MeshTunnelCAKey is the key, in the same Secret, of the CA certificates of option
	// mesh.tunnel_ca (/etc/mesh-agent/tunnel-ca.pem, the spec's tunnel.caFile).
	MeshTunnelCAKey = "tunnel-ca.pem"

	meshAgentPort    = 9101 // meshagent.DefaultListenAddr: /healthz, /readyz, /metrics
	meshConfigDir    = "/etc/mesh-agent"
	meshConfigVolume = "mesh-agent-config"
	meshRunVolume    = "mesh-agent-run"
	meshRunDir       = "/var/run/wireguard" // meshagent.DefaultUAPIDir, on an emptyDir: the root filesystem is read-only
	meshSecretName   = "mesh-agent"         // scoped with the pod UID like every other object

	// AnnotMeshMode chooses one pod's mesh mode, "kernel" or "netstack", over option mesh.mode.
	AnnotMeshMode = "mesh.interlink-k8s-mesh.io/mode"
	// AnnotMeshForwards lists a netstack pod's fixed relays, for clients that honour no proxy:
	// "5432=db.team-a:5432, udp/8125=statsd.monitoring:8125" makes the sidecar listen on
	// 127.0.0.1:5432 and relay to db.team-a:5432 in the local cluster (names resolved by the
	// mesh DNS with the pod's search list).
	AnnotMeshForwards = "mesh.interlink-k8s-mesh.io/forwards"
	// AnnotMeshDNS chooses one pod's DNS mode, "local", "remote" or "none", over option
	// mesh.dns_mode.
	AnnotMeshDNS = "mesh.interlink-k8s-mesh.io/dns"
	// meshAgentUser is the image's nonroot user, which netstack mode runs as.
	meshAgentUser = 65532
	// netstackDNS and netstackProxy are where the netstack sidecar serves the pod
	// (meshagent.DefaultDNSListen, DefaultProxyListen).
	netstackDNS   = "127.0.0.1"
	netstackProxy = "http://127.0.0.1:3128"
)

// proxyEnv are the variables that make HTTP clients use the netstack sidecar's proxy; both
// spellings, as curl reads the lower-case ones and Go's net/http either.
var proxyEnv = []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"}

// noProxy keeps the pod's own loopback off the proxy.
const noProxy = "localhost,127.0.0.1,::1"

// meshMode is the pod's mode: its AnnotMeshMode, else m.Mode.
func meshMode(local *corev1.Pod, m Mesh) (meshspec.Mode, error) {
	v, ok := local.Annotations[AnnotMeshMode]
	if !ok {
		return m.Mode, nil
	}
	mode, err := meshspec.ParseMode(strings.TrimSpace(v))
	if err != nil {
		return "", &ValidationError{Field: "metadata.annotations[" + AnnotMeshMode + "]", Reason: err.Error()}
	}
	return mode, nil
}

// dnsMode is the pod's DNS mode: its AnnotMeshDNS, else m.DNSMode.
func dnsMode(local *corev1.Pod, m Mesh) (DNSMode, error) {
	v, ok := local.Annotations[AnnotMeshDNS]
	if !ok {
		return m.DNSMode, nil
	}
	switch d := DNSMode(strings.TrimSpace(v)); d {
	case DNSLocal, DNSRemote, DNSNone:
		return d, nil
	}
	return "", &ValidationError{Field: "metadata.annotations[" + AnnotMeshDNS + "]", Reason: fmt.Sprintf("%q: want local, remote or none", v)}
}

// injectMesh makes plan's pod join the mesh: the spec goes into a pod-scoped Secret (the only
// place keys and the path prefix are written), the mesh-agent becomes the first init container
// as a native sidecar (restartPolicy Always) whose startup probe holds the other containers
// back until the first WireGuard handshake, and the pod's DNS follows m.DNSMode.
func injectMesh(plan *Plan, local *corev1.Pod, spec meshspec.Spec, m Mesh) error {
	pod := &plan.Pod.Spec
	if pod.HostNetwork {
		return &ValidationError{Field: "pod.spec.hostNetwork", Reason: "a mesh pod cannot use the host network: the mesh-agent would reconfigure the remote node's network (set " + AnnotMeshNetwork + ": disabled to offload it without the mesh)"}
	}
	if err := checkMeshOverlap(spec, m); err != nil {
		return err
	}
	for i, c := range pod.InitContainers {
		if c.Name == MeshAgentContainer {
			return &ValidationError{Field: fmt.Sprintf("pod.spec.initContainers[%d].name", i), Reason: fmt.Sprintf("%q is the name of the mesh sidecar the plugin injects", MeshAgentContainer)}
		}
	}
	for i, c := range pod.Containers {
		if c.Name == MeshAgentContainer {
			return &ValidationError{Field: fmt.Sprintf("pod.spec.containers[%d].name", i), Reason: fmt.Sprintf("%q is the name of the mesh sidecar the plugin injects", MeshAgentContainer)}
		}
	}
	for i, v := range pod.Volumes {
		if v.Name == meshConfigVolume || v.Name == meshRunVolume {
			return &ValidationError{Field: fmt.Sprintf("pod.spec.volumes[%d].name", i), Reason: fmt.Sprintf("%q is the name of a volume of the mesh sidecar", v.Name)}
		}
	}

	mode, err := meshMode(local, m)
	if err != nil {
		return err
	}
	dns, err := dnsMode(local, m)
	if err != nil {
		return err
	}
	direction, err := meshDirection(local, m)
	if err != nil {
		return err
	}
	if mode == meshspec.ModeNetstack {
		spec.Mode = meshspec.ModeNetstack // kernel stays unwritten: mesh.json as before
	}
	inbound := direction == DirectionInbound
	if inbound {
		// The dialing settings (scheme, CA, address, nameservers) are the shadow's now.
		if err := publishInbound(plan, local, &spec, m); err != nil {
			return err
		}
	} else if m.TunnelTLS {
		if err := dialTLS(&spec.Tunnel); err != nil {
			return err
		}
	}
	withCA := !inbound && len(m.TunnelCA) > 0 && strings.HasPrefix(spec.Tunnel.URL, "wss://") && spec.Tunnel.CAFile == ""
	if withCA {
		spec.Tunnel.CAFile = meshConfigDir + "/" + MeshTunnelCAKey
	}
	if !inbound && m.TunnelAddress.IsValid() {
		if err := dialByAddress(&spec.Tunnel, m.TunnelAddress); err != nil {
			return err
		}
	}
	if v := strings.TrimSpace(local.Annotations[AnnotMeshForwards]); v != "" {
		field := "metadata.annotations[" + AnnotMeshForwards + "]"
		if mode != meshspec.ModeNetstack {
			return &ValidationError{Field: field, Reason: "forwards need netstack mode (" + AnnotMeshMode + ": netstack); in kernel mode the mesh routes the local ranges: use the Service's name"}
		}
		fw, err := parseForwards(v)
		if err != nil {
			return &ValidationError{Field: field, Reason: err.Error()}
		}
		spec.Forwards = fw
	}
	switch dns {
	case DNSNone:
		spec.DNS = meshspec.DNS{}
	default:
		if len(spec.DNS.Nameservers) > 0 && len(spec.DNS.Searches) == 0 {
			// Names resolve as in the local namespace, whose DNS this is.
			spec.DNS.Searches = []string{local.Namespace + ".svc." + m.ClusterDomain, "svc." + m.ClusterDomain, m.ClusterDomain}
		}
	}
	// The pod's resolv.conf will name the local DNS alone, which answers only through the mesh:
	// the sidecar resolves the tunnel's host with the remote cluster's DNS instead.
	localResolv := dns == DNSLocal && len(spec.DNS.Nameservers) > 0 && pod.DNSPolicy != corev1.DNSNone
	if localResolv && !inbound && !m.TunnelAddress.IsValid() && len(spec.Tunnel.Nameservers) == 0 && tunnelHostIsName(spec.Tunnel.URL) {
		spec.Tunnel.Nameservers = slices.Clone(m.TunnelNameservers)
	}
	data, err := meshspec.Marshal(spec)
	if err != nil {
		return inputErr(vkmesh.SpecError(err, []string{"the mesh annotations"}))
	}
	secret := &corev1.Secret{
		ObjectMeta: scopedMeta(ScopedName(meshSecretName, string(local.UID)), plan.Namespace, local),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{MeshSpecKey: data},
	}
	if withCA {
		secret.Data[MeshTunnelCAKey] = m.TunnelCA
	}
	for _, s := range plan.Secrets {
		if s.Name == secret.Name {
			return &ValidationError{Field: "container[].secrets", Reason: fmt.Sprintf("the pod's Secret %q would take the name of the mesh Secret %s", meshSecretName, secret.Name)}
		}
	}
	plan.Secrets = append(plan.Secrets, secret)
	plan.Mesh = &spec

	agent := meshAgent(m, mode)
	if inbound {
		agent.Ports = append(agent.Ports, inboundTunnelPort(m))
	}
	agent.Env = append(tunnelProxyEnv(pod), memLimitEnv(m.AgentResources)...) // before setProxyEnv: the workload's own proxy, not the sidecar's
	if mode == meshspec.ModeNetstack {
		setProxyEnv(pod)
	}
	pod.InitContainers = append([]corev1.Container{agent}, pod.InitContainers...)
	pod.Volumes = append(pod.Volumes,
		corev1.Volume{Name: meshConfigVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: secret.Name, DefaultMode: new(secretMode(mode)),
		}}},
		corev1.Volume{Name: meshRunVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
	)
	if localResolv {
		dns := spec.DNS
		if mode == meshspec.ModeNetstack {
			// No route to the mesh nameservers: the sidecar's forwarder relays to them.
			dns.Nameservers = []netip.Addr{netip.MustParseAddr(netstackDNS)}
		}
		applyMeshDNS(pod, dns)
	}
	return nil
}

// tunnelHostIsName tells whether the tunnel URL names its host by a name, which must be resolved.
func tunnelHostIsName(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || u.Hostname() == "" {
		return false
	}
	_, err = netip.ParseAddr(u.Hostname())
	return err != nil
}

// dialTLS makes t dial over TLS: ws:// becomes wss://, and port 80 (said or implied) becomes 443.
func dialTLS(t *meshspec.Tunnel) error {
	u, err := url.Parse(t.URL)
	if err != nil || u.Host == "" {
		return &ValidationError{Field: "mesh tunnel url", Reason: "mesh.tunnel_scheme is wss but the tunnel URL names no host"}
	}
	if u.Scheme == "wss" {
		return nil
	}
	u.Scheme = "wss"
	if u.Port() == "80" {
		u.Host = u.Hostname()
		if strings.Contains(u.Host, ":") {
			u.Host = "[" + u.Host + "]"
		}
	}
	t.URL = u.String()
	if h, p, err := net.SplitHostPort(t.Host); err == nil && p == "80" {
		t.Host = h // the Host header of the default port names no port
	}
	return nil
}

// dialByAddress points t's URL at addr, keeping the host it named as the Host header.
func dialByAddress(t *meshspec.Tunnel, addr netip.AddrPort) error {
	u, err := url.Parse(t.URL)
	if err != nil || u.Host == "" {
		return &ValidationError{Field: "mesh tunnel url", Reason: "mesh.tunnel_address is set but the tunnel URL names no host to replace"}
	}
	if t.Host == "" {
		t.Host = u.Host
		if p := u.Port(); (p == "80" && u.Scheme == "ws") || (p == "443" && u.Scheme == "wss") {
			t.Host = u.Hostname() // what a client sends for the default port
		}
	}
	u.Host = addr.String()
	t.URL = u.String()
	return nil
}

// parseForwards reads AnnotMeshForwards: comma-separated "[tcp/|udp/]<port>=<host>:<port>".
func parseForwards(v string) ([]meshspec.Forward, error) {
	var out []meshspec.Forward
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		listen, to, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want [tcp/|udp/]<port>=<host>:<port>", item)
		}
		f := meshspec.Forward{To: strings.TrimSpace(to)}
		if proto, port, ok := strings.Cut(listen, "/"); ok {
			f.Protocol, listen = strings.ToLower(strings.TrimSpace(proto)), port
		}
		port, err := strconv.ParseUint(strings.TrimSpace(listen), 10, 16)
		if err != nil || port == 0 {
			return nil, fmt.Errorf("%q: %q is not a port from 1 to 65535", item, listen)
		}
		f.Listen = netip.AddrPortFrom(netip.MustParseAddr(netstackDNS), uint16(port))
		if f.Protocol == "tcp" {
			f.Protocol = "" // the default, as mesh.json writes it
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no forward in %q", v)
	}
	s := meshspec.Spec{Forwards: out}
	var errs []error
	if err := s.Validate(); err != nil {
		var fe *meshspec.FieldError
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			if errors.As(e, &fe) && strings.HasPrefix(fe.Field, "forwards") {
				errs = append(errs, e)
			}
		}
	}
	return out, errors.Join(errs...)
}

// secretMode is the mesh Secret's file mode: owner-only for the root sidecar of kernel mode. The
// kubelet writes the files as root, so the nonroot netstack sidecar needs them readable by
// others; the volume is mounted in the sidecar alone (a pod-wide fsGroup would change the
// workload's volumes).
func secretMode(mode meshspec.Mode) int32 {
	if mode == meshspec.ModeNetstack {
		return 0o444
	}
	return 0o400
}

// setProxyEnv points every container's HTTP clients at the netstack sidecar's proxy, which
// reaches local Services by name; a container that sets any proxy variable keeps its own.
func setProxyEnv(pod *corev1.PodSpec) {
	set := func(c *corev1.Container) {
		for _, e := range c.Env {
			if slices.Contains(proxyEnv, e.Name) || strings.EqualFold(e.Name, "no_proxy") {
				return
			}
		}
		for _, name := range proxyEnv {
			c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: netstackProxy})
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: "NO_PROXY", Value: noProxy}, corev1.EnvVar{Name: "no_proxy", Value: noProxy})
	}
	for i := range pod.InitContainers {
		set(&pod.InitContainers[i])
	}
	for i := range pod.Containers {
		set(&pod.Containers[i])
	}
}

// meshAgent is the sidecar container. In kernel mode it runs as root with NET_ADMIN (TUN
// device, addresses, routes) and MKNOD (it creates /dev/net/tun when the runtime did not:
// containerd grants MKNOD by default, CRI-O does not) and every other capability dropped; never
// privileged. In netstack mode it runs as the image's nonroot user with no capability at all,
// as Pod Security "restricted" requires.
func meshAgent(m Mesh, mode meshspec.Mode) corev1.Container {
	httpGet := func(path string) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(meshAgentPort)}}
	}
	return corev1.Container{
		Name:            MeshAgentContainer,
		Image:           m.AgentImage,
		ImagePullPolicy: m.AgentImagePullPolicy,
		Args:            []string{"--config=" + meshConfigDir + "/" + MeshSpecKey},
		Ports:           []corev1.ContainerPort{{Name: "mesh-agent", ContainerPort: meshAgentPort, Protocol: corev1.ProtocolTCP}},
		Resources:       m.AgentResources,
		RestartPolicy:   new(corev1.ContainerRestartPolicyAlways),
		// /readyz answers 200 from the first handshake on: until then nothing else starts.
		StartupProbe: &corev1.Probe{
			ProbeHandler:     httpGet("/readyz"),
			PeriodSeconds:    1,
			TimeoutSeconds:   1,
			FailureThreshold: int32(max(1, m.StartupTimeout/time.Second)),
		},
		// /healthz fails only when the WireGuard device is gone, never for a tunnel outage. A node
		// starting many pods on few cores can take seconds to run a probe: a minute of failed
		// ones restarts the agent, not one slow answer (100 shadow pods on 2 cores: probes
		// timing out killed healthy agents, and each restart made the node busier).
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     httpGet("/healthz"),
			PeriodSeconds:    10,
			TimeoutSeconds:   5,
			FailureThreshold: 6,
		},
		SecurityContext: meshAgentSecurity(mode),
		VolumeMounts: []corev1.VolumeMount{
			{Name: meshConfigVolume, MountPath: meshConfigDir, ReadOnly: true},
			{Name: meshRunVolume, MountPath: meshRunDir},
		},
		// A failing agent's last log lines (never keys: it does not log them) become its
		// termination message, which the status reports.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

// memLimitEnv sets the sidecar's GOMEMLIMIT to 90% of its memory limit, if it has one: the Go
// runtime collects harder near the limit instead of letting a burst of flows take the container
// past it (a netstack sidecar opening 10,000 flows at once reached 492 MiB of a 512Mi cgroup).
func memLimitEnv(r corev1.ResourceRequirements) []corev1.EnvVar {
	lim, ok := r.Limits[corev1.ResourceMemory]
	if !ok || lim.Value() <= 0 {
		return nil
	}
	return []corev1.EnvVar{{Name: "GOMEMLIMIT", Value: strconv.FormatInt(lim.Value()/10*9>>20, 10) + "MiB"}}
}

// proxyEnvNames are the variables the sidecar's tunnel dial honours.
var proxyEnvNames = []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"}

// tunnelProxyEnv returns the proxy settings the pod's own containers carry, for the sidecar: the
// workload's way out of the remote cluster is the tunnel's way to the local one. The first
// container (app containers, then init containers) to set a name wins; values only, as InterLink's
// VK resolves valueFrom before the plugin sees the pod.
func tunnelProxyEnv(pod *corev1.PodSpec) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, name := range proxyEnvNames {
	find:
		for _, cs := range [][]corev1.Container{pod.Containers, pod.InitContainers} {
			for _, c := range cs {
				for _, e := range c.Env {
					if e.Name == name && e.ValueFrom == nil {
						out = append(out, corev1.EnvVar{Name: name, Value: e.Value})
						break find
					}
				}
			}
		}
	}
	return out
}

func meshAgentSecurity(mode meshspec.Mode) *corev1.SecurityContext {
	if mode == meshspec.ModeNetstack {
		return &corev1.SecurityContext{
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			Privileged:               new(false),
			AllowPrivilegeEscalation: new(false),
			ReadOnlyRootFilesystem:   new(true),
			RunAsUser:                new(int64(meshAgentUser)),
			RunAsGroup:               new(int64(meshAgentUser)),
			RunAsNonRoot:             new(true),
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
	}
	return &corev1.SecurityContext{
		Capabilities: &corev1.Capabilities{
			Add:  []corev1.Capability{"NET_ADMIN", "MKNOD"},
			Drop: []corev1.Capability{"ALL"},
		},
		Privileged:               new(false),
		AllowPrivilegeEscalation: new(false),
		ReadOnlyRootFilesystem:   new(true),
		RunAsUser:                new(int64(0)),
		RunAsNonRoot:             new(false),
	}
}

// applyMeshDNS points the pod at the mesh nameservers, keeping what the author added.
func applyMeshDNS(pod *corev1.PodSpec, dns meshspec.DNS) {
	if pod.DNSPolicy == corev1.DNSNone {
		return // the author chose the pod's DNS
	}
	cfg := &corev1.PodDNSConfig{Searches: slices.Clone(dns.Searches)}
	for _, a := range dns.Nameservers {
		cfg.Nameservers = append(cfg.Nameservers, a.String())
	}
	ndots := &corev1.PodDNSConfigOption{Name: "ndots", Value: new("5")} // as ClusterFirst
	if old := pod.DNSConfig; old != nil {
		for _, n := range old.Nameservers {
			if len(cfg.Nameservers) < meshspec.MaxNameservers {
				if !slices.Contains(cfg.Nameservers, n) {
					cfg.Nameservers = append(cfg.Nameservers, n)
				}
			}
		}
		for _, s := range old.Searches {
			if len(cfg.Searches) < meshspec.MaxSearches {
				if !slices.Contains(cfg.Searches, s) {
					cfg.Searches = append(cfg.Searches, s)
				}
			}
		}
		for _, o := range old.Options {
			if o.Name == "ndots" {
				ndots = nil
			}
			cfg.Options = append(cfg.Options, o)
		}
	}
	if ndots != nil {
		cfg.Options = append([]corev1.PodDNSConfigOption{*ndots}, cfg.Options...)
	}
	pod.DNSPolicy = corev1.DNSNone
	pod.DNSConfig = cfg
}

// checkMeshOverlap refuses mesh ranges that cover the remote cluster's own pod or Service
// ranges: the sidecar would route the remote cluster's traffic into the tunnel.
func checkMeshOverlap(spec meshspec.Spec, m Mesh) error {
	check := func(field string, p netip.Prefix) error {
		for _, r := range []struct {
			option, what string
			cidrs        []netip.Prefix
		}{
			{"mesh.remote_pod_cidr", "pod", m.RemotePodCIDRs},
			{"mesh.remote_service_cidr", "Service", m.RemoteServiceCIDRs},
		} {
			for _, c := range r.cidrs {
				if p.Overlaps(c) {
					return &ValidationError{Field: "mesh." + field, Reason: fmt.Sprintf("%v overlaps the remote cluster's %s CIDR %v (option %s): routing it into the mesh would cut the pod off from remote %ss", p, r.what, c, r.option, r.what)}
				}
			}
		}
		return nil
	}
	s := spec.WithDefaults()
	for i, r := range s.Routes {
		if err := check(fmt.Sprintf("routes[%d]", i), r); err != nil {
			return err
		}
	}
	if err := check("address", s.Address); err != nil {
		return err
	}
	if err := check("peerAddress", netip.PrefixFrom(s.PeerAddress, s.PeerAddress.BitLen())); err != nil {
		return err
	}
	for i, a := range s.DNS.Nameservers {
		if err := check(fmt.Sprintf("dns.nameservers[%d]", i), netip.PrefixFrom(a, a.BitLen())); err != nil {
			return err
		}
	}
	return nil
}
