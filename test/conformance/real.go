package conformance

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
)

// RealNodeLabel labels (and taints) the real node test/testcluster/node.sh starts (testcluster.RealNodeLabel).
const RealNodeLabel = "ikm.interlink.dev/real-node"

// RealImages are the images a remote real node has (imported from `make images`; it has no registry).
type RealImages struct {
	// Shell is the project's busybox image: it stands for busybox:1.36.
	Shell string
	// Echo is the project's echo-server.
	Echo string
}

// RealVariant returns case c as it runs on the remote cluster's real node, or false when c cannot:
// cases with local client pods or mesh checks need real shadow pods (TestMeshRealPods proves the mesh
// on real pods). The variant opts out of the mesh (the VK's shadow pods run on kwok, where a mesh-agent
// would never see its handshake), swaps busybox for the project's shell image (OnRealNode adapts the
// rest), and asks for the real node remotely: a required node affinity whose terms match the VK's
// node locally and only the real node remotely (the plugin drops the local hostname selector), and a
// toleration of the real node's taint. Its Want is checked, not skipped.
func RealVariant(c *Case, img RealImages, vkNode string) (*Case, bool) {
	if len(c.Clients) > 0 || len(c.Checks) > 0 {
		return nil, false
	}
	v := *c
	v.Name = c.Name + "-real"
	v.Doc = c.Doc + "; run for real on the remote cluster's node, without the mesh"
	v.NoMesh, v.Real = true, true
	v.Want = copyWant(c.Want)
	p := c.Pod.DeepCopy()
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[meshOptOut] = "disabled"
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for i := range list {
			if list[i].Image == busybox {
				list[i].Image = img.Shell
			}
			list[i].ImagePullPolicy = corev1.PullNever
		}
	}
	v.Pod = p
	v.Known = maps.Clone(c.Known)
	if c.OnRealNode != nil {
		c.OnRealNode(&v, img)
	}
	pinToRealNode(&p.Spec, vkNode)
	return &v, true
}

// pinToRealNode makes spec schedulable on the remote cluster's real node only, and, when vkNode is
// set, on the VK's node locally: a required node affinity whose terms match the real node's label
// or the VK's hostname (the plugin drops the local hostname selector), and a toleration of the
// real node's taint.
func pinToRealNode(spec *corev1.PodSpec, vkNode string) {
	terms := []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: RealNodeLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{"true"}}}}}
	if vkNode != "" {
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{vkNode}}}})
	}
	spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	spec.Tolerations = append(spec.Tolerations, corev1.Toleration{Key: RealNodeLabel, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
}

func copyWant(w Want) Want {
	c := Want{Phase: w.Phase, Logs: map[string][]string{}, ExitCodes: map[string]int32{}, Reasons: map[string]string{}}
	for k, v := range w.Logs {
		c.Logs[k] = append([]string(nil), v...)
	}
	for k, v := range w.ExitCodes {
		c.ExitCodes[k] = v
	}
	for k, v := range w.Reasons {
		c.Reasons[k] = v
	}
	return c
}

// real says whether the run's remote containers execute: everywhere with Env.RealNodes, or for a
// RealVariant.
func (r *Run) real() bool { return r.Env.RealNodes || r.Case.Real }
