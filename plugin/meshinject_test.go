package plugin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshagent"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/vkmesh"
)

// meshPod is a small pod with an init container that needs the mesh (it waits for a local
// Service), so the golden files show the sidecar's place and nothing else distracts.
func meshPod(uid, name, namespace string, annotations map[string]string) RetrievedPodData {
	return RetrievedPodData{Pod: corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, UID: types.UID(uid), Labels: map[string]string{"app": name}, Annotations: annotations},
		Spec: corev1.PodSpec{
			NodeName:        "virtual-kubelet",
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: new(true), RunAsUser: new(int64(1000))},
			InitContainers:  []corev1.Container{{Name: "wait-db", Image: "busybox:1", Command: []string{"sh", "-c", "until nslookup db; do sleep 1; done"}}},
			Containers:      []corev1.Container{{Name: "web", Image: "registry.example/web:2", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}},
		},
	}}
}

// meshVariant is one way a pod's mesh arrives, with the spec it must produce.
type meshVariant struct {
	name        string
	annotations map[string]string
	want        meshspec.Spec // as vkmesh parses it, before the plugin adds the DNS search list
}

func meshVariants(t testing.TB) []meshVariant {
	vs := []meshVariant{
		{name: "vk-default", annotations: map[string]string{AnnotPreExec: meshFile(t, "vk-default.sh"), AnnotWGSnippet: meshFile(t, "vk-default.snippet")}},
		{name: "seed-custom", annotations: map[string]string{AnnotPreExec: meshFile(t, "seed-custom.sh")}},
		{name: "structured", annotations: map[string]string{AnnotMeshSpec: meshFile(t, "structured-nokeys.json"), AnnotWGSnippet: meshFile(t, "structured.snippet")}},
	}
	for i := range vs {
		spec, ok, err := vkmesh.Parse(vs[i].annotations)
		if err != nil || !ok {
			t.Fatalf("%s: vkmesh.Parse: ok %v, %v", vs[i].name, ok, err)
		}
		vs[i].want = spec
	}
	return vs
}

// meshFile reads a sample mesh input from vkmesh's testdata (its README says where each comes from).
func meshFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "vkmesh", "testdata", "mesh", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// meshSecrets are the private keys and tunnel path prefixes of the sample inputs: no error and
// no remote pod may contain them.
func meshSecrets(t testing.TB) []string {
	t.Helper()
	specs := []meshspec.Spec{}
	for _, v := range meshVariants(t) {
		specs = append(specs, v.want)
	}
	full, err := meshspec.Parse([]byte(meshFile(t, "structured.json")))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range append(specs, full) {
		out = append(out, base64.StdEncoding.EncodeToString(s.PrivateKey[:]), string(s.Tunnel.PathPrefix))
	}
	return out
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

const meshTestUID = "0b6e3c5e-8f1a-4c1e-9a51-6f3f8a3d2c11"

func TestTranslateMeshGolden(t *testing.T) {
	for _, v := range meshVariants(t) {
		t.Run(v.name, func(t *testing.T) {
			req := meshPod(meshTestUID, "web-0", "team-a", v.annotations)
			plan, err := Translate(&req, testOffloading)
			if err != nil {
				t.Fatal(err)
			}
			got, err := yaml.Marshal(plan)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "mesh-"+v.name+".golden", got)
		})
	}
}

var netipComparers = cmp.Options{
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

// TestTranslateMeshPod checks what the golden files show, so that no -update can bless a sidecar
// that leaks a key, runs privileged or lets the application start before the mesh.
func TestTranslateMeshPod(t *testing.T) {
	for _, v := range meshVariants(t) {
		t.Run(v.name, func(t *testing.T) {
			req := meshPod(meshTestUID, "web-0", "team-a", v.annotations)
			plan, err := Translate(&req, testOffloading)
			if err != nil {
				t.Fatal(err)
			}
			checkMeshPod(t, plan.Pod)

			// The keys live in the Secret only, and the Secret says what the annotations said.
			want := v.want
			want.DNS.Searches = []string{"team-a.svc.cluster.local", "svc.cluster.local", "cluster.local"}
			secret := meshSecretOf(t, plan.Secrets, meshTestUID)
			got, err := meshspec.Parse(secret.Data[MeshSpecKey])
			if err != nil {
				t.Fatalf("mesh.json: %v", err)
			}
			if diff := cmp.Diff(want.WithDefaults(), got, netipComparers); diff != "" {
				t.Errorf("mesh.json (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(&want, plan.Mesh, netipComparers); diff != "" {
				t.Errorf("plan.Mesh (-want +got):\n%s", diff)
			}
			var vol *corev1.Volume
			for i := range plan.Pod.Spec.Volumes {
				if plan.Pod.Spec.Volumes[i].Name == meshConfigVolume {
					vol = &plan.Pod.Spec.Volumes[i]
				}
			}
			if vol == nil || vol.Secret == nil || vol.Secret.SecretName != secret.Name {
				t.Errorf("the sidecar's config volume %+v does not mount the mesh Secret %s", vol, secret.Name)
			}

			// Local DNS through the mesh, in the pod's local namespace.
			dns := plan.Pod.Spec.DNSConfig
			if plan.Pod.Spec.DNSPolicy != corev1.DNSNone || dns == nil || dns.Nameservers[0] != want.DNS.Nameservers[0].String() ||
				!slices.Equal(dns.Searches, want.DNS.Searches) {
				t.Errorf("dns %s %+v, want None with %v and %v", plan.Pod.Spec.DNSPolicy, dns, want.DNS.Nameservers, want.DNS.Searches)
			}
		})
	}
}

// checkMeshPod asserts what every remote mesh pod must be: the sidecar first, native, gating
// startup, with NET_ADMIN and MKNOD only, never privileged, and nothing secret in the pod.
func checkMeshPod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	spec := pod.Spec
	if len(spec.InitContainers) == 0 || spec.InitContainers[0].Name != MeshAgentContainer {
		t.Fatalf("init containers %v: the mesh-agent is not first", names(spec.InitContainers))
	}
	agent := spec.InitContainers[0]
	if agent.RestartPolicy == nil || *agent.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("mesh-agent restartPolicy %v, want Always (a native sidecar)", agent.RestartPolicy)
	}
	if p := agent.StartupProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.IntValue() != meshAgentPort {
		t.Errorf("mesh-agent startup probe %+v, want GET /readyz on %d", p, meshAgentPort)
	}
	sc := agent.SecurityContext
	switch {
	case sc == nil || sc.Capabilities == nil:
		t.Fatalf("mesh-agent has no securityContext capabilities")
	case sc.Privileged == nil || *sc.Privileged:
		t.Errorf("mesh-agent privileged = %v, want false", sc.Privileged)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("mesh-agent allowPrivilegeEscalation = %v, want false", sc.AllowPrivilegeEscalation)
	}
	if diff := cmp.Diff([]corev1.Capability{"NET_ADMIN", "MKNOD"}, sc.Capabilities.Add); diff != "" {
		t.Errorf("added capabilities (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]corev1.Capability{"ALL"}, sc.Capabilities.Drop); diff != "" {
		t.Errorf("dropped capabilities (-want +got):\n%s", diff)
	}
	mounted := false
	for _, m := range agent.VolumeMounts {
		if m.MountPath == meshConfigDir && m.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("mesh-agent mounts %+v, want %s read-only", agent.VolumeMounts, meshConfigDir)
	}
	for i, c := range append(spec.InitContainers[1:], spec.Containers...) {
		if c.SecurityContext != nil && c.SecurityContext.Capabilities != nil && len(c.SecurityContext.Capabilities.Add) > 0 {
			t.Errorf("container %d (%s) gained capabilities %v", i, c.Name, c.SecurityContext.Capabilities.Add)
		}
	}
	if spec.HostNetwork {
		t.Error("the mesh pod uses the host network")
	}
	for _, k := range []string{AnnotPreExec, AnnotWGSnippet, AnnotMeshSpec} {
		if _, ok := pod.Annotations[k]; ok {
			t.Errorf("annotation %s reached the remote pod", k)
		}
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range meshSecrets(t) {
		if strings.Contains(string(raw), s) {
			t.Errorf("the remote pod contains the secret %.6s…", s)
		}
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func meshSecretOf(t *testing.T, secrets []*corev1.Secret, uid string) *corev1.Secret {
	t.Helper()
	for _, s := range secrets {
		if s.Name == ScopedName("mesh-agent", uid) {
			return s
		}
	}
	t.Fatalf("no mesh Secret %s among %d Secrets", ScopedName("mesh-agent", uid), len(secrets))
	return nil
}

// TestMeshAgentContract ties the sidecar's wiring to the mesh-agent's defaults.
func TestMeshAgentContract(t *testing.T) {
	_, port, err := net.SplitHostPort(meshagent.DefaultListenAddr)
	if err != nil {
		t.Fatal(err)
	}
	if port != strconv.Itoa(meshAgentPort) {
		t.Errorf("probes use port %d, the mesh-agent listens on %s", meshAgentPort, meshagent.DefaultListenAddr)
	}
	if meshRunDir != meshagent.DefaultUAPIDir {
		t.Errorf("the writable volume is at %s, the mesh-agent's UAPI socket in %s", meshRunDir, meshagent.DefaultUAPIDir)
	}
}

func TestTranslateMeshOptions(t *testing.T) {
	vk := map[string]string{AnnotPreExec: meshFile(t, "vk-default.sh"), AnnotWGSnippet: meshFile(t, "vk-default.snippet")}
	with := func(m Mesh) Offloading { o := testOffloading; o.Mesh = m; return o }
	tests := []struct {
		name   string
		o      Offloading
		mutate func(*RetrievedPodData)
		check  func(t *testing.T, plan *Plan)
		field  string
	}{
		{name: "mesh disabled in the plugin", o: with(Mesh{Disabled: true}), check: noMesh},
		{name: "mesh disabled on the pod", mutate: func(r *RetrievedPodData) { r.Pod.Annotations[AnnotMeshNetwork] = "disabled" }, check: noMesh},
		{name: "remote DNS", o: with(Mesh{DNSMode: DNSRemote}), check: func(t *testing.T, plan *Plan) {
			if plan.Pod.Spec.DNSPolicy != "" || plan.Pod.Spec.DNSConfig != nil {
				t.Errorf("dns %s %+v, want the remote cluster's", plan.Pod.Spec.DNSPolicy, plan.Pod.Spec.DNSConfig)
			}
			if len(plan.Mesh.DNS.Nameservers) != 1 || len(plan.Mesh.DNS.Searches) != 3 {
				t.Errorf("mesh.json dns %+v, want the mesh nameserver and search list recorded", plan.Mesh.DNS)
			}
		}},
		{name: "no DNS", o: with(Mesh{DNSMode: DNSNone}), check: func(t *testing.T, plan *Plan) {
			if plan.Pod.Spec.DNSPolicy != "" || len(plan.Mesh.DNS.Nameservers) != 0 {
				t.Errorf("dns %s, mesh.json dns %+v, want neither", plan.Pod.Spec.DNSPolicy, plan.Mesh.DNS)
			}
		}},
		{name: "the author's DNS is kept", mutate: func(r *RetrievedPodData) {
			r.Pod.Spec.DNSPolicy, r.Pod.Spec.DNSConfig = corev1.DNSNone, &corev1.PodDNSConfig{Nameservers: []string{"9.9.9.9"}}
		}, check: func(t *testing.T, plan *Plan) {
			if dns := plan.Pod.Spec.DNSConfig; dns == nil || !slices.Equal(dns.Nameservers, []string{"9.9.9.9"}) {
				t.Errorf("dns %+v, want the author's", dns)
			}
		}},
		{name: "the author's DNS additions are merged", mutate: func(r *RetrievedPodData) {
			r.Pod.Spec.DNSConfig = &corev1.PodDNSConfig{Searches: []string{"corp.example"}, Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: new("2")}}}
		}, check: func(t *testing.T, plan *Plan) {
			dns := plan.Pod.Spec.DNSConfig
			want := &corev1.PodDNSConfig{
				Nameservers: []string{"10.244.0.99"},
				Searches:    []string{"team-a.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"},
				Options:     []corev1.PodDNSConfigOption{{Name: "ndots", Value: new("2")}},
			}
			if diff := cmp.Diff(want, dns); diff != "" {
				t.Errorf("dns (-want +got):\n%s", diff)
			}
		}},
		{name: "another cluster domain", o: with(Mesh{ClusterDomain: "corp.local"}), check: func(t *testing.T, plan *Plan) {
			if got := plan.Pod.Spec.DNSConfig.Searches[0]; got != "team-a.svc.corp.local" {
				t.Errorf("first search domain %q", got)
			}
		}},
		{name: "sidecar options", o: with(Mesh{
			AgentImage: "registry.example/mesh-agent:v1", AgentImagePullPolicy: corev1.PullAlways, StartupTimeout: 90 * time.Second,
			AgentResources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
		}), check: func(t *testing.T, plan *Plan) {
			a := plan.Pod.Spec.InitContainers[0]
			if a.Image != "registry.example/mesh-agent:v1" || a.ImagePullPolicy != corev1.PullAlways || a.StartupProbe.FailureThreshold != 90 ||
				a.Resources.Requests.Cpu().String() != "100m" || a.Resources.Limits != nil || len(a.Env) != 0 {
				t.Errorf("sidecar %s %s probe %d resources %+v", a.Image, a.ImagePullPolicy, a.StartupProbe.FailureThreshold, a.Resources)
			}
		}},
		{name: "the workload's proxy is the tunnel's", mutate: func(r *RetrievedPodData) {
			r.Pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://egress.example:3128"}, {Name: "LANG", Value: "C"}}
			r.Pod.Spec.InitContainers[0].Env = []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://other.example:3128"}, {Name: "no_proxy", Value: ".svc"}}
		}, check: func(t *testing.T, plan *Plan) {
			want := []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://egress.example:3128"}, {Name: "no_proxy", Value: ".svc"}, {Name: "GOMEMLIMIT", Value: "230MiB"}}
			if diff := cmp.Diff(want, plan.Pod.Spec.InitContainers[0].Env); diff != "" {
				t.Errorf("sidecar env (-want +got):\n%s", diff)
			}
		}},
		{name: "route over the remote Service CIDR", o: with(Mesh{RemoteServiceCIDRs: prefixes("10.96.0.0/12")}), field: "mesh.routes[1]"},
		{name: "route over the remote pod CIDR", o: with(Mesh{RemotePodCIDRs: prefixes("10.244.0.0/16")}), field: "mesh.routes[2]"},
		{name: "remote ranges clear of the mesh", o: with(Mesh{RemotePodCIDRs: prefixes("192.168.0.0/16"), RemoteServiceCIDRs: prefixes("172.20.0.0/16")}), check: func(t *testing.T, plan *Plan) {
			checkMeshPod(t, plan.Pod)
		}},
		{name: "tunnel dialled by address", o: with(Mesh{TunnelAddress: netip.MustParseAddrPort("192.0.2.10:8080")}), check: func(t *testing.T, plan *Plan) {
			// The VK's default script dials ws://<ingress host>:80; the host moves to the Host header.
			if got, want := plan.Mesh.Tunnel.URL, "ws://192.0.2.10:8080"; got != want {
				t.Errorf("tunnel url %q, want %q", got, want)
			}
			if got := plan.Mesh.Tunnel.Host; got == "" || strings.Contains(got, ":") || strings.Contains(got, "192.0.2.10") {
				t.Errorf("tunnel host %q, want the ingress host without the default port", got)
			}
		}},
		{name: "tunnel over TLS", o: with(Mesh{TunnelTLS: true}), check: func(t *testing.T, plan *Plan) {
			// The VK's default script dials ws://<ingress host>:80: wss:// on the default port.
			u, err := url.Parse(plan.Mesh.Tunnel.URL)
			if err != nil || u.Scheme != "wss" || u.Port() != "" || u.Hostname() == "" {
				t.Errorf("tunnel url %q, want wss://<ingress host> on the default port", plan.Mesh.Tunnel.URL)
			}
			if h := plan.Mesh.Tunnel.Host; strings.Contains(h, ":") {
				t.Errorf("tunnel host %q names a port", h)
			}
			if plan.Mesh.Tunnel.CAFile != "" || len(plan.Secrets[len(plan.Secrets)-1].Data) != 1 {
				t.Errorf("tunnel CA file %q without option mesh.tunnel_ca", plan.Mesh.Tunnel.CAFile)
			}
		}},
		{name: "tunnel over TLS with a CA, dialled by address", o: with(Mesh{TunnelTLS: true, TunnelCA: []byte("PEM"), TunnelAddress: netip.MustParseAddrPort("192.0.2.10:443")}), check: func(t *testing.T, plan *Plan) {
			tun := plan.Mesh.Tunnel
			if tun.URL != "wss://192.0.2.10:443" || tun.Host == "" || strings.Contains(tun.Host, ":") || tun.CAFile != "/etc/mesh-agent/"+MeshTunnelCAKey {
				t.Errorf("tunnel %+v: want wss:// to the address, the ingress host as Host and TLS name, the CA file in the mesh Secret", tun)
			}
			secret := plan.Secrets[len(plan.Secrets)-1]
			if string(secret.Data[MeshTunnelCAKey]) != "PEM" || secret.Data[MeshSpecKey] == nil {
				t.Errorf("mesh Secret keys %v, want %s and %s", slices.Sorted(maps.Keys(secret.Data)), MeshSpecKey, MeshTunnelCAKey)
			}
		}},
		{name: "tunnel CA unused over ws://", o: with(Mesh{TunnelCA: []byte("PEM")}), check: func(t *testing.T, plan *Plan) {
			if tun := plan.Mesh.Tunnel; tun.CAFile != "" || !strings.HasPrefix(tun.URL, "ws://") {
				t.Errorf("tunnel %+v: want ws:// as the script says, no CA file", tun)
			}
		}},
		{name: "tunnel host resolved by the remote DNS", o: with(Mesh{TunnelNameservers: addrs("10.43.0.10")}), check: func(t *testing.T, plan *Plan) {
			// The pod's resolv.conf names the local DNS alone (through the mesh): the sidecar asks
			// the remote cluster's DNS for the ingress host.
			if got := plan.Mesh.Tunnel.Nameservers; !slices.Equal(got, addrs("10.43.0.10")) || !tunnelHostIsName(plan.Mesh.Tunnel.URL) {
				t.Errorf("tunnel nameservers %v for %s, want [10.43.0.10]", got, plan.Mesh.Tunnel.URL)
			}
		}},
		{name: "tunnel nameservers unused with the remote DNS", o: with(Mesh{DNSMode: DNSRemote, TunnelNameservers: addrs("10.43.0.10")}), check: func(t *testing.T, plan *Plan) {
			if got := plan.Mesh.Tunnel.Nameservers; got != nil {
				t.Errorf("tunnel nameservers %v, want none: the pod's resolv.conf is the remote DNS", got)
			}
		}},
		{name: "tunnel nameservers unused with a tunnel address", o: with(Mesh{TunnelAddress: netip.MustParseAddrPort("192.0.2.10:80"), TunnelNameservers: addrs("10.43.0.10")}), check: func(t *testing.T, plan *Plan) {
			if got := plan.Mesh.Tunnel.Nameservers; got != nil {
				t.Errorf("tunnel nameservers %v, want none: nothing to resolve", got)
			}
		}},
		{name: "DNS mode by annotation", o: with(Mesh{TunnelNameservers: addrs("10.43.0.10")}), mutate: func(r *RetrievedPodData) { r.Pod.Annotations[AnnotMeshDNS] = "remote" }, check: func(t *testing.T, plan *Plan) {
			if plan.Pod.Spec.DNSPolicy != "" || plan.Pod.Spec.DNSConfig != nil || plan.Mesh.Tunnel.Nameservers != nil {
				t.Errorf("dns %s %+v, tunnel nameservers %v: want the remote cluster's DNS", plan.Pod.Spec.DNSPolicy, plan.Pod.Spec.DNSConfig, plan.Mesh.Tunnel.Nameservers)
			}
		}},
		{name: "DNS mode none by annotation", mutate: func(r *RetrievedPodData) { r.Pod.Annotations[AnnotMeshDNS] = " none " }, check: func(t *testing.T, plan *Plan) {
			if plan.Pod.Spec.DNSPolicy != "" || len(plan.Mesh.DNS.Nameservers) != 0 {
				t.Errorf("dns %s, mesh.json dns %+v, want neither", plan.Pod.Spec.DNSPolicy, plan.Mesh.DNS)
			}
		}},
		{name: "unknown DNS mode annotation", mutate: func(r *RetrievedPodData) { r.Pod.Annotations[AnnotMeshDNS] = "cluster" }, field: "metadata.annotations[" + AnnotMeshDNS + "]"},
		{name: "host network", mutate: func(r *RetrievedPodData) { r.Pod.Spec.HostNetwork = true }, field: "pod.spec.hostNetwork"},
		{name: "a container named like the sidecar", mutate: func(r *RetrievedPodData) { r.Pod.Spec.Containers[0].Name = MeshAgentContainer }, field: "pod.spec.containers[0].name"},
		{name: "a Secret named like the mesh Secret", mutate: func(r *RetrievedPodData) {
			r.Pod.Spec.Volumes = append(r.Pod.Spec.Volumes, corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "mesh-agent"}}})
			r.Containers = []RetrievedContainer{{Name: "web", Secrets: []corev1.Secret{{ObjectMeta: metav1.ObjectMeta{Name: "mesh-agent"}}}}}
		}, field: "container[].secrets"},
		{name: "contradictory annotations", mutate: func(r *RetrievedPodData) { r.Pod.Annotations[AnnotWGSnippet] = meshFile(t, "seed-custom.snippet") }, field: "mesh.privateKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ann := map[string]string{}
			for k, v := range vk {
				ann[k] = v
			}
			req := meshPod(meshTestUID, "web-0", "team-a", ann)
			if tt.mutate != nil {
				tt.mutate(&req)
			}
			o := tt.o
			if o.NamespacePrefix == "" {
				o = testOffloading
			}
			plan, err := Translate(&req, o)
			if tt.field != "" {
				var verr *ValidationError
				if !errors.As(err, &verr) || verr.Field != tt.field {
					t.Fatalf("got %v, want a refusal on %s", err, tt.field)
				}
				if HTTPStatus(err) != 422 {
					t.Errorf("refusal maps to %d, want 422", HTTPStatus(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, plan)
		})
	}
}

// noMesh checks a pod offloaded without the mesh: no sidecar, no mesh Secret, no key anywhere.
func noMesh(t *testing.T, plan *Plan) {
	t.Helper()
	if plan.Mesh != nil || len(plan.Pod.Spec.InitContainers) != 1 || len(plan.Secrets) != 0 {
		t.Errorf("mesh %v, init containers %v, %d Secrets: want the pod untouched", plan.Mesh, names(plan.Pod.Spec.InitContainers), len(plan.Secrets))
	}
	raw, _ := json.Marshal(plan)
	for _, s := range meshSecrets(t) {
		if strings.Contains(string(raw), s) {
			t.Errorf("the plan contains the secret %.6s…", s)
		}
	}
}

// TestTranslateMeshNetstack: a pod annotated for netstack mode gets the unprivileged sidecar,
// its spec says netstack, its resolver is the sidecar's DNS forwarder and its containers' HTTP
// clients use the sidecar's proxy, unless they set their own; an unknown mode is refused.
func TestTranslateMeshNetstack(t *testing.T) {
	v := meshVariants(t)[0]
	ann := map[string]string{AnnotMeshMode: "netstack"}
	for k, val := range v.annotations {
		ann[k] = val
	}
	req := meshPod(meshTestUID, "web-0", "team-a", ann)
	req.Pod.Spec.Containers = append(req.Pod.Spec.Containers, corev1.Container{Name: "own-proxy", Image: "x",
		Env: []corev1.EnvVar{{Name: "https_proxy", Value: "http://corp:3128"}}})
	plan, err := Translate(&req, testOffloading)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Mesh == nil || plan.Mesh.Mode != meshspec.ModeNetstack {
		t.Fatalf("mesh spec %+v, want mode netstack", plan.Mesh)
	}
	pod := plan.Pod.Spec
	sc := pod.InitContainers[0].SecurityContext
	want := &corev1.SecurityContext{
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, Privileged: new(false),
		AllowPrivilegeEscalation: new(false), ReadOnlyRootFilesystem: new(true), RunAsUser: new(int64(65532)),
		RunAsGroup: new(int64(65532)), RunAsNonRoot: new(true),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if diff := cmp.Diff(want, sc); diff != "" {
		t.Errorf("sidecar security (-want +got):\n%s", diff)
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Name == meshConfigVolume && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o004 == 0) {
			t.Errorf("mesh Secret volume %+v: the nonroot sidecar cannot read root's 0400 files", v.Secret)
		}
	}
	for _, c := range append(pod.InitContainers[1:], pod.Containers...) {
		for _, m := range c.VolumeMounts {
			if m.Name == meshConfigVolume {
				t.Errorf("container %s mounts the mesh Secret", c.Name)
			}
		}
	}
	if pod.DNSConfig == nil || !cmp.Equal(pod.DNSConfig.Nameservers, []string{"127.0.0.1"}) || pod.DNSPolicy != corev1.DNSNone {
		t.Errorf("dns %v %+v, want the sidecar's forwarder only", pod.DNSPolicy, pod.DNSConfig)
	}
	env := func(c corev1.Container) map[string]string {
		m := map[string]string{}
		for _, e := range c.Env {
			m[e.Name] = e.Value
		}
		return m
	}
	for _, c := range append(pod.InitContainers[1:], pod.Containers[0]) {
		if e := env(c); e["HTTP_PROXY"] != "http://127.0.0.1:3128" || e["https_proxy"] != "http://127.0.0.1:3128" || e["NO_PROXY"] == "" {
			t.Errorf("container %s env %v, want the sidecar's proxy", c.Name, e)
		}
	}
	if e := env(pod.Containers[1]); len(e) != 1 || e["https_proxy"] != "http://corp:3128" {
		t.Errorf("a container with its own proxy got %v", e)
	}
	if e := env(pod.InitContainers[0]); e["HTTP_PROXY"] != "" {
		t.Error("the sidecar itself was given the proxy")
	}

	ann[AnnotMeshMode] = "userspace"
	req = meshPod(meshTestUID, "web-0", "team-a", ann)
	_, err = Translate(&req, testOffloading)
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ve.Field, AnnotMeshMode) {
		t.Errorf("unknown mode: %v, want a ValidationError on the annotation", err)
	}
}

func TestParseForwards(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []meshspec.Forward
		err      string
	}{
		{"tcp and udp", " 5432=db.team-a:5432, udp/8125=10.96.0.20:8125,TCP/6379=redis:6379", []meshspec.Forward{
			{Listen: netip.MustParseAddrPort("127.0.0.1:5432"), To: "db.team-a:5432"},
			{Protocol: "udp", Listen: netip.MustParseAddrPort("127.0.0.1:8125"), To: "10.96.0.20:8125"},
			{Listen: netip.MustParseAddrPort("127.0.0.1:6379"), To: "redis:6379"},
		}, ""},
		{"no equals", "5432", nil, "want [tcp/|udp/]"},
		{"bad port", "x=db:5432", nil, "not a port"},
		{"port 0", "0=db:5432", nil, "not a port"},
		{"no target port", "5432=db", nil, "host:port"},
		{"sctp", "sctp/5432=db:5432", nil, "tcp or udp"},
		{"twice", "5432=db:5432,5432=db2:5432", nil, "twice"},
		{"empty", " , ", nil, "no forward"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseForwards(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, netipComparers); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseForwards(f *testing.F) {
	for _, s := range []string{"5432=db:5432", "udp/8125=10.96.0.20:8125, 6379=redis:6379", "=", "udp/=:", "5432=db"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fw, err := parseForwards(s)
		if err != nil {
			return
		}
		if err := (meshspec.Spec{Forwards: fw}).Validate(); err != nil && strings.Contains(err.Error(), "forwards") {
			t.Fatalf("parseForwards(%q) accepted forwards that do not validate: %v", s, err)
		}
	})
}

// TestTranslateMeshForwards: the annotation's forwards reach mesh.json in netstack mode; a
// kernel-mode pod asking for them is refused, naming the mode.
func TestTranslateMeshForwards(t *testing.T) {
	v := meshVariants(t)[0]
	ann := map[string]string{AnnotMeshMode: "netstack", AnnotMeshForwards: "5432=db:5432"}
	for k, val := range v.annotations {
		ann[k] = val
	}
	req := meshPod(meshTestUID, "web-0", "team-a", ann)
	plan, err := Translate(&req, testOffloading)
	if err != nil {
		t.Fatal(err)
	}
	want := []meshspec.Forward{{Listen: netip.MustParseAddrPort("127.0.0.1:5432"), To: "db:5432"}}
	if diff := cmp.Diff(want, plan.Mesh.Forwards, netipComparers); diff != "" {
		t.Errorf("forwards (-want +got):\n%s", diff)
	}
	ann[AnnotMeshMode] = "kernel"
	req = meshPod(meshTestUID, "web-0", "team-a", ann)
	_, err = Translate(&req, testOffloading)
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ve.Reason, "netstack") {
		t.Errorf("forwards in kernel mode: %v, want refused naming netstack mode", err)
	}
}

// TestTranslateMeshInbound: an inbound pod's sidecar serves the tunnel on the inbound port, its
// mesh.json keeps none of the dialing settings, and the plan publishes it by a Service (before
// the pod is ready: the pod waits for its first handshake) and an Ingress at the host the VK
// named. The options shape the Ingress; the pod's annotation overrides the direction either way.
func TestTranslateMeshInbound(t *testing.T) {
	v := meshVariants(t)[0]
	ann := maps.Clone(v.annotations)
	ann[AnnotMeshDirection] = "inbound"
	req := meshPod(meshTestUID, "web-0", "team-a", ann)
	o := testOffloading
	o.Mesh = Mesh{TunnelTLS: true, TunnelAddress: netip.MustParseAddrPort("192.0.2.10:443"), TunnelCA: []byte("ca"), TunnelNameservers: addrs("10.0.0.10")}
	plan, err := Translate(&req, o)
	if err != nil {
		t.Fatal(err)
	}
	got, err := yaml.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "mesh-inbound.golden", got)

	wantTunnel := meshspec.Tunnel{Listen: ":28080", PathPrefix: v.want.Tunnel.PathPrefix, Destination: meshspec.DefaultDestination}
	if diff := cmp.Diff(wantTunnel, plan.Mesh.Tunnel, netipComparers); diff != "" {
		t.Errorf("mesh.json tunnel (-want +got):\n%s", diff)
	}
	if len(plan.Services) != 1 || len(plan.Ingresses) != 1 {
		t.Fatalf("%d services, %d ingresses, want one of each", len(plan.Services), len(plan.Ingresses))
	}
	svc, ing := plan.Services[0], plan.Ingresses[0]
	if len(svc.Spec.Selector) != 0 || svc.Spec.Ports[0].Port != 28080 || svc.Spec.Ports[0].TargetPort.IntVal != 28080 {
		t.Errorf("service %+v: want no selector (the plugin writes the endpoint) and the tunnel port", svc.Spec)
	}
	if h := ing.Spec.Rules[0].Host; h != "web-0-team-a-team-a-wstunnel.mesh.example.org" {
		t.Errorf("ingress host %q, want the VK's tunnel host", h)
	}
	if b := ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service; b.Name != svc.Name || b.Port.Name != inboundPortName {
		t.Errorf("ingress backend %+v, want the service's tunnel port", b)
	}
	if ing.Spec.IngressClassName != nil || ing.Spec.TLS != nil {
		t.Errorf("ingress class %v, tls %v, want neither by default", ing.Spec.IngressClassName, ing.Spec.TLS)
	}
	agent := plan.Pod.Spec.InitContainers[0]
	if !slices.ContainsFunc(agent.Ports, func(p corev1.ContainerPort) bool { return p.Name == inboundPortName && p.ContainerPort == 28080 }) {
		t.Errorf("sidecar ports %+v lack the tunnel's", agent.Ports)
	}
	if !isInbound(plan.Pod) {
		t.Error("isInbound does not recognise the pod")
	}
	for _, s := range plan.Secrets {
		if _, ok := s.Data[MeshTunnelCAKey]; ok {
			t.Error("the inbound pod's Secret carries the tunnel CA, which only a dialing sidecar uses")
		}
	}

	// Options shape the Ingress.
	o.Mesh = Mesh{Direction: DirectionInbound, InboundPort: 30000, InboundIngressClass: "traefik", InboundTLS: true,
		InboundIngressAnnotations: map[string]string{"cert-manager.io/cluster-issuer": "remote"}}
	delete(ann, AnnotMeshDirection)
	req = meshPod(meshTestUID, "web-0", "team-a", ann)
	if plan, err = Translate(&req, o); err != nil {
		t.Fatal(err)
	}
	ing = plan.Ingresses[0]
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "traefik" || ing.Annotations["cert-manager.io/cluster-issuer"] != "remote" ||
		len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].Hosts[0] != ing.Spec.Rules[0].Host || ing.Spec.TLS[0].SecretName != ing.Name+"-tls" {
		t.Errorf("ingress with options: %+v %v", ing.Spec, ing.Annotations)
	}
	if plan.Mesh.Tunnel.Listen != ":30000" || plan.Services[0].Spec.Ports[0].Port != 30000 {
		t.Errorf("inbound port: listen %q, service %d", plan.Mesh.Tunnel.Listen, plan.Services[0].Spec.Ports[0].Port)
	}

	// The annotation turns an inbound plugin's pod outbound, and refuses anything else.
	ann[AnnotMeshDirection] = " outbound"
	req = meshPod(meshTestUID, "web-0", "team-a", ann)
	if plan, err = Translate(&req, o); err != nil || len(plan.Services)+len(plan.Ingresses) != 0 || plan.Mesh.Tunnel.URL == "" || isInbound(plan.Pod) {
		t.Errorf("outbound by annotation: %v, services %d, ingresses %d, tunnel %+v", err, len(plan.Services), len(plan.Ingresses), plan.Mesh.Tunnel)
	}
	ann[AnnotMeshDirection] = "both"
	req = meshPod(meshTestUID, "web-0", "team-a", ann)
	var ve *ValidationError
	if _, err = Translate(&req, o); !errors.As(err, &ve) || !strings.Contains(ve.Field, AnnotMeshDirection) {
		t.Errorf("unknown direction: %v, want a ValidationError on the annotation", err)
	}

	// A workload port that is the tunnel's is refused.
	ann[AnnotMeshDirection] = "inbound"
	req = meshPod(meshTestUID, "web-0", "team-a", ann)
	req.Pod.Spec.Containers[0].Ports = append(req.Pod.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 30000})
	if _, err = Translate(&req, o); !errors.As(err, &ve) || !strings.Contains(ve.Reason, "inbound mesh tunnel") {
		t.Errorf("workload on the tunnel port: %v, want a ValidationError", err)
	}
}
