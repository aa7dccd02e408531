package plugin

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/logtest"
)

// TestDiscoverTunnelNameservers: option mesh.tunnel_nameservers auto takes the remote kube-dns
// Service's addresses; without one it says, as a warning where it matters, what to set. (A fake
// clientset: the call is one Get; the real-pod tests resolve a tunnel host this way.)
func TestDiscoverTunnelNameservers(t *testing.T) {
	dnsSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.43.0.10", ClusterIPs: []string{"10.43.0.10", "fd00:43::a"}},
	}
	logs, log := logtest.New(t)
	got := discoverTunnelNameservers(fake.NewClientset(dnsSvc), Mesh{DNSMode: DNSLocal}, log)
	if want := []netip.Addr{netip.MustParseAddr("10.43.0.10"), netip.MustParseAddr("fd00:43::a")}; !slices.Equal(got, want) {
		t.Errorf("nameservers %v, want %v", got, want)
	}
	if logs.Count("level=INFO", "remote cluster's DNS", "10.43.0.10") != 1 {
		t.Errorf("log does not name the nameservers found:\n%s", logs)
	}

	headless := dnsSvc.DeepCopy()
	headless.Spec.ClusterIP, headless.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	for _, tc := range []struct {
		name  string
		objs  []*corev1.Service
		mesh  Mesh
		level string
	}{
		{"no Service, DNS local", nil, Mesh{DNSMode: DNSLocal}, "level=WARN"},
		{"headless Service, DNS local", []*corev1.Service{headless}, Mesh{DNSMode: DNSLocal}, "level=WARN"},
		{"no Service, DNS remote", nil, Mesh{DNSMode: DNSRemote}, "level=INFO"},
		{"no Service, tunnel address", nil, Mesh{DNSMode: DNSLocal, TunnelAddress: netip.MustParseAddrPort("192.0.2.1:80")}, "level=INFO"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs, log := logtest.New(t)
			cs := fake.NewClientset()
			for _, o := range tc.objs {
				if _, err := cs.CoreV1().Services(o.Namespace).Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if got := discoverTunnelNameservers(cs, tc.mesh, log); got != nil {
				t.Errorf("nameservers %v, want none", got)
			}
			if logs.Count(tc.level, "mesh.tunnel_nameservers") != 1 || !strings.Contains(logs.String(), "kube-system/kube-dns") {
				t.Errorf("want one %s line naming the option and the Service:\n%s", tc.level, logs)
			}
		})
	}
}
