package plugin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

func (p *Plugin) handleDelete(w http.ResponseWriter, r *http.Request) error {
	var pod corev1.Pod
	if err := decodeJSON(r, &pod); err != nil {
		return err
	}
	if err := p.Delete(r.Context(), &pod); err != nil {
		return err
	}
	return writeJSON(w, map[string]string{"deleted": string(pod.UID)})
}

// Delete removes the remote pod of a local pod, its scoped ConfigMaps and Secrets, and the remote
// PVCs named in its interlink.io/remote-pvc annotation whose retention policy is "delete". What is
// already gone counts as deleted, so repeated deletes are harmless.
func (p *Plugin) Delete(ctx context.Context, local *corev1.Pod) error {
	switch {
	case local.UID == "":
		return &ValidationError{Field: "metadata.uid", Reason: "is required"}
	case local.Name == "":
		return &ValidationError{Field: "metadata.name", Reason: "is required"}
	case local.Namespace == "":
		return &ValidationError{Field: "metadata.namespace", Reason: "is required"}
	}
	// A create of this pod in flight is stopped and rolls back first; later creates are refused.
	done, err := p.guard.beginDelete(ctx, local.UID)
	if err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", local.Namespace, local.Name, err)
	}
	defer done()
	return p.deleteRemote(ctx, local)
}

// deleteRemote removes the remote objects of a local pod; the caller holds the pod's turn.
func (p *Plugin) deleteRemote(ctx context.Context, local *corev1.Pod) error {
	ns := RemoteNamespace(p.cfg.Offloading.NamespacePrefix, p.cfg.Offloading.NamespacePrefixExclusions, local.Namespace)
	name := ScopedName(local.Name, string(local.UID))
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	core := p.client.CoreV1()
	var errs []error
	gone := func(verb string, err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, p.remoteErr(verb, fmt.Errorf("%s: %w", verb, err)))
		}
	}
	// The cached remote pod names the ConfigMaps and Secrets this plugin made for it, so each is
	// deleted by name. Without it (not cached yet, or offloaded by the Python plugin, whose objects
	// have no owner) they are found by label: a DeleteCollection lists the whole namespace from
	// etcd, which made deletes 6 times slower than the apiserver's floor with 2,000 pods in one
	// namespace (make bench-scale).
	cached := p.cachedBySourceUID(string(local.UID))
	if cached != nil && cached.Namespace != ns {
		cached = nil
	}
	gone("delete pod", core.Pods(ns).Delete(rctx, name, metav1.DeleteOptions{}))
	legacy := false
	if names := remoteNames(local.Name, local.UID); len(names) > 1 {
		// A pod the Python plugin offloaded has its name; delete it only if it is this pod's.
		// Looked up by name: both names may exist for one local pod, and the cache's index by
		// source UID answers with one of them.
		var theirs *corev1.Pod
		var err error
		if p.pods.hasSynced() {
			theirs = p.pods.byName(ns, names[1])
		} else {
			theirs, err = core.Pods(ns).Get(rctx, names[1], metav1.GetOptions{})
		}
		if err == nil && theirs != nil && theirs.Annotations[AnnotSourceUID] == string(local.UID) {
			legacy = true
			gone("delete pod", core.Pods(ns).Delete(rctx, theirs.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &theirs.UID}}))
		} else {
			gone("get pod", err)
		}
	}
	// The garbage collector would remove these with the pod; deleting them now frees them at once
	// and covers the objects the Python plugin made (never owned, labelled alike).
	if cached != nil && cached.Name == name && !legacy {
		cms, secrets := scopedObjectsOf(cached, string(local.UID))
		for _, n := range cms {
			gone("delete configmap", core.ConfigMaps(ns).Delete(rctx, n, metav1.DeleteOptions{}))
		}
		for _, n := range secrets {
			gone("delete secret", core.Secrets(ns).Delete(rctx, n, metav1.DeleteOptions{}))
		}
	} else {
		sel := metav1.ListOptions{LabelSelector: labels.Set{LabelSourceUID: sanitizeLabelValue(string(local.UID))}.String()}
		gone("delete configmaps", core.ConfigMaps(ns).DeleteCollection(rctx, metav1.DeleteOptions{}, sel))
		gone("delete secrets", core.Secrets(ns).DeleteCollection(rctx, metav1.DeleteOptions{}, sel))
	}
	// An inbound mesh pod's Service and Ingress, by their names (Services have no
	// DeleteCollection); the garbage collector would remove them with the pod too. A plugin not
	// granted them (manifests/plugin-inbound-rbac.yaml) cannot have made them: forbidden is gone.
	if cached == nil || isInbound(cached) {
		inbound := ScopedName(inboundName, string(local.UID))
		ungranted := func(verb string, err error) {
			if !apierrors.IsForbidden(err) {
				gone(verb, err)
			}
		}
		ungranted("delete ingress", p.client.NetworkingV1().Ingresses(ns).Delete(rctx, inbound, metav1.DeleteOptions{}))
		ungranted("delete service", core.Services(ns).Delete(rctx, inbound, metav1.DeleteOptions{}))
		ungranted("delete endpointslice", p.client.DiscoveryV1().EndpointSlices(ns).Delete(rctx, inbound, metav1.DeleteOptions{}))
	}
	for _, claim := range claimsOf(local) {
		pvc, err := core.PersistentVolumeClaims(ns).Get(rctx, claim, metav1.GetOptions{})
		if err != nil {
			gone("get pvc", err)
			continue
		}
		if deleteWithPod(pvc) {
			gone("delete pvc", core.PersistentVolumeClaims(ns).Delete(rctx, claim, metav1.DeleteOptions{}))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	p.log.Info("pod deleted", "pod", local.Namespace+"/"+local.Name, "remote", ns+"/"+name)
	return nil
}

// scopedObjectsOf returns the names of the ConfigMaps and Secrets a remote pod uses (volumes,
// projected sources, env and envFrom of every container) that are scoped to the local pod uid: the
// ones this plugin made for it, never a shared one such as kube-root-ca.crt.
func scopedObjectsOf(pod *corev1.Pod, uid string) (cms, secrets []string) {
	seenCM, seenSecret := map[string]bool{}, map[string]bool{}
	addCM := func(n string) {
		if n != "" && !seenCM[n] && isScopedTo(n, uid) {
			seenCM[n] = true
			cms = append(cms, n)
		}
	}
	addSecret := func(n string) {
		if n != "" && !seenSecret[n] && isScopedTo(n, uid) {
			seenSecret[n] = true
			secrets = append(secrets, n)
		}
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			addCM(v.ConfigMap.Name)
		case v.Secret != nil:
			addSecret(v.Secret.SecretName)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil {
					addCM(src.ConfigMap.Name)
				}
				if src.Secret != nil {
					addSecret(src.Secret.Name)
				}
			}
		}
	}
	containers := slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers)
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil {
				addCM(e.ConfigMapRef.Name)
			}
			if e.SecretRef != nil {
				addSecret(e.SecretRef.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if e.ValueFrom.ConfigMapKeyRef != nil {
				addCM(e.ValueFrom.ConfigMapKeyRef.Name)
			}
			if e.ValueFrom.SecretKeyRef != nil {
				addSecret(e.ValueFrom.SecretKeyRef.Name)
			}
		}
	}
	return cms, secrets
}

// CollectAbandoned deletes the remote pods, and what they own, that are still held by GateObjects
// longer than Config.AbandonedAfter after their creation with no create of theirs running: what a
// create left when the plugin was killed in its middle. It returns how many it removed.
func (p *Plugin) CollectAbandoned(ctx context.Context) (int, error) {
	pods, err := p.lister.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, remote := range pods {
		local := p.sourceOf(remote)
		gated := slices.ContainsFunc(remote.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == GateObjects })
		if local == nil || !gated || time.Since(remote.CreationTimestamp.Time) < p.cfg.AbandonedAfter {
			continue
		}
		done, ok := p.guard.beginCollect(local.UID)
		if !ok {
			continue
		}
		err := p.deleteRemote(ctx, local)
		done()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.log.Warn("removed the remote pod of a create that was cut short", "pod", local.Namespace+"/"+local.Name, "remote", remote.Namespace+"/"+remote.Name,
			"age", time.Since(remote.CreationTimestamp.Time).Round(time.Second))
		removed++
	}
	return removed, errors.Join(errs...)
}

// SweepOrphans deletes remote pods whose local pod no longer exists (or was replaced by one with
// another UID). It needs Config.LocalClient and returns how many it removed. It lists the local
// pods of each namespace it offloads from once (not one GET a pod: 10,000 offloaded pods would
// take the local client's rate limit half an hour), and reads a pod the list lacks again before
// it deletes its remote pod.
func (p *Plugin) SweepOrphans(ctx context.Context) (int, error) {
	if p.cfg.LocalClient == nil {
		return 0, errors.New("orphan sweep needs a local cluster client")
	}
	pods, err := p.lister.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	byNS := map[string][]*corev1.Pod{}
	for _, remote := range pods {
		if src := p.sourceOf(remote); src != nil {
			byNS[src.Namespace] = append(byNS[src.Namespace], src)
		}
	}
	removed := 0
	var errs []error
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		rctx, cancel := p.remoteCtx(ctx)
		list, err := p.cfg.LocalClient.CoreV1().Pods(ns).List(rctx, metav1.ListOptions{})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("list local pods in %s: %w", ns, err))
			continue
		}
		live := make(map[string]types.UID, len(list.Items))
		for i := range list.Items {
			live[list.Items[i].Name] = list.Items[i].UID
		}
		for _, orphan := range byNS[ns] {
			if live[orphan.Name] == orphan.UID {
				continue
			}
			// The list may predate a pod made since: ask for it alone before deleting.
			rctx, cancel := p.remoteCtx(ctx)
			local, err := p.cfg.LocalClient.CoreV1().Pods(ns).Get(rctx, orphan.Name, metav1.GetOptions{})
			cancel()
			switch {
			case err == nil && local.UID == orphan.UID:
				continue
			case err != nil && !apierrors.IsNotFound(err):
				errs = append(errs, fmt.Errorf("get local pod %s/%s: %w", ns, orphan.Name, err))
				continue
			}
			if err := p.Delete(ctx, orphan); err != nil {
				errs = append(errs, err)
				continue
			}
			removed++
		}
	}
	return removed, errors.Join(errs...)
}

// sourceOf returns the local pod a remote pod of this plugin stands for (name, namespace, UID and
// the annotations that name its PVCs), or nil for a pod that is not this plugin's.
func (p *Plugin) sourceOf(remote *corev1.Pod) *corev1.Pod {
	uid, name, ns := remote.Annotations[AnnotSourceUID], remote.Annotations[AnnotSourceName], remote.Annotations[AnnotSourceNS]
	if uid == "" || name == "" || ns == "" || !p.owns(remote) {
		return nil
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(uid), Annotations: remote.Annotations}}
}

// owns tells the remote pods of this plugin from those of another plugin sharing the remote
// cluster: a pod is ours when its namespace is the one we map its local namespace to.
func (p *Plugin) owns(remote *corev1.Pod) bool {
	o := p.cfg.Offloading
	return remote.Namespace == RemoteNamespace(o.NamespacePrefix, o.NamespacePrefixExclusions, remote.Annotations[AnnotSourceNS])
}
