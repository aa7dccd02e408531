package plugin

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PVCs, as the Python plugin offloads them: a claim named in the pod annotation
// interlink.io/remote-pvc (a comma-separated list) is mounted from a remote claim of the same name
// in the remote namespace. When the create request carries the claim object (the
// persistentVolumeClaims of a container entry, a field of InterLink's plugin SDK), the plugin
// creates the remote claim unless one of that name exists, which it leaves as it is. Remote claims
// are never owned by a pod: on delete, a claim is removed only when its own annotation
// interlink.io/pvc-retention-policy lists "delete".

// ensurePVC creates a remote claim unless one of its name exists, which is kept as it is (its
// data and its retention policy belong to whoever made it). It reports whether it created it.
func (p *Plugin) ensurePVC(ctx context.Context, pvc *corev1.PersistentVolumeClaim) (bool, error) {
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	_, err := p.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Create(rctx, pvc, metav1.CreateOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsAlreadyExists(err):
		return false, nil
	default:
		return false, p.remoteErr("create pvc", fmt.Errorf("create pvc %s/%s: %w", pvc.Namespace, pvc.Name, err))
	}
}

// claimsOf lists the claims a delete considers: those named in the pod annotation and, as the
// Python plugin did, those its volumes mount.
func claimsOf(local *corev1.Pod) []string {
	claims := splitList(local.Annotations[AnnotRemotePVC])
	for _, v := range local.Spec.Volumes {
		if c := v.PersistentVolumeClaim; c != nil && !slices.Contains(claims, c.ClaimName) {
			claims = append(claims, c.ClaimName)
		}
	}
	return claims
}

// deleteWithPod tells whether a remote claim's retention policy says it goes with its pod.
func deleteWithPod(pvc *corev1.PersistentVolumeClaim) bool {
	return slices.Contains(splitList(pvc.Annotations[AnnotPVCRetain]), "delete")
}
