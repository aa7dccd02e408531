package testcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RealNodeLabel labels and taints (NoSchedule) the real node node.sh starts, so only pods that ask
// for it land there: every other test's pods stay on kwok's nodes.
const RealNodeLabel = "ikm.interlink.dev/real-node"

var realNode struct {
	once sync.Once
	err  error
}

// RealNode returns the name of the cluster's real node: a kubelet with containerd, runc and a CNI
// bridge started by node.sh. `make test` starts it with the cluster (IKM_REAL_NODE=1); a cluster this
// process started gets one on first use. It skips the test unless the process is root, and when a
// shared cluster has no real node (a failure when IKM_REQUIRE_CLUSTER is set).
func (c *Cluster) RealNode(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a real node (kubelet, containerd, runc, CNI bridge) needs root")
	}
	if name, ok := c.findRealNode(t); ok {
		return name
	}
	if shared.env == nil {
		msg := fmt.Sprintf("the shared cluster %s has no real node (start it with IKM_REAL_NODE=1 test/testcluster/cluster.sh up)", c.Kubeconfig)
		if os.Getenv(EnvRequire) != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	realNode.once.Do(func() {
		cmd := exec.Command("bash", filepath.Join(sourceDir(), "node.sh"), "up")
		cmd.Env = shared.env
		if out, err := cmd.CombinedOutput(); err != nil {
			realNode.err = fmt.Errorf("node.sh up: %v: %s", err, tail(out, 4000))
		}
	})
	if realNode.err != nil {
		t.Fatal(realNode.err)
	}
	name, ok := c.findRealNode(t)
	if !ok {
		t.Fatal("node.sh up succeeded but no node carries " + RealNodeLabel)
	}
	return name
}

// findRealNode returns the first Ready node labelled RealNodeLabel.
func (c *Cluster) findRealNode(t testing.TB) (string, bool) {
	t.Helper()
	nodes, err := c.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: RealNodeLabel + "=true"})
	if err != nil {
		t.Fatalf("list real nodes: %v", err)
	}
	for _, n := range nodes.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return n.Name, true
			}
		}
	}
	return "", false
}

// OnRealNode makes a pod run on the real node: it selects its label and tolerates its taint.
func OnRealNode(spec *corev1.PodSpec) {
	spec.NodeSelector = map[string]string{RealNodeLabel: "true"}
	spec.Tolerations = append(spec.Tolerations, corev1.Toleration{
		Key: RealNodeLabel, Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule,
	})
}
