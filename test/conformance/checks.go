package conformance

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/plugin"
)

func (r *Run) remotePod() *corev1.Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.remote
}

// appContainers are the remote pod's init containers without the injected sidecar.
func appInits(p *corev1.Pod) []corev1.Container {
	var out []corev1.Container
	for _, c := range p.Spec.InitContainers {
		if c.Name != plugin.MeshAgentContainer {
			out = append(out, c)
		}
	}
	return out
}

// translation compares every local container with its remote twin: image, command, args, env
// (valueFrom resolved as the VK does), ports, probes, lifecycle hooks, resources.
func (r *Run) translation(ctx context.Context) error {
	remote := r.remotePod()
	local, err := r.localPod(ctx)
	if err != nil {
		return err
	}
	var problems []string
	check := func(kind string, want, got []corev1.Container) {
		var wn, gn []string
		for _, c := range want {
			wn = append(wn, c.Name)
		}
		for _, c := range got {
			gn = append(gn, c.Name)
		}
		if !slices.Equal(wn, gn) {
			problems = append(problems, fmt.Sprintf("%s: remote %v, want %v in that order", kind, gn, wn))
			return
		}
		for i, w := range want {
			g := got[i]
			if w.Image != g.Image {
				problems = append(problems, fmt.Sprintf("%s image %q, want %q", w.Name, g.Image, w.Image))
			}
			if !slices.Equal(w.Command, g.Command) || !slices.Equal(w.Args, g.Args) {
				problems = append(problems, fmt.Sprintf("%s command/args %q %q, want %q %q", w.Name, g.Command, g.Args, w.Command, w.Args))
			}
			for _, pair := range []struct {
				what      string
				want, got any
			}{
				{"ports", w.Ports, g.Ports},
				{"startupProbe", w.StartupProbe, g.StartupProbe},
				{"readinessProbe", w.ReadinessProbe, g.ReadinessProbe},
				{"livenessProbe", w.LivenessProbe, g.LivenessProbe},
				{"lifecycle", w.Lifecycle, g.Lifecycle},
				{"resources.limits", w.Resources.Limits, g.Resources.Limits},
				{"resources.requests", w.Resources.Requests, g.Resources.Requests},
			} {
				if !apiequality.Semantic.DeepEqual(pair.want, pair.got) {
					problems = append(problems, fmt.Sprintf("%s %s differs (-local +remote): %s", w.Name, pair.what, cmp.Diff(pair.want, pair.got)))
				}
			}
			env, err := r.remoteEnv(ctx, remote.Namespace, g)
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			want := map[string]string{}
			for _, e := range w.Env {
				if e.ValueFrom == nil {
					want[e.Name] = e.Value
				}
			}
			maps.Copy(want, r.Case.Env[w.Name])
			for _, k := range sortedKeys(want) {
				if v, ok := env[k]; !ok || v != want[k] {
					problems = append(problems, fmt.Sprintf("%s env %s = %q (set %v), want %q", w.Name, k, v, ok, want[k]))
				}
			}
		}
	}
	check("containers", local.Spec.Containers, remote.Spec.Containers)
	check("init containers", local.Spec.InitContainers, appInits(remote))
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// remoteEnv resolves a remote container's environment as the container would see it.
func (r *Run) remoteEnv(ctx context.Context, ns string, c corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	core := r.Env.Remote.CoreV1()
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			cm, err := core.ConfigMaps(ns).Get(ctx, e.ValueFrom.ConfigMapKeyRef.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("%s env %s: remote ConfigMap: %w", c.Name, e.Name, err)
			}
			env[e.Name] = cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
		case e.ValueFrom.SecretKeyRef != nil:
			s, err := core.Secrets(ns).Get(ctx, e.ValueFrom.SecretKeyRef.Name, metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("%s env %s: remote Secret: %w", c.Name, e.Name, err)
			}
			env[e.Name] = string(s.Data[e.ValueFrom.SecretKeyRef.Key])
		}
	}
	return env, nil
}

// volumes checks that every local volume exists remotely with the same files: ConfigMap and Secret
// contents copied, projected sources carried (whatever shape the plugin gives them), emptyDir kept.
func (r *Run) volumes(ctx context.Context) error {
	remote := r.remotePod()
	local, err := r.localPod(ctx)
	if err != nil {
		return err
	}
	remoteVols := map[string]corev1.Volume{}
	for _, v := range remote.Spec.Volumes {
		remoteVols[v.Name] = v
	}
	var problems []string
	for _, lv := range local.Spec.Volumes {
		rv, ok := remoteVols[lv.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("volume %s missing remotely", lv.Name))
			continue
		}
		if lv.EmptyDir != nil {
			if rv.EmptyDir == nil {
				problems = append(problems, fmt.Sprintf("volume %s is no longer an emptyDir", lv.Name))
			}
			continue
		}
		want, err := r.files(ctx, r.Env.Local, local.Namespace, local, lv)
		if err != nil {
			problems = append(problems, "local "+err.Error())
			continue
		}
		got, err := r.files(ctx, r.Env.Remote, remote.Namespace, remote, rv)
		if err != nil {
			problems = append(problems, "remote "+err.Error())
			continue
		}
		for _, k := range sortedKeys(want) {
			g, ok := got[k]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("volume %s: file %s missing remotely (remote files %v)", lv.Name, k, sortedKeys(got)))
			case want[k] != "" && g != want[k]:
				problems = append(problems, fmt.Sprintf("volume %s: file %s = %q remotely, want %q", lv.Name, k, g, want[k]))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// files lists the files a volume shows its pod, with their contents where a ConfigMap or Secret
// holds them ("" for files computed at run time: downward API, service-account tokens).
func (r *Run) files(ctx context.Context, c kubernetes.Interface, ns string, p *corev1.Pod, v corev1.Volume) (map[string]string, error) {
	core := c.CoreV1()
	out := map[string]string{}
	addCM := func(name string, items []corev1.KeyToPath) error {
		cm, err := core.ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read ConfigMap %s/%s of volume %s: %w", ns, name, v.Name, err)
		}
		data := map[string]string{}
		maps.Copy(data, cm.Data)
		for k, b := range cm.BinaryData {
			data[k] = string(b)
		}
		project(out, data, items)
		return nil
	}
	addSecret := func(name string, items []corev1.KeyToPath) error {
		s, err := core.Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read Secret %s/%s of volume %s: %w", ns, name, v.Name, err)
		}
		data := map[string]string{}
		for k, b := range s.Data {
			data[k] = string(b)
		}
		project(out, data, items)
		return nil
	}
	switch {
	case v.ConfigMap != nil:
		return out, addCM(v.ConfigMap.Name, v.ConfigMap.Items)
	case v.Secret != nil:
		return out, addSecret(v.Secret.SecretName, v.Secret.Items)
	case v.DownwardAPI != nil:
		for _, it := range v.DownwardAPI.Items {
			out[it.Path] = ""
		}
	case v.Projected != nil:
		for _, s := range v.Projected.Sources {
			var err error
			switch {
			case s.ConfigMap != nil:
				err = addCM(s.ConfigMap.Name, s.ConfigMap.Items)
			case s.Secret != nil:
				err = addSecret(s.Secret.Name, s.Secret.Items)
			case s.DownwardAPI != nil:
				for _, it := range s.DownwardAPI.Items {
					out[it.Path] = ""
				}
			case s.ServiceAccountToken != nil:
				out[s.ServiceAccountToken.Path] = ""
			case s.ClusterTrustBundle != nil:
				out[s.ClusterTrustBundle.Path] = ""
			}
			if err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("volume %s: kind not compared by this suite", v.Name)
	}
	return out, nil
}

func project(out, data map[string]string, items []corev1.KeyToPath) {
	if len(items) == 0 {
		maps.Copy(out, data)
		return
	}
	for _, it := range items {
		out[it.Path] = data[it.Key]
	}
}

// shadowPod is the pod of the shadow Deployment the VK made for the case's pod.
func (r *Run) shadowPod(ctx context.Context) (*corev1.Pod, error) {
	var shadow *corev1.Pod
	err := r.poll(ctx, "shadow pod in "+r.shadowNS, waitShort, func(ctx context.Context) (bool, string, error) {
		l, err := r.Env.Local.CoreV1().Pods(r.shadowNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if len(l.Items) != 1 || l.Items[0].Status.PodIP == "" {
			return false, fmt.Sprintf("%d pods", len(l.Items)), nil
		}
		shadow = &l.Items[0]
		return true, "", nil
	})
	return shadow, err
}

// shadowName is the name of the shadow Deployment (and of its Service and Ingress).
func (r *Run) shadowName(ctx context.Context) (string, error) {
	var name string
	err := r.poll(ctx, "one shadow Deployment in "+r.shadowNS, waitShort, func(ctx context.Context) (bool, string, error) {
		l, err := r.Env.Local.AppsV1().Deployments(r.shadowNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if len(l.Items) != 1 {
			return false, fmt.Sprintf("%d Deployments", len(l.Items)), nil
		}
		name = l.Items[0].Name
		return true, "", nil
	})
	return name, err
}

// shadow checks the objects the VK rendered from manifests/shadow-pod.tmpl.
func (r *Run) shadow(ctx context.Context) error {
	name, err := r.shadowName(ctx)
	if err != nil {
		return err
	}
	core := r.Env.Local.CoreV1()
	var problems []string
	if _, err := core.Services(r.shadowNS).Get(ctx, name, metav1.GetOptions{}); err != nil {
		problems = append(problems, "Service: "+err.Error())
	}
	if _, err := r.Env.Local.NetworkingV1().Ingresses(r.shadowNS).Get(ctx, name, metav1.GetOptions{}); err != nil {
		problems = append(problems, "Ingress: "+err.Error())
	}
	s, err := core.Secrets(r.shadowNS).Get(ctx, name+"-mesh", metav1.GetOptions{})
	switch {
	case err != nil:
		problems = append(problems, "key Secret "+name+"-mesh: "+err.Error()+" (the shadow pod's volume would never mount)")
	case len(s.Data["privatekey"]) == 0 || len(s.Data["prefix"]) == 0:
		problems = append(problems, fmt.Sprintf("key Secret %s-mesh lacks privatekey or prefix (keys %v)", name, sortedKeys(s.Data)))
	}
	if len(problems) > 0 {
		return fmt.Errorf("in %s: %s", r.shadowNS, strings.Join(problems, "; "))
	}
	return nil
}

// noShadow checks that an opted-out pod got no shadow objects.
func (r *Run) noShadow(ctx context.Context) error {
	l, err := r.Env.Local.AppsV1().Deployments(r.shadowNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if len(l.Items) > 0 {
		return fmt.Errorf("%d shadow Deployments in %s", len(l.Items), r.shadowNS)
	}
	return nil
}

// meshSecret returns the remote pod's mesh.json, parsed, and the Secret's name.
func (r *Run) meshSpec(ctx context.Context) (meshspec.Spec, error) {
	remote := r.remotePod()
	var secretName string
	for _, v := range remote.Spec.Volumes {
		if v.Secret != nil && strings.Contains(v.Secret.SecretName, plugin.MeshAgentContainer) {
			secretName = v.Secret.SecretName
		}
	}
	if secretName == "" {
		return meshspec.Spec{}, fmt.Errorf("remote pod %s/%s mounts no mesh Secret", remote.Namespace, remote.Name)
	}
	s, err := r.Env.Remote.CoreV1().Secrets(remote.Namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		return meshspec.Spec{}, fmt.Errorf("mesh Secret: %w", err)
	}
	spec, err := meshspec.Parse(s.Data[plugin.MeshSpecKey])
	if err != nil {
		return meshspec.Spec{}, fmt.Errorf("mesh Secret %s key %s: %w", secretName, plugin.MeshSpecKey, err)
	}
	return spec, nil
}

// sidecar checks the injected mesh-agent: a native sidecar first among the init containers, its
// mesh.json in a Secret agreeing with the VK's configuration and shadow Ingress, no key left in
// the pod's annotations.
func (r *Run) sidecar(ctx context.Context) error {
	remote := r.remotePod()
	if len(remote.Spec.InitContainers) == 0 || remote.Spec.InitContainers[0].Name != plugin.MeshAgentContainer {
		return fmt.Errorf("remote pod's first init container is not %s", plugin.MeshAgentContainer)
	}
	if rp := remote.Spec.InitContainers[0].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
		return fmt.Errorf("%s is not a native sidecar (restartPolicy Always)", plugin.MeshAgentContainer)
	}
	spec, err := r.meshSpec(ctx)
	if err != nil {
		return err
	}
	var problems []string
	for _, want := range []string{r.Env.PodCIDR.String(), r.Env.ServiceCIDR.String()} {
		if !slices.ContainsFunc(spec.Routes, func(p netip.Prefix) bool { return p.String() == want }) {
			problems = append(problems, fmt.Sprintf("mesh.json routes %v lack %s", spec.Routes, want))
		}
	}
	if !slices.Contains(spec.DNS.Nameservers, r.Env.DNSIP) {
		problems = append(problems, fmt.Sprintf("mesh.json nameservers %v lack %s", spec.DNS.Nameservers, r.Env.DNSIP))
	}
	if spec.PrivateKey.IsZero() || spec.PeerPublicKey.IsZero() || spec.Tunnel.PathPrefix == "" {
		problems = append(problems, "mesh.json lacks a key or the path prefix")
	}
	if name, err := r.shadowName(ctx); err == nil {
		ing, err := r.Env.Local.NetworkingV1().Ingresses(r.shadowNS).Get(ctx, name, metav1.GetOptions{})
		if err == nil && len(ing.Spec.Rules) > 0 && spec.Tunnel.Host != ing.Spec.Rules[0].Host {
			problems = append(problems, fmt.Sprintf("mesh.json tunnel host %q is not the shadow Ingress's %q", spec.Tunnel.Host, ing.Spec.Rules[0].Host))
		}
	}
	for k := range remote.Annotations {
		if k == "slurm-job.vk.io/pre-exec" || k == "interlink.eu/wireguard-client-snippet" {
			problems = append(problems, "remote pod keeps the key-bearing annotation "+k)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// noSidecar checks that an opted-out pod runs as written.
func (r *Run) noSidecar(ctx context.Context) error {
	remote := r.remotePod()
	if remote == nil {
		return fmt.Errorf("%w: no remote pod", errBlocked)
	}
	for _, c := range append(remote.Spec.InitContainers, remote.Spec.Containers...) {
		if c.Name == plugin.MeshAgentContainer {
			return fmt.Errorf("remote pod has a %s container", plugin.MeshAgentContainer)
		}
	}
	for _, v := range remote.Spec.Volumes {
		if v.Secret != nil && strings.Contains(v.Secret.SecretName, plugin.MeshAgentContainer) {
			return fmt.Errorf("remote pod mounts mesh Secret %s", v.Secret.SecretName)
		}
	}
	return nil
}

// logsResource is kwok's Logs resource: the remote fake kubelet serves a file as a container's log.
var logsResource = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}

// logs serves a marker line as the remote container's log (kwok's Logs resource) and reads it with
// the local cluster's pods/log: apiserver → VK's kubelet port → InterLink API → plugin → remote
// pods/log. On real nodes the container's own output is read instead (Want.Logs).
func (r *Run) logs(ctx context.Context) error {
	remote := r.remotePod()
	ctr := r.Case.Pod.Spec.Containers[0].Name
	marker := "conformance log line of " + r.Case.Name
	if !r.real() {
		path := filepath.Join(r.Env.LogDir, r.Case.Name+"-"+ctr+".log")
		line := fmt.Sprintf("%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), marker)
		if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
			return err
		}
		obj := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kwok.x-k8s.io/v1alpha1",
			"kind":       "Logs",
			"metadata":   map[string]any{"name": remote.Name, "namespace": remote.Namespace},
			"spec":       map[string]any{"logs": []any{map[string]any{"containers": []any{ctr}, "logsFile": path}}},
		}}
		_, err := r.Env.RemoteDynamic.Resource(logsResource).Namespace(remote.Namespace).Create(ctx, obj, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create kwok Logs for the remote pod: %w", err)
		}
	}
	return r.poll(ctx, "kubectl logs "+r.Case.Pod.Name+" -c "+ctr, waitShort, func(ctx context.Context) (bool, string, error) {
		b, err := r.Env.Local.CoreV1().Pods(r.NS).GetLogs(r.Case.Pod.Name, &corev1.PodLogOptions{Container: ctr}).DoRaw(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		if r.real() {
			return len(b) > 0, fmt.Sprintf("%d bytes", len(b)), nil
		}
		return strings.Contains(string(b), marker), fmt.Sprintf("%q", truncate(string(b), 200)), nil
	})
}

// deleted deletes the local pod (and the case's clients) and waits until nothing of it is left in
// the remote cluster: the pod and every object labelled with its UID.
func (r *Run) deleted(ctx context.Context) error {
	core := r.Env.Local.CoreV1()
	for _, cl := range r.Case.Clients {
		_ = core.Pods(r.NS).Delete(ctx, cl.Name, metav1.DeleteOptions{})
	}
	if err := core.Pods(r.NS).Delete(ctx, r.Case.Pod.Name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("kubectl delete pod: %w", err)
	}
	if err := r.poll(ctx, "local pod gone", waitDelete, func(ctx context.Context) (bool, string, error) {
		p, err := core.Pods(r.NS).Get(ctx, r.Case.Pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		if err != nil {
			return false, err.Error(), nil
		}
		return false, describe(p), nil
	}); err != nil {
		return err
	}
	rc := r.Env.Remote.CoreV1()
	return r.poll(ctx, "remote objects of uid "+r.uid+" gone", waitDelete, func(ctx context.Context) (bool, string, error) {
		var left []string
		pods, err := rc.Pods("").List(ctx, r.selector())
		if err != nil {
			return false, err.Error(), nil
		}
		for _, p := range pods.Items {
			left = append(left, "pod/"+p.Name)
		}
		cms, err := rc.ConfigMaps("").List(ctx, r.selector())
		if err != nil {
			return false, err.Error(), nil
		}
		for _, c := range cms.Items {
			left = append(left, "configmap/"+c.Name)
		}
		ss, err := rc.Secrets("").List(ctx, r.selector())
		if err != nil {
			return false, err.Error(), nil
		}
		for _, s := range ss.Items {
			left = append(left, "secret/"+s.Name)
		}
		return len(left) == 0, fmt.Sprintf("left: %v", left), nil
	})
}

// shadowDeleted waits until the VK removed the shadow Deployment and Service of the deleted pod.
func (r *Run) shadowDeleted(ctx context.Context) error {
	return r.poll(ctx, "shadow objects in "+r.shadowNS+" gone", waitDelete, func(ctx context.Context) (bool, string, error) {
		var left []string
		d, err := r.Env.Local.AppsV1().Deployments(r.shadowNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		for _, o := range d.Items {
			left = append(left, "deployment/"+o.Name)
		}
		svc, err := r.Env.Local.CoreV1().Services(r.shadowNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		for _, o := range svc.Items {
			left = append(left, "service/"+o.Name)
		}
		return len(left) == 0, fmt.Sprintf("left: %v", left), nil
	})
}

// shadowSecretDeleted checks, once the VK has removed the rest of the shadow, that no Secret of
// the shadow is left: no wait, the VK's delete is over.
func (r *Run) shadowSecretDeleted(ctx context.Context) error {
	// The sweep takes Secrets older than plugin.DefaultLeftoverGrace, every 5 s here.
	return r.poll(ctx, "shadow Secrets removed", plugin.DefaultLeftoverGrace+30*time.Second, func(ctx context.Context) (bool, string, error) {
		s, err := r.Env.Local.CoreV1().Secrets(r.shadowNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		var left []string
		for _, o := range s.Items {
			if o.Type != corev1.SecretTypeServiceAccountToken {
				left = append(left, "secret/"+o.Name)
			}
		}
		return len(left) == 0, fmt.Sprintf("left in %s: %v", r.shadowNS, left), nil
	})
}

// serviceEndpointIsShadow checks that a local Service selecting the offloaded pod lists the pod's
// IP, which is its shadow pod's: the path a local client's traffic takes into the mesh.
func serviceEndpointIsShadow(svc string) Check {
	return Check{Name: "Service " + svc + " endpoints: the offloaded pod at its shadow pod's IP", Run: func(ctx context.Context, r *Run) error {
		shadow, err := r.shadowPod(ctx)
		if err != nil {
			return err
		}
		return r.poll(ctx, "EndpointSlice of "+svc, waitShort, func(ctx context.Context) (bool, string, error) {
			l, err := r.Env.Local.DiscoveryV1().EndpointSlices(r.NS).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc})
			if err != nil {
				return false, err.Error(), nil
			}
			var addrs []string
			for _, s := range l.Items {
				for _, e := range s.Endpoints {
					addrs = append(addrs, e.Addresses...)
				}
			}
			return slices.Contains(addrs, shadow.Status.PodIP), fmt.Sprintf("addresses %v, shadow pod IP %s", addrs, shadow.Status.PodIP), nil
		})
	}}
}

// meshReachesLocalServices checks what lets the offloaded pod resolve and reach a local Service:
// the local Service CIDR is routed through the mesh and the pod resolves with the local DNS.
var meshReachesLocalServices = Check{Name: "remote pod routes the local Service CIDR and resolves with the local DNS", Run: func(ctx context.Context, r *Run) error {
	remote := r.remotePod()
	if remote == nil {
		return fmt.Errorf("%w: no remote pod", errBlocked)
	}
	svc, err := r.Env.Local.CoreV1().Services(r.NS).Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		return err
	}
	spec, err := r.meshSpec(ctx)
	if err != nil {
		return err
	}
	routed := false
	for _, p := range spec.Routes {
		for _, ip := range svc.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(ip); err == nil && p.Contains(a) {
				routed = true
			}
		}
	}
	if !routed {
		return fmt.Errorf("the IP of Service echo %v is in no mesh route %v", svc.Spec.ClusterIPs, spec.Routes)
	}
	dns := remote.Spec.DNSConfig
	if dns == nil || !slices.Contains(dns.Nameservers, r.Env.DNSIP.String()) {
		return fmt.Errorf("remote pod's dnsConfig %+v does not name the local DNS %s", dns, r.Env.DNSIP)
	}
	if !slices.Contains(dns.Searches, r.NS+".svc.cluster.local") {
		return fmt.Errorf("remote pod's DNS searches %v lack %s.svc.cluster.local (\"echo\" would not resolve)", dns.Searches, r.NS)
	}
	return nil
}}

// realWants checks a pod's real-node outcomes: its phase, its containers' logs and exit codes.
func (r *Run) realWants(ctx context.Context, podName string, w Want) {
	core := r.Env.Local.CoreV1()
	var last *corev1.Pod
	if w.Phase != "" {
		r.do(ctx, fmt.Sprintf("%s: phase %s", podName, w.Phase), func(ctx context.Context) error {
			return r.poll(ctx, "phase "+string(w.Phase), 3*time.Minute, func(ctx context.Context) (bool, string, error) {
				p, err := core.Pods(r.NS).Get(ctx, podName, metav1.GetOptions{})
				if err != nil {
					return false, err.Error(), nil
				}
				last = p
				if p.Status.Phase != w.Phase && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
					// A finished pod stays as it finished.
					return false, "", fmt.Errorf("finished in another phase: %s", describe(p))
				}
				return p.Status.Phase == w.Phase, describe(p), nil
			})
		})
	}
	for _, ctr := range sortedKeys(w.Logs) {
		for _, re := range w.Logs[ctr] {
			r.do(ctx, fmt.Sprintf("%s: log of %s matches %q", podName, ctr, re), func(ctx context.Context) error {
				rx := regexp.MustCompile(re)
				return r.poll(ctx, "log line", time.Minute, func(ctx context.Context) (bool, string, error) {
					b, err := core.Pods(r.NS).GetLogs(podName, &corev1.PodLogOptions{Container: ctr}).DoRaw(ctx)
					if err != nil {
						return false, err.Error(), nil
					}
					return rx.Match(b), truncate(string(b), 300), nil
				})
			})
		}
	}
	terminated := func(ctr string) (*corev1.ContainerStateTerminated, error) {
		if last == nil {
			return nil, fmt.Errorf("pod never seen")
		}
		for _, s := range append(append([]corev1.ContainerStatus(nil), last.Status.InitContainerStatuses...), last.Status.ContainerStatuses...) {
			if s.Name == ctr && s.State.Terminated != nil {
				return s.State.Terminated, nil
			}
		}
		return nil, fmt.Errorf("%s not terminated: %s", ctr, describe(last))
	}
	for _, ctr := range sortedKeys(w.ExitCodes) {
		r.do(ctx, fmt.Sprintf("%s: %s exits %d", podName, ctr, w.ExitCodes[ctr]), func(context.Context) error {
			t, err := terminated(ctr)
			if err == nil && t.ExitCode != w.ExitCodes[ctr] {
				err = fmt.Errorf("exit code %d", t.ExitCode)
			}
			return err
		})
	}
	for _, ctr := range sortedKeys(w.Reasons) {
		r.do(ctx, fmt.Sprintf("%s: %s terminated %s", podName, ctr, w.Reasons[ctr]), func(context.Context) error {
			t, err := terminated(ctr)
			if err == nil && t.Reason != w.Reasons[ctr] {
				err = fmt.Errorf("reason %q", t.Reason)
			}
			return err
		})
	}
}
