package plugin

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
)

// RESTConfig builds the remote cluster's client configuration: from k8s.kubeconfig_path, from the
// inline k8s.kubeconfig, or from the pod's service account when neither is set.
func (c FileConfig) RESTConfig() (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	switch {
	case c.K8s.KubeconfigPath != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", c.K8s.KubeconfigPath)
	case c.K8s.Kubeconfig != "":
		cfg, err = clientcmd.RESTConfigFromKubeConfig([]byte(c.K8s.Kubeconfig))
	default:
		cfg, err = rest.InClusterConfig()
		if err != nil {
			err = fmt.Errorf("%w (set k8s.kubeconfig_path or K8S_KUBECONFIG_PATH outside a cluster)", err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("remote cluster config: %w", err)
	}
	applyClientTLS(cfg, c.K8s.ClientConfiguration)
	cfg.QPS = c.K8s.ClientConfiguration.QPS
	cfg.Burst = c.K8s.ClientConfiguration.Burst
	cfg.UserAgent = "interlink-k8s-plugin"
	preferProtobuf(cfg)
	return cfg, nil
}

// preferProtobuf makes a typed client speak protobuf, as Kubernetes' own controllers do: the plugin
// handles only built-in kinds, and protobuf costs both ends less CPU than JSON (the watch of every
// offloaded pod, the creates of their objects). Patches keep their JSON types.
func preferProtobuf(cfg *rest.Config) {
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
}

// NewFromFile builds a Plugin from its configuration file's options.
func NewFromFile(c FileConfig, log *slog.Logger) (*Plugin, error) {
	rc, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("remote client: %w", err)
	}
	cfg := Config{
		Client: client,
		Offloading: Offloading{
			NamespacePrefix:           c.Offloading.Prefix(),
			NamespacePrefixExclusions: c.Offloading.NamespacePrefixExclusions,
			NodeSelector:              c.Offloading.NodeSelector,
			NodeTolerations:           c.Offloading.NodeTolerations,
			Mesh:                      c.MeshConfig(),
		},
		SweepInterval:     c.Offloading.OrphanSweepInterval.Duration,
		ShadowLeftovers:   c.Offloading.ShadowLeftovers,
		MeshEvents:        c.Offloading.MeshEvents == nil || *c.Offloading.MeshEvents,
		EmptyNamespaceTTL: c.Offloading.EmptyNamespaceTTL.Duration,
		RemoteTimeout:     c.K8s.ClientConfiguration.Timeout.Duration,
		MaxBodyBytes:      c.App.MaxBodyBytes,
		DocsPath:          c.App.APIDocsPath,
		Pprof:             c.App.Pprof,
		Logger:            log,
	}
	if c.Mesh.TunnelNameservers == TunnelNameserversAuto {
		cfg.Offloading.Mesh.TunnelNameservers = discoverTunnelNameservers(client, cfg.Offloading.Mesh, log)
	}
	if c.Offloading.LocalKubeconfigPath != "" || c.Offloading.LocalInCluster {
		var lc *rest.Config
		var err error
		if c.Offloading.LocalInCluster {
			if lc, err = rest.InClusterConfig(); err != nil {
				return nil, fmt.Errorf("option offloading.local_in_cluster: %w", err)
			}
		} else if lc, err = clientcmd.BuildConfigFromFlags("", c.Offloading.LocalKubeconfigPath); err != nil {
			return nil, fmt.Errorf("option offloading.local_kubeconfig_path: %w", err)
		}
		if cfg.LocalMetadata, err = metadata.NewForConfig(lc); err != nil {
			return nil, fmt.Errorf("local metadata client: %w", err)
		}
		preferProtobuf(lc)
		if cfg.LocalClient, err = kubernetes.NewForConfig(lc); err != nil {
			return nil, fmt.Errorf("local client: %w", err)
		}
	}
	return New(cfg)
}

// applyClientTLS lays the Python client's TLS options over the kubeconfig's: each one set replaces
// what the kubeconfig says (client-go refuses a CA together with an insecure connection, so
// verify_ssl false drops the CA).
func applyClientTLS(cfg *rest.Config, o ClientOptions) {
	tls := &cfg.TLSClientConfig
	if o.SSLCACert != "" {
		tls.CAFile, tls.CAData = o.SSLCACert, nil
	}
	if o.CertFile != "" {
		tls.CertFile, tls.CertData = o.CertFile, nil
		tls.KeyFile, tls.KeyData = o.KeyFile, nil
	}
	if o.VerifySSL != nil {
		tls.Insecure = !*o.VerifySSL
		if tls.Insecure {
			tls.CAFile, tls.CAData = "", nil
		}
	}
}

// clusterDNSService is where clusters publish their DNS, whatever its implementation (CoreDNS keeps
// kube-dns's name for compatibility).
const clusterDNSNamespace, clusterDNSService = "kube-system", "kube-dns"

// discoverTunnelNameservers looks up the remote cluster's DNS (the kube-dns Service's addresses),
// for option mesh.tunnel_nameservers auto. Not finding it is no error: the sidecars then resolve the
// tunnel's host through the pod's resolv.conf, which a dns_mode local pod cannot do before the mesh
// is up, so the log says what to set when that matters.
func discoverTunnelNameservers(client kubernetes.Interface, m Mesh, log *slog.Logger) []netip.Addr {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := client.CoreV1().Services(clusterDNSNamespace).Get(ctx, clusterDNSService, metav1.GetOptions{})
	var ns []netip.Addr
	if err == nil {
		ips := svc.Spec.ClusterIPs // ClusterIP is its first; older objects may have only ClusterIP
		if len(ips) == 0 {
			ips = []string{svc.Spec.ClusterIP}
		}
		for _, ip := range ips[:min(len(ips), meshspec.MaxNameservers)] {
			if a, perr := netip.ParseAddr(ip); perr == nil { // "None": a headless Service
				ns = append(ns, a)
			}
		}
	}
	if len(ns) > 0 {
		log.Info("mesh sidecars resolve the tunnel's host with the remote cluster's DNS", "service", clusterDNSNamespace+"/"+clusterDNSService, "nameservers", ns)
		return ns
	}
	why := "it has no cluster IP"
	if err != nil {
		why = err.Error()
	}
	level := slog.LevelInfo
	if m.DNSMode == DNSLocal && !m.TunnelAddress.IsValid() {
		level = slog.LevelWarn // the default DNS mode, where it matters
	}
	log.Log(ctx, level, "the remote cluster's DNS Service was not found ("+why+"): sidecars of dns_mode local pods resolve the tunnel's host through the local DNS, reachable only through the mesh, so a tunnel host name cannot resolve; set mesh.tunnel_nameservers to the remote cluster's DNS, or mesh.tunnel_address",
		"service", clusterDNSNamespace+"/"+clusterDNSService)
	return nil
}
