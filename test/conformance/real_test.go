package conformance

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestRealVariant(t *testing.T) {
	img := RealImages{Shell: "example.test/shell:v1", Echo: "example.test/echo:v1"}
	var names []string
	for i := range Cases {
		c := &Cases[i]
		before := c.Pod.DeepCopy()
		v, ok := RealVariant(c, img, "vk-node")
		if len(c.Clients) > 0 || len(c.Checks) > 0 {
			if ok {
				t.Errorf("%s has clients or mesh checks but got a real variant", c.Name)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: no real variant", c.Name)
			continue
		}
		names = append(names, v.Name)
		if v.Name != c.Name+"-real" || !v.Real || !v.NoMesh || v.Pod.Annotations[meshOptOut] != "disabled" {
			t.Errorf("%s: variant %q real=%v noMesh=%v annotations %v", c.Name, v.Name, v.Real, v.NoMesh, v.Pod.Annotations)
		}
		for _, ctr := range append(append([]corev1.Container(nil), v.Pod.Spec.InitContainers...), v.Pod.Spec.Containers...) {
			if ctr.Image != img.Shell && ctr.Image != img.Echo {
				t.Errorf("%s: container %s runs %q, an image the real node lacks", c.Name, ctr.Name, ctr.Image)
			}
			if ctr.ImagePullPolicy != corev1.PullNever {
				t.Errorf("%s: container %s pulls (%s); the real node has no registry", c.Name, ctr.Name, ctr.ImagePullPolicy)
			}
		}
		terms := v.Pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		if len(terms) != 2 || terms[0].MatchExpressions[0].Key != RealNodeLabel || terms[1].MatchExpressions[0].Values[0] != "vk-node" {
			t.Errorf("%s: affinity terms %+v, want the real node or the VK's node", c.Name, terms)
		}
		if c.Pod.Annotations[meshOptOut] != before.Annotations[meshOptOut] || c.Pod.Spec.Affinity != nil ||
			c.Pod.Spec.Containers[0].Image != before.Spec.Containers[0].Image {
			t.Errorf("%s: RealVariant changed the original case", c.Name)
		}
		if c.Name == "default-entrypoint" && (v.Pod.Spec.Containers[0].Image != img.Echo || v.Want.Phase != corev1.PodRunning || c.Want.Phase != corev1.PodSucceeded) {
			t.Errorf("default-entrypoint: variant runs %q with phase %s (original now %s), want the echo-server Running", v.Pod.Spec.Containers[0].Image, v.Want.Phase, c.Want.Phase)
		}
	}
	if len(names) < 10 {
		t.Errorf("only %d cases have a real variant: %v", len(names), names)
	}
}
