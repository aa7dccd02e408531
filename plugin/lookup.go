package plugin

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// remoteNames are the names the remote pod of a local pod may have: this plugin's, then the Python
// plugin's when it differs (a pod offloaded by that plugin before the switch).
func remoteNames(name string, uid types.UID) []string {
	ours, theirs := ScopedName(name, string(uid)), PythonScopedName(name, string(uid))
	if theirs == ours || theirs == "" {
		return []string{ours}
	}
	return []string{ours, theirs}
}

// findRemotePod returns the remote pod standing for a local pod: from the cache, else by each of
// its possible names, checking that the pod found is this local pod's (the Python plugin's names
// can cut the UID away). It returns nil, nil when there is none.
func (p *Plugin) findRemotePod(ctx context.Context, namespace, name string, uid types.UID) (*corev1.Pod, error) {
	if pod := p.cachedBySourceUID(string(uid)); pod != nil && pod.Namespace == namespace {
		return pod, nil
	}
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	for _, n := range remoteNames(name, uid) {
		pod, err := p.client.CoreV1().Pods(namespace).Get(rctx, n, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, p.remoteErr("get pod", fmt.Errorf("get pod %s/%s: %w", namespace, n, err))
		case pod.Annotations[AnnotSourceUID] == string(uid):
			return pod, nil
		}
	}
	return nil, nil
}
