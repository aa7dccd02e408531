package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// What the shadow templates label their objects with (manifests/shadow-pod*.tmpl): the
// Deployment's name as component, the project as part-of.
const (
	labelComponent = "app.kubernetes.io/component"
	labelPartOf    = "app.kubernetes.io/part-of"
	valuePartOf    = "interlink-k8s-mesh"
)

// Modes of the shadow leftover sweep (option offloading.shadow_leftovers).
const (
	LeftoversDelete = "delete"  // delete them (the default with a local client)
	LeftoversDryRun = "dry-run" // log and count them, delete nothing
	LeftoversOff    = "off"
)

// DefaultShadowNamespaceSuffixes are the suffixes InterLink's VK gives the namespaces of its
// shadow objects: "-wstunnel" (f6321757), "-shadow" (its open PR #550).
var DefaultShadowNamespaceSuffixes = []string{"-wstunnel", "-shadow"}

// DefaultLeftoverGrace is how old a shadow Secret must be before its missing Deployment makes it
// a leftover: the VK applies a template's objects one by one, the Secret before the Deployment.
const DefaultLeftoverGrace = 30 * time.Second

var secretsResource = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// SweepShadowLeftovers removes from the local cluster what the VK's shadow templates create and
// the VK never deletes: it deletes a shadow's Deployment, Service, Ingress and ConfigMap by name,
// never a Secret of the template, so every offloaded pod leaves its shadow key Secret behind. A
// Secret is a leftover when it lies in a shadow namespace (ShadowNamespaceSuffixes), carries the
// templates' labels, is older than Config.LeftoverGrace and the Deployment its component label names is
// gone. Secrets are read as metadata only (never their data) and deleted with their UID as a
// precondition. In dry-run mode it only counts. It returns how many it removed (or would have).
func (p *Plugin) SweepShadowLeftovers(ctx context.Context) (int, error) {
	if p.cfg.LocalClient == nil || p.cfg.LocalMetadata == nil {
		return 0, errors.New("shadow leftover sweep needs a local cluster client")
	}
	mode := p.cfg.ShadowLeftovers
	if mode == LeftoversOff {
		return 0, nil
	}
	lctx, cancel := p.remoteCtx(ctx)
	nss, err := p.cfg.LocalClient.CoreV1().Namespaces().List(lctx, metav1.ListOptions{})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("list local namespaces: %w", err)
	}
	selector := labels.Set{labelPartOf: valuePartOf}.String()
	removed := 0
	var errs []error
	for _, ns := range nss.Items {
		if !p.shadowNamespace(ns.Name) {
			continue
		}
		lctx, cancel := p.remoteCtx(ctx)
		secrets, err := p.cfg.LocalMetadata.Resource(secretsResource).Namespace(ns.Name).List(lctx, metav1.ListOptions{LabelSelector: selector})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("list shadow secrets in %s: %w", ns.Name, err))
			continue
		}
		for _, s := range secrets.Items {
			component := s.Labels[labelComponent]
			if component == "" || time.Since(s.CreationTimestamp.Time) < p.cfg.LeftoverGrace || s.DeletionTimestamp != nil {
				continue
			}
			lctx, cancel := p.remoteCtx(ctx)
			_, err := p.cfg.LocalClient.AppsV1().Deployments(ns.Name).Get(lctx, component, metav1.GetOptions{})
			cancel()
			switch {
			case err == nil:
				continue
			case !apierrors.IsNotFound(err):
				errs = append(errs, fmt.Errorf("get shadow deployment %s/%s: %w", ns.Name, component, err))
				continue
			}
			if mode == LeftoversDryRun {
				p.log.Info("shadow leftover (dry run: kept)", "kind", "Secret", "namespace", ns.Name, "name", s.Name, "deployment", component)
				p.metrics.leftovers.WithLabelValues("Secret", LeftoversDryRun).Inc()
				removed++
				continue
			}
			uid := s.UID
			lctx, cancel = p.remoteCtx(ctx)
			err = p.cfg.LocalClient.CoreV1().Secrets(ns.Name).Delete(lctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			cancel()
			switch {
			case err == nil:
				p.log.Info("removed a shadow leftover", "kind", "Secret", "namespace", ns.Name, "name", s.Name, "deployment", component)
				p.metrics.leftovers.WithLabelValues("Secret", LeftoversDelete).Inc()
				removed++
			case apierrors.IsNotFound(err), apierrors.IsConflict(err):
				// Gone already, or replaced by a Secret of a new shadow of the same name.
			default:
				errs = append(errs, fmt.Errorf("delete shadow secret %s/%s: %w", ns.Name, s.Name, err))
			}
		}
	}
	return removed, errors.Join(errs...)
}

// shadowNamespace reports whether ns is one where the VK puts shadow objects.
func (p *Plugin) shadowNamespace(ns string) bool {
	for _, suffix := range p.cfg.ShadowNamespaceSuffixes {
		if strings.HasSuffix(ns, suffix) && len(ns) > len(suffix) {
			return true
		}
	}
	return false
}
