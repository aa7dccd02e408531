package plugin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"golang.org/x/sync/errgroup"
)

// objectsInFlight is how many of one pod's ConfigMaps, Secrets and PVCs are created at once.
const objectsInFlight = 8

// ErrForeignObject is returned when a remote object with the scoped name exists but belongs to
// another local pod.
var ErrForeignObject = errors.New("remote object belongs to another pod")

func (p *Plugin) handleCreate(w http.ResponseWriter, r *http.Request) error {
	var req RetrievedPodData
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	resp, err := p.Create(r.Context(), &req)
	if err != nil {
		return err
	}
	return writeJSON(w, resp)
}

// Create offloads one pod: its namespace, service account, the pod and its scoped ConfigMaps and
// Secrets, owned by the remote pod so the remote garbage collector removes them with it. A retried
// create of the same pod adopts what exists; a failed create removes what this call made. A delete
// of the same pod wins over its create, whichever arrives first (see podGuard): the create then
// fails with ErrPodDeleted and leaves nothing behind.
func (p *Plugin) Create(ctx context.Context, req *RetrievedPodData) (CreateResponse, error) {
	plan, err := Translate(req, p.cfg.Offloading)
	if err != nil {
		return CreateResponse{}, err
	}
	uid := req.Pod.UID
	ctx, done, err := p.guard.beginCreate(ctx, uid)
	if err != nil {
		return CreateResponse{}, fmt.Errorf("create pod %s/%s: %w", req.Pod.Namespace, req.Pod.Name, err)
	}
	defer done()
	resp, err := p.create(ctx, req, plan)
	if p.guard.wasDeleted(uid) {
		// The delete waits for this call to end, then removes whatever it made.
		return CreateResponse{}, fmt.Errorf("create pod %s/%s: %w", req.Pod.Namespace, req.Pod.Name, ErrPodDeleted)
	}
	return resp, err
}

// create runs Create once the pod's turn has come; ctx ends when a delete of the pod arrives.
func (p *Plugin) create(ctx context.Context, req *RetrievedPodData, plan *Plan) (CreateResponse, error) {
	defer p.useNamespace(plan.Namespace)()
	pod, created, err := p.createPodInNamespace(ctx, plan)
	if err != nil {
		return CreateResponse{}, err
	}

	var undo []func(context.Context) error
	rollback := func(cause error) error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.RemoteTimeout)
		defer cancel()
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			if err := undo[i](ctx); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			p.log.Error("rollback incomplete", "pod", plan.Pod.Name, "namespace", plan.Namespace, "err", errors.Join(errs...))
		}
		return cause
	}

	p.hook(hookPodCreated)
	pods := p.client.CoreV1().Pods(plan.Namespace)
	if created {
		undo = append(undo, func(ctx context.Context) error {
			return pods.Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		})
	}
	owner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}

	// The objects are made side by side: they depend on the pod, not on each other. A call under
	// way when another fails runs to its end, so that the rollback knows all that was made; none
	// starts after a failure. what names the object in an error.
	var (
		g      errgroup.Group
		mu     sync.Mutex
		failed atomic.Bool
	)
	g.SetLimit(objectsInFlight)
	make1 := func(what string, ensure func() (bool, error), del func(context.Context) error) {
		g.Go(func() error {
			if failed.Load() {
				return nil
			}
			made, err := ensure()
			if made {
				mu.Lock()
				undo = append(undo, del)
				mu.Unlock()
			}
			if err != nil {
				failed.Store(true)
				if what != "" {
					err = fmt.Errorf("%s: %w", what, err)
				}
			}
			return err
		})
	}
	cms := p.client.CoreV1().ConfigMaps(plan.Namespace)
	for _, cm := range plan.ConfigMaps {
		cm.OwnerReferences = owner
		make1("configmap "+cm.Name,
			func() (bool, error) { return ensure(ctx, p, "create configmap", cm, cms.Create, cms.Get, cms.Update) },
			func(ctx context.Context) error { return cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}) })
	}
	secrets := p.client.CoreV1().Secrets(plan.Namespace)
	for _, s := range plan.Secrets {
		s.OwnerReferences = owner
		make1("secret "+s.Name,
			func() (bool, error) {
				return ensure(ctx, p, "create secret", s, secrets.Create, secrets.Get, secrets.Update)
			},
			func(ctx context.Context) error { return secrets.Delete(ctx, s.Name, metav1.DeleteOptions{}) })
	}
	services := p.client.CoreV1().Services(plan.Namespace)
	for _, svc := range plan.Services {
		svc.OwnerReferences = owner
		make1("service "+svc.Name,
			func() (bool, error) {
				return ensure(ctx, p, "create service", svc, services.Create, services.Get, services.Update)
			},
			func(ctx context.Context) error { return services.Delete(ctx, svc.Name, metav1.DeleteOptions{}) })
	}
	ingresses := p.client.NetworkingV1().Ingresses(plan.Namespace)
	for _, ing := range plan.Ingresses {
		ing.OwnerReferences = owner
		make1("ingress "+ing.Name,
			func() (bool, error) {
				return ensure(ctx, p, "create ingress", ing, ingresses.Create, ingresses.Get, ingresses.Update)
			},
			func(ctx context.Context) error { return ingresses.Delete(ctx, ing.Name, metav1.DeleteOptions{}) })
	}
	pvcs := p.client.CoreV1().PersistentVolumeClaims(plan.Namespace)
	for _, pvc := range plan.PVCs {
		make1("", // ensurePVC's errors name the claim
			func() (bool, error) { return p.ensurePVC(ctx, pvc) },
			func(ctx context.Context) error { return pvcs.Delete(ctx, pvc.Name, metav1.DeleteOptions{}) })
	}
	if err := g.Wait(); err != nil {
		return CreateResponse{}, rollback(err)
	}
	if err := p.releaseGate(ctx, pod); err != nil {
		return CreateResponse{}, rollback(err)
	}
	p.hook(hookObjectsCreated)
	if err := ctx.Err(); err != nil { // a delete arrived after the last remote call
		return CreateResponse{}, rollback(err)
	}
	p.guard.markSeen(req.Pod.UID)
	p.log.Info("pod offloaded", "pod", req.Pod.Namespace+"/"+req.Pod.Name, "remote", plan.Namespace+"/"+pod.Name,
		"configmaps", len(plan.ConfigMaps), "secrets", len(plan.Secrets), "pvcs", len(plan.PVCs), "inbound", len(plan.Ingresses) > 0, "adopted", !created)
	return CreateResponse{PodUID: string(req.Pod.UID), PodJID: string(pod.UID)}, nil
}

// createPodInNamespace makes the pod's namespace and service account if need be, then creates or
// adopts the pod. A namespace this plugin has seen exist is not asked for again (one API call
// fewer per create): if it was removed behind the plugin's back since, the pod's create says so
// (not found, or terminating) and the namespace is made anew, once.
func (p *Plugin) createPodInNamespace(ctx context.Context, plan *Plan) (*corev1.Pod, bool, error) {
	for {
		known := p.namespaceKnown(plan.Namespace)
		if !known {
			if err := p.ensureNamespace(ctx, plan.Namespace); err != nil {
				return nil, false, err
			}
			p.setNamespaceKnown(plan.Namespace, true)
		}
		var err error
		if plan.ServiceAccount != "" {
			err = p.ensureServiceAccount(ctx, plan.Namespace, plan.ServiceAccount)
		}
		if err == nil {
			p.hook(hookBeforePod)
			var (
				pod     *corev1.Pod
				created bool
			)
			if pod, created, err = p.createOrAdoptPod(ctx, plan.Pod); err == nil {
				return pod, created, nil
			}
		}
		if !known || !namespaceGone(err) {
			return nil, false, err
		}
		p.setNamespaceKnown(plan.Namespace, false)
		p.log.Info("the remote namespace was removed since the plugin last saw it; making it anew", "namespace", plan.Namespace, "err", err)
	}
}

// namespaceGone tells whether a create was refused because its namespace does not exist or is
// being deleted.
func namespaceGone(err error) bool {
	if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
		return true
	}
	var st apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &st) {
		return false
	}
	d := st.Status().Details
	return d != nil && d.Kind == "namespaces"
}

// createOrAdoptPod creates the remote pod, or returns the one a previous attempt made for the same
// local pod.
func (p *Plugin) createOrAdoptPod(ctx context.Context, want *corev1.Pod) (pod *corev1.Pod, created bool, err error) {
	if old := p.cachedBySourceUID(want.Annotations[AnnotSourceUID]); old != nil && old.Namespace == want.Namespace && old.Name != want.Name {
		// Offloaded by the Python plugin before the switch, under its name: that pod runs on.
		return old, false, nil
	}
	pods := p.client.CoreV1().Pods(want.Namespace)
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	pod, err = pods.Create(rctx, want, metav1.CreateOptions{})
	if sa := missingServiceAccount(err); sa != "" {
		// The namespace exists but the controller-manager has not made its ServiceAccount yet (a
		// new namespace, or one whose account was just removed): a passing state, not a refusal.
		p.log.Info("waiting for the remote ServiceAccount before creating the pod", "namespace", want.Namespace, "serviceaccount", sa)
		if werr := p.waitServiceAccount(ctx, want.Namespace, sa); werr != nil {
			return nil, false, werr
		}
		pod, err = pods.Create(rctx, want, metav1.CreateOptions{})
	}
	if err == nil {
		return pod, true, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, false, p.remoteErr("create pod", fmt.Errorf("create pod %s/%s: %w", want.Namespace, want.Name, err))
	}
	pod, err = pods.Get(rctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return nil, false, p.remoteErr("get pod", fmt.Errorf("get existing pod %s/%s: %w", want.Namespace, want.Name, err))
	}
	if pod.Annotations[AnnotSourceUID] != want.Annotations[AnnotSourceUID] {
		return nil, false, fmt.Errorf("pod %s/%s: %w", want.Namespace, want.Name, ErrForeignObject)
	}
	return pod, false, nil
}

// releaseGate removes GateObjects from the pod (made by this call or by an earlier attempt that
// was cut short), so that the scheduler may place it now that its objects exist.
func (p *Plugin) releaseGate(ctx context.Context, pod *corev1.Pod) error {
	i := slices.IndexFunc(pod.Spec.SchedulingGates, func(g corev1.PodSchedulingGate) bool { return g.Name == GateObjects })
	if i < 0 {
		return nil
	}
	// The test guards against removing another gate if the list changed since it was read.
	patch := fmt.Sprintf(`[{"op":"test","path":"/spec/schedulingGates/%d/name","value":%q},{"op":"remove","path":"/spec/schedulingGates/%d"}]`, i, GateObjects, i)
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	_, err := p.client.CoreV1().Pods(pod.Namespace).Patch(rctx, pod.Name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return p.remoteErr("release pod", fmt.Errorf("release pod %s/%s for scheduling: %w", pod.Namespace, pod.Name, err))
	}
	return nil
}

// object is what ensure needs of a pod's object.
type object interface {
	*corev1.ConfigMap | *corev1.Secret | *corev1.Service | *networkingv1.Ingress
	metav1.Object
}

// ensure creates obj, or brings an existing object of this pod up to date. It reports whether it
// created the object, so a rollback removes only what this call made.
func ensure[T object](
	ctx context.Context, p *Plugin, verb string, obj T,
	create func(context.Context, T, metav1.CreateOptions) (T, error),
	get func(context.Context, string, metav1.GetOptions) (T, error),
	update func(context.Context, T, metav1.UpdateOptions) (T, error),
) (bool, error) {
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	_, err := create(rctx, obj, metav1.CreateOptions{})
	if err == nil {
		return true, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return false, p.remoteErr(verb, err)
	}
	have, err := get(rctx, obj.GetName(), metav1.GetOptions{})
	if err != nil {
		return false, p.remoteErr(verb, err)
	}
	if !samePod(have, obj) {
		return false, ErrForeignObject
	}
	obj.SetResourceVersion(have.GetResourceVersion())
	if hs, ok := any(have).(*corev1.Service); ok { // the cluster IPs are the apiserver's, and immutable
		ws := any(obj).(*corev1.Service)
		ws.Spec.ClusterIP, ws.Spec.ClusterIPs = hs.Spec.ClusterIP, hs.Spec.ClusterIPs
	}
	if _, err := update(rctx, obj, metav1.UpdateOptions{}); err != nil {
		return false, p.remoteErr(verb, err)
	}
	return false, nil
}

// samePod tells whether an existing remote object belongs to the same local pod as the one
// wanted: by the pod UID this plugin writes in an annotation, or by the pod UID label both plugins
// write (the Python plugin's ConfigMaps and Secrets carry their own local UID in the annotation).
func samePod(have, want metav1.Object) bool {
	if have.GetAnnotations()[AnnotSourceUID] == want.GetAnnotations()[AnnotSourceUID] {
		return true
	}
	l := have.GetLabels()[LabelSourceUID]
	return l != "" && l == want.GetLabels()[LabelSourceUID]
}

func (p *Plugin) ensureNamespace(ctx context.Context, name string) error {
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	nss := p.client.CoreV1().Namespaces()
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		ns, err := nss.Get(rctx, name, metav1.GetOptions{})
		if err == nil && ns.DeletionTimestamp == nil {
			return nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return p.remoteErr("get namespace", fmt.Errorf("get namespace %s: %w", name, err))
		}
		if apierrors.IsNotFound(err) {
			break
		}
		// Terminating (emptied by this plugin or by someone else): it takes no new pods, so wait
		// until it is gone and make it anew.
		select {
		case <-rctx.Done():
			return fmt.Errorf("namespace %s is still terminating: %w", name, rctx.Err())
		case <-time.After(delay):
		}
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelOffloaded: ValueOffloaded}}}
	if _, err := nss.Create(rctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return p.remoteErr("create namespace", fmt.Errorf("create namespace %s: %w", name, err))
	}
	// A new namespace gets its default ServiceAccount from the controller-manager shortly after;
	// pods are refused until then.
	return p.waitServiceAccount(ctx, name, "default")
}

func (p *Plugin) ensureServiceAccount(ctx context.Context, namespace, name string) error {
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	sa := &corev1.ServiceAccount{
		ObjectMeta:                   metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelOffloaded: ValueOffloaded}},
		AutomountServiceAccountToken: new(false),
	}
	_, err := p.client.CoreV1().ServiceAccounts(namespace).Create(rctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return p.remoteErr("create serviceaccount", fmt.Errorf("create serviceaccount %s/%s: %w", namespace, name, err))
	}
	return nil
}

// saNotFound matches the admission refusal of a pod whose ServiceAccount does not exist (yet):
// 403 `pods "x" is forbidden: error looking up service account ns/name: serviceaccount "name" not found`.
var saNotFound = regexp.MustCompile(`serviceaccount "([^"]+)" not found`)

// missingServiceAccount returns the name of the ServiceAccount whose absence refused a pod create.
func missingServiceAccount(err error) string {
	if !apierrors.IsForbidden(err) {
		return ""
	}
	if m := saNotFound.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return ""
}

func (p *Plugin) waitServiceAccount(ctx context.Context, namespace, name string) error {
	rctx, cancel := p.remoteCtx(ctx)
	defer cancel()
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		_, err := p.client.CoreV1().ServiceAccounts(namespace).Get(rctx, name, metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return p.remoteErr("get serviceaccount", err)
		}
		select {
		case <-rctx.Done():
			return fmt.Errorf("serviceaccount %s/%s never appeared: %w", namespace, name, rctx.Err())
		case <-time.After(delay):
		}
	}
}
