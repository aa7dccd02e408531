package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// useNamespace marks a create in flight in ns until the returned function is called. It waits
// while a removal of ns is being sent.
func (p *Plugin) useNamespace(ns string) func() {
	n := &p.nss
	n.mu.Lock()
	defer n.mu.Unlock()
	n.busy[ns]++
	delete(n.emptySince, ns)
	return func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.busy[ns]--; n.busy[ns] == 0 {
			delete(n.busy, ns)
		}
	}
}

// namespaceKnown tells whether this plugin has seen the remote namespace ns exist, and not
// removed it since.
func (p *Plugin) namespaceKnown(ns string) bool {
	n := &p.nss
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.known[ns]
	return ok
}

func (p *Plugin) setNamespaceKnown(ns string, known bool) {
	n := &p.nss
	n.mu.Lock()
	defer n.mu.Unlock()
	if known {
		n.known[ns] = struct{}{}
	} else {
		delete(n.known, ns)
	}
}

// RemoveEmptyNamespaces deletes the remote namespaces this plugin created (labelled as offloading,
// named with its prefix) that have held none of its pods, and seen no create, for
// Config.EmptyNamespaceTTL. It returns how many it deleted.
func (p *Plugin) RemoveEmptyNamespaces(ctx context.Context) (int, error) {
	if p.cfg.EmptyNamespaceTTL < 0 {
		return 0, nil
	}
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	list, err := p.client.CoreV1().Namespaces().List(rctx, metav1.ListOptions{LabelSelector: labels.Set{LabelOffloaded: ValueOffloaded}.String()})
	if err != nil {
		return 0, p.remoteErr("list namespaces", fmt.Errorf("list namespaces: %w", err))
	}
	removed := 0
	var errs []error
	for i := range list.Items {
		ns := &list.Items[i]
		// Without a prefix, remote namespaces carry the local names and may hold anything:
		// the plugin never removes them.
		if ns.DeletionTimestamp != nil || p.cfg.Offloading.NamespacePrefix == "" || !strings.HasPrefix(ns.Name, p.cfg.Offloading.NamespacePrefix+"-") {
			continue
		}
		pods, err := p.lister.Pods(ns.Name).List(labels.Everything())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ok, err := p.removeIfIdle(ctx, ns, len(pods) > 0)
		if err != nil {
			errs = append(errs, err)
		} else if ok {
			removed++
		}
	}
	return removed, errors.Join(errs...)
}

// removeIfIdle deletes ns if it has been idle for the TTL, holding the tracker's lock so that no
// create starts using it meanwhile.
func (p *Plugin) removeIfIdle(ctx context.Context, ns *corev1.Namespace, hasPods bool) (bool, error) {
	n := &p.nss
	n.mu.Lock()
	defer n.mu.Unlock()
	if hasPods || n.busy[ns.Name] > 0 {
		delete(n.emptySince, ns.Name)
		return false, nil
	}
	since, seen := n.emptySince[ns.Name]
	if !seen {
		n.emptySince[ns.Name] = time.Now()
		return false, nil
	}
	if time.Since(since) < p.cfg.EmptyNamespaceTTL {
		return false, nil
	}
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	err := p.client.CoreV1().Namespaces().Delete(rctx, ns.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &ns.UID}})
	delete(n.emptySince, ns.Name)
	delete(n.known, ns.Name) // whatever the answer: the next create asks
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return false, p.remoteErr("delete namespace", fmt.Errorf("delete namespace %s: %w", ns.Name, err))
	}
	if err == nil {
		p.log.Info("removed an empty remote namespace", "namespace", ns.Name, "idle", time.Since(since).Round(time.Second))
	}
	return err == nil, nil
}
