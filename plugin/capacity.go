package plugin

import (
	"context"
	"maps"
	"slices"

	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Capacity is the floor reported when the remote cluster offers nothing: a zero capacity would
// drain the virtual node, while a small one only stops new pods from fitting.
var capacityFloor = corev1.ResourceList{
	corev1.ResourceCPU:    resource.MustParse("1"),
	corev1.ResourceMemory: resource.MustParse("1Gi"),
	corev1.ResourcePods:   resource.MustParse("1"),
}

// Capacity answers the VK's ping: the allocatable resources of the remote nodes our pods may land
// on (schedulable, Ready, matching the configured selector, taints tolerated), minus what pods this
// plugin did not create already request there. Our own pods are not subtracted: the local scheduler
// counts them. Extended resources (GPUs) are reported as accelerators. The answer is cached for
// Config.CapacityTTL.
func (p *Plugin) Capacity(ctx context.Context) (*PingResponse, error) {
	p.capMu.Lock()
	defer p.capMu.Unlock()
	if p.capCached != nil && time.Since(p.capAt) < p.cfg.CapacityTTL {
		return p.capCached, nil
	}
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	nodes, err := p.client.CoreV1().Nodes().List(rctx, metav1.ListOptions{})
	if err != nil {
		return nil, p.remoteErr("list nodes", fmt.Errorf("list nodes: %w", err))
	}
	pods, err := p.client.CoreV1().Pods("").List(rctx, metav1.ListOptions{
		FieldSelector:   "status.phase!=Succeeded,status.phase!=Failed",
		ResourceVersion: "0", // served from the apiserver's watch cache
	})
	if err != nil {
		return nil, p.remoteErr("list pods", fmt.Errorf("list pods: %w", err))
	}
	free, usable := FreeCapacity(nodes.Items, pods.Items, p.cfg.Offloading)
	resp := pingResponse(free, usable)
	p.capCached, p.capAt = resp, time.Now()
	return resp, nil
}

// FreeCapacity sums the allocatable resources of the usable nodes minus the requests of the
// foreign pods bound to them. It is pure, for tests.
func FreeCapacity(nodes []corev1.Node, pods []corev1.Pod, o Offloading) (free corev1.ResourceList, usable int) {
	free = corev1.ResourceList{}
	chosen := map[string]bool{}
	selector := labels.SelectorFromSet(o.NodeSelector)
	for i := range nodes {
		n := &nodes[i]
		if n.Spec.Unschedulable || !nodeReady(n) || !selector.Matches(labels.Set(n.Labels)) || !tolerated(n.Spec.Taints, o.NodeTolerations) {
			continue
		}
		chosen[n.Name] = true
		usable++
		for name, q := range n.Status.Allocatable {
			sum := free[name]
			sum.Add(q)
			free[name] = sum
		}
	}
	for i := range pods {
		pod := &pods[i]
		if !chosen[pod.Spec.NodeName] || pod.Labels[LabelOffloaded] == ValueOffloaded {
			continue
		}
		for name, q := range podRequests(pod) {
			if have, ok := free[name]; ok {
				have.Sub(q)
				free[name] = have
			}
		}
		if have, ok := free[corev1.ResourcePods]; ok {
			have.Sub(resource.MustParse("1"))
			free[corev1.ResourcePods] = have
		}
	}
	return free, usable
}

func pingResponse(free corev1.ResourceList, usable int) *PingResponse {
	resp := &PingResponse{Status: "ok", Resources: &Resources{}}
	if usable == 0 {
		resp.Status = "no remote node is usable (schedulable, Ready, matching node_selector and node_tolerations)"
	}
	quantity := func(name corev1.ResourceName) string {
		q, ok := free[name]
		if floor := capacityFloor[name]; !ok || q.Cmp(floor) < 0 {
			return floor.String()
		}
		return q.String()
	}
	resp.Resources.CPU = quantity(corev1.ResourceCPU)
	resp.Resources.Memory = quantity(corev1.ResourceMemory)
	resp.Resources.Pods = quantity(corev1.ResourcePods)
	for _, name := range slices.Sorted(maps.Keys(free)) {
		if !isAccelerator(name) {
			continue
		}
		q := free[name]
		if q.Sign() < 0 {
			q = resource.Quantity{}
		}
		resp.Resources.Accelerators = append(resp.Resources.Accelerators, Accelerator{ResourceType: string(name), Available: q.String()})
	}
	return resp
}

// isAccelerator tells extended resources (vendor-domain names such as nvidia.com/gpu) from the
// native ones.
func isAccelerator(name corev1.ResourceName) bool {
	s := string(name)
	return strings.Contains(s, "/") && !strings.Contains(s, "kubernetes.io/") && !strings.HasPrefix(s, "hugepages-")
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func tolerated(taints []corev1.Taint, tolerations []corev1.Toleration) bool {
	for i := range taints {
		t := &taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		ok := false
		for j := range tolerations {
			if tolerations[j].ToleratesTaint(logr.Discard(), t, false) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// podRequests is the scheduler's view of a pod's requests: the larger of the sum over containers
// and any single init container, plus the pod overhead.
func podRequests(pod *corev1.Pod) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, c := range pod.Spec.Containers {
		for name, q := range c.Resources.Requests {
			sum := out[name]
			sum.Add(q)
			out[name] = sum
		}
	}
	for _, c := range pod.Spec.InitContainers {
		for name, q := range c.Resources.Requests {
			if have, ok := out[name]; !ok || q.Cmp(have) > 0 {
				out[name] = q.DeepCopy()
			}
		}
	}
	for name, q := range pod.Spec.Overhead {
		sum := out[name]
		sum.Add(q)
		out[name] = sum
	}
	return out
}
