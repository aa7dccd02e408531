package plugin

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/meshspec"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/vkmesh"
)

// Offloading describes how pods are shaped for the remote cluster; it is the pure part of the
// configuration that Translate needs.
type Offloading struct {
	// NamespacePrefix makes remote namespaces <prefix>-<namespace>; empty: the local names.
	NamespacePrefix           string
	NamespacePrefixExclusions []string
	NodeSelector              map[string]string
	NodeTolerations           []corev1.Toleration
	// Mesh shapes the mesh-agent sidecar of pods that carry mesh annotations.
	Mesh Mesh
}

// Plan is everything a create makes in the remote cluster, computed from the request alone.
type Plan struct {
	Namespace string
	Pod       *corev1.Pod
	// ConfigMaps and Secrets are copies of the local ones (and of projected volumes) with scoped
	// names; they get an ownerReference to the remote pod once it exists.
	ConfigMaps []*corev1.ConfigMap
	Secrets    []*corev1.Secret
	// Services and Ingresses publish an inbound mesh pod's tunnel (see publishInbound); like the
	// ConfigMaps and Secrets they get an ownerReference to the remote pod once it exists.
	Services  []*corev1.Service       `json:",omitempty"`
	Ingresses []*networkingv1.Ingress `json:",omitempty"`
	// PVCs are the remote claims to create when missing (see remotePVCs); never owned by the pod.
	PVCs []*corev1.PersistentVolumeClaim `json:",omitempty"`
	// ServiceAccount is the service account the remote pod runs as, ensured to exist ("" for default).
	ServiceAccount string
	// Mesh is the mesh the pod's mesh-agent sidecar joins, nil for a pod without the mesh. It is
	// also the mesh.json of one of the Secrets, the only place its keys are written.
	Mesh *meshspec.Spec `json:"Mesh,omitempty"`
}

// inputErr turns vkmesh's refusal of a mesh input into the plugin's; other errors pass.
func inputErr(err error) error {
	var ie *vkmesh.InputError
	if errors.As(err, &ie) {
		return &ValidationError{Field: ie.Field, Reason: ie.Reason}
	}
	return err
}

// The pod annotations that carry a pod's mesh (see package vkmesh).
const (
	AnnotPreExec          = vkmesh.AnnotPreExec
	AnnotWGSnippet        = vkmesh.AnnotWGSnippet
	AnnotMeshNetwork      = vkmesh.AnnotMeshNetwork
	AnnotWstunnelCommands = vkmesh.AnnotWstunnelCommands
	AnnotMeshSpec         = vkmesh.AnnotMeshSpec
)

// Local scheduling leftovers: selectors and tolerations that only make sense for the virtual node.
var (
	localSelectorKeys   = []string{"kubernetes.io/hostname", "type", "virtual-node.interlink/type"}
	localTolerationKeys = []string{"virtual-node.interlink/no-schedule", "virtual-kubelet.io/provider", "interlink.eu/virtual-node"}
	// Annotations never copied to the remote pod: the mesh inputs carry keys and the tunnel's
	// path prefix.
	droppedAnnotationPrefixes = []string{"slurm-job.vk.io/", AnnotWGSnippet, "mesh.interlink-k8s-mesh.io/", "kubectl.kubernetes.io/last-applied-configuration"}
)

// Translate computes the remote objects for a create request. It never talks to a cluster, so its
// result is tested with golden files; Create applies it.
func Translate(req *RetrievedPodData, o Offloading) (*Plan, error) {
	local := &req.Pod
	if err := validateIdentity(local); err != nil {
		return nil, err
	}
	var mesh *meshspec.Spec
	if !o.Mesh.Disabled {
		spec, ok, err := vkmesh.Parse(local.Annotations)
		if err != nil {
			return nil, inputErr(err)
		}
		if ok {
			mesh = &spec
		}
	}
	uid := string(local.UID)
	plan := &Plan{Namespace: RemoteNamespace(o.NamespacePrefix, o.NamespacePrefixExclusions, local.Namespace)}

	cms, secrets, projected := collectVolumeData(req.Containers)
	cmNames := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(cms)) {
		cm := cms[name]
		remote := &corev1.ConfigMap{
			ObjectMeta: scopedMeta(ScopedName(name, uid), plan.Namespace, local),
			Data:       cm.Data,
			BinaryData: cm.BinaryData,
			Immutable:  cm.Immutable,
		}
		cmNames[name] = remote.Name
		plan.ConfigMaps = append(plan.ConfigMaps, remote)
	}
	secretNames := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(secrets)) {
		s := secrets[name]
		remote := &corev1.Secret{
			ObjectMeta: scopedMeta(ScopedName(name, uid), plan.Namespace, local),
			Data:       s.Data,
			StringData: s.StringData,
			Type:       s.Type,
			Immutable:  s.Immutable,
		}
		secretNames[name] = remote.Name
		plan.Secrets = append(plan.Secrets, remote)
	}

	spec := local.Spec.DeepCopy()
	if err := rewriteVolumes(spec, uid, plan, local, projected, cmNames, secretNames); err != nil {
		return nil, err
	}
	rewriteEnvRefs(spec, cmNames, secretNames)
	for i, ps := range spec.ImagePullSecrets {
		if n, ok := secretNames[ps.Name]; ok {
			spec.ImagePullSecrets[i].Name = n
		}
	}
	stripLocalScheduling(spec, o)
	// Held until its ConfigMaps and Secrets exist (create removes the gate): a create cut short
	// leaves a pod that never ran without them.
	spec.SchedulingGates = append(spec.SchedulingGates, corev1.PodSchedulingGate{Name: GateObjects})
	if spec.ServiceAccountName != "" && spec.ServiceAccountName != "default" {
		plan.ServiceAccount = spec.ServiceAccountName
	}
	spec.DeprecatedServiceAccount = ""
	// The local token arrives as a projected volume; the remote cluster's own token must not be
	// mounted over it.
	spec.AutomountServiceAccountToken = new(false)
	if spec.Hostname == "" && len(validation.IsDNS1123Label(local.Name)) == 0 {
		spec.Hostname = local.Name // the container sees the name its author gave the pod
	}

	meta := scopedMeta(ScopedName(local.Name, uid), plan.Namespace, local)
	for k, v := range local.Labels {
		if _, ours := meta.Labels[k]; !ours {
			meta.Labels[k] = v
		}
	}
	for k, v := range local.Annotations {
		if !droppedAnnotation(k) {
			meta.Annotations[k] = v
		}
	}
	plan.Pod = &corev1.Pod{ObjectMeta: meta, Spec: *spec}
	plan.PVCs = remotePVCs(req, plan.Namespace)
	if mesh != nil {
		if err := injectMesh(plan, local, *mesh, o.Mesh.withDefaults()); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

func validateIdentity(p *corev1.Pod) error {
	switch {
	case p.UID == "":
		return &ValidationError{Field: "pod.metadata.uid", Reason: "is required"}
	case p.Name == "":
		return &ValidationError{Field: "pod.metadata.name", Reason: "is required"}
	case p.Namespace == "":
		return &ValidationError{Field: "pod.metadata.namespace", Reason: "is required"}
	case len(p.Spec.Containers) == 0:
		return &ValidationError{Field: "pod.spec.containers", Reason: "must name at least one container"}
	}
	return nil
}

func scopedMeta(name, namespace string, local *corev1.Pod) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      name,
		Namespace: namespace,
		Labels: map[string]string{
			LabelOffloaded: ValueOffloaded,
			LabelSourceUID: sanitizeLabelValue(string(local.UID)),
		},
		Annotations: map[string]string{
			AnnotSourceUID:  string(local.UID),
			AnnotSourceName: local.Name,
			AnnotSourceNS:   local.Namespace,
		},
	}
}

// sanitizeLabelValue keeps a UID usable as a label value (UUIDs already are).
func sanitizeLabelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	return shortHash(s)
}

// collectVolumeData deduplicates ConfigMaps, Secrets and projected-volume maps across the container
// entries: InterLink repeats them for every container that uses them.
func collectVolumeData(containers []RetrievedContainer) (cms map[string]corev1.ConfigMap, secrets map[string]corev1.Secret, projected map[string]corev1.ConfigMap) {
	cms, secrets, projected = map[string]corev1.ConfigMap{}, map[string]corev1.Secret{}, map[string]corev1.ConfigMap{}
	for _, c := range containers {
		for _, cm := range c.ConfigMaps {
			cms[cm.Name] = cm
		}
		for _, s := range c.Secrets {
			secrets[s.Name] = s
		}
		for _, p := range c.ProjectedVolumeMaps {
			projected[p.Name] = p
		}
	}
	return cms, secrets, projected
}

func rewriteVolumes(spec *corev1.PodSpec, uid string, plan *Plan, local *corev1.Pod, projected map[string]corev1.ConfigMap, cmNames, secretNames map[string]string) error {
	remotePVCs := map[string]bool{}
	for _, n := range splitList(local.Annotations[AnnotRemotePVC]) {
		remotePVCs[n] = true
	}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		field := fmt.Sprintf("pod.spec.volumes[%d]", i)
		switch {
		case v.ConfigMap != nil:
			n, ok := cmNames[v.ConfigMap.Name]
			if !ok {
				if v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
					continue // an optional, absent ConfigMap stays absent remotely
				}
				return &ValidationError{Field: field + ".configMap.name", Reason: fmt.Sprintf("ConfigMap %q is used by volume %q but was not sent", v.ConfigMap.Name, v.Name)}
			}
			v.ConfigMap.Name = n
		case v.Secret != nil:
			n, ok := secretNames[v.Secret.SecretName]
			if !ok {
				if v.Secret.Optional != nil && *v.Secret.Optional {
					continue
				}
				return &ValidationError{Field: field + ".secret.secretName", Reason: fmt.Sprintf("Secret %q is used by volume %q but was not sent", v.Secret.SecretName, v.Name)}
			}
			v.Secret.SecretName = n
		case v.Projected != nil:
			data, ok := projected[v.Name]
			if !ok {
				return &ValidationError{Field: field + ".projected", Reason: fmt.Sprintf("projected volume %q has no entry in projectedvolumemaps", v.Name)}
			}
			secret, items := projectedSecret(data, ScopedName(v.Name, uid), plan.Namespace, local)
			plan.Secrets = append(plan.Secrets, secret)
			mode := v.Projected.DefaultMode
			v.VolumeSource = corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret.Name, Items: items, DefaultMode: mode}}
		case v.PersistentVolumeClaim != nil:
			if !remotePVCs[v.PersistentVolumeClaim.ClaimName] {
				return &ValidationError{Field: field + ".persistentVolumeClaim", Reason: fmt.Sprintf("PVC %q is not listed in the pod annotation %s, so it has no remote counterpart", v.PersistentVolumeClaim.ClaimName, AnnotRemotePVC)}
			}
		}
	}
	return nil
}

var secretKeyRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// projectedSecret turns a projected volume's files into a Secret. File names may hold '/' (downward
// API paths), which Secret keys cannot, so every file gets a key and an item mapping it back to its
// path.
func projectedSecret(files corev1.ConfigMap, name, namespace string, local *corev1.Pod) (*corev1.Secret, []corev1.KeyToPath) {
	s := &corev1.Secret{ObjectMeta: scopedMeta(name, namespace, local), Type: corev1.SecretTypeOpaque, Data: map[string][]byte{}}
	var items []corev1.KeyToPath
	add := func(path string, content []byte) {
		key := path
		if !secretKeyRE.MatchString(key) || len(key) > 253 {
			key = "file-" + shortHash(path)
		}
		s.Data[key] = content
		items = append(items, corev1.KeyToPath{Key: key, Path: path})
	}
	for _, p := range slices.Sorted(maps.Keys(files.Data)) {
		add(p, []byte(files.Data[p]))
	}
	for _, p := range slices.Sorted(maps.Keys(files.BinaryData)) {
		add(p, files.BinaryData[p])
	}
	return s, items
}

// rewriteEnvRefs points any env reference that the VK left unresolved at the scoped copies.
func rewriteEnvRefs(spec *corev1.PodSpec, cmNames, secretNames map[string]string) {
	fix := func(c *corev1.Container) {
		for i := range c.Env {
			if vf := c.Env[i].ValueFrom; vf != nil {
				if r := vf.ConfigMapKeyRef; r != nil {
					if n, ok := cmNames[r.Name]; ok {
						r.Name = n
					}
				}
				if r := vf.SecretKeyRef; r != nil {
					if n, ok := secretNames[r.Name]; ok {
						r.Name = n
					}
				}
			}
		}
		for i := range c.EnvFrom {
			if r := c.EnvFrom[i].ConfigMapRef; r != nil {
				if n, ok := cmNames[r.Name]; ok {
					r.Name = n
				}
			}
			if r := c.EnvFrom[i].SecretRef; r != nil {
				if n, ok := secretNames[r.Name]; ok {
					r.Name = n
				}
			}
		}
	}
	for i := range spec.InitContainers {
		fix(&spec.InitContainers[i])
	}
	for i := range spec.Containers {
		fix(&spec.Containers[i])
	}
}

// stripLocalScheduling removes what binds the pod to the virtual node and adds the configured
// remote placement.
func stripLocalScheduling(spec *corev1.PodSpec, o Offloading) {
	spec.NodeName = ""
	for _, k := range localSelectorKeys {
		delete(spec.NodeSelector, k)
	}
	for k, v := range o.NodeSelector {
		if spec.NodeSelector == nil {
			spec.NodeSelector = map[string]string{}
		}
		spec.NodeSelector[k] = v
	}
	if len(spec.NodeSelector) == 0 {
		spec.NodeSelector = nil
	}
	spec.Tolerations = slices.DeleteFunc(spec.Tolerations, func(t corev1.Toleration) bool {
		return slices.Contains(localTolerationKeys, t.Key)
	})
	for _, t := range o.NodeTolerations {
		if !slices.ContainsFunc(spec.Tolerations, func(have corev1.Toleration) bool { return have.MatchToleration(&t) }) {
			spec.Tolerations = append(spec.Tolerations, t)
		}
	}
	if len(spec.Tolerations) == 0 {
		spec.Tolerations = nil
	}
	// The scheduler name belongs to the local cluster; the remote one uses its default.
	spec.SchedulerName = ""
}

func droppedAnnotation(k string) bool {
	// The VK's tunnel client commands (wstunnel, rathole, ssh) embed the tunnel's credentials.
	if strings.HasPrefix(k, "interlink.eu/") && strings.HasSuffix(k, "-client-commands") {
		return true
	}
	for _, p := range droppedAnnotationPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// localPVCAnnotationPrefixes are the local cluster's bookkeeping on a claim (binding, the
// provisioner, the node picked for a WaitForFirstConsumer class): copied, they would tie the remote
// claim to local volumes and nodes.
var localPVCAnnotationPrefixes = []string{"pv.kubernetes.io/", "volume.kubernetes.io/", "volume.beta.kubernetes.io/", "kubectl.kubernetes.io/"}

// remotePVCs computes the remote claims to create: those named in the annotation that the request
// carries, deduplicated across container entries, in name order.
func remotePVCs(req *RetrievedPodData, namespace string) []*corev1.PersistentVolumeClaim {
	named := map[string]bool{}
	for _, n := range splitList(req.Pod.Annotations[AnnotRemotePVC]) {
		named[n] = true
	}
	sent := map[string]corev1.PersistentVolumeClaim{}
	for _, c := range req.Containers {
		for _, pvc := range c.PersistentVolumeClaims {
			if named[pvc.Name] {
				sent[pvc.Name] = pvc
			}
		}
	}
	out := make([]*corev1.PersistentVolumeClaim, 0, len(sent))
	for _, name := range slices.Sorted(maps.Keys(sent)) {
		local := sent[name]
		meta := scopedMeta(name, namespace, &req.Pod)
		// As the Python plugin wrote them: the claim's own identity in the annotations, the pod's
		// UID in the label.
		meta.Annotations[AnnotSourceUID], meta.Annotations[AnnotSourceName] = string(local.UID), local.Name
		for k, v := range local.Labels {
			if _, ours := meta.Labels[k]; !ours {
				meta.Labels[k] = v
			}
		}
		for k, v := range local.Annotations {
			_, ours := meta.Annotations[k]
			if !ours && !slices.ContainsFunc(localPVCAnnotationPrefixes, func(p string) bool { return strings.HasPrefix(k, p) }) {
				meta.Annotations[k] = v
			}
		}
		spec := *local.Spec.DeepCopy()
		spec.VolumeName = "" // the local volume it is bound to; the remote cluster binds its own
		out = append(out, &corev1.PersistentVolumeClaim{ObjectMeta: meta, Spec: spec})
	}
	return out
}
