package plugin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

// TestSweepShadowLeftovers: on the real test cluster playing the local one, the sweep deletes
// exactly the shadow Secret whose Deployment is gone, in a shadow namespace, with the templates'
// labels, old enough; dry run only counts; a second sweep finds nothing.
func TestSweepShadowLeftovers(t *testing.T) {
	c := testcluster.Get(t)
	ctx := t.Context()
	id := strings.ReplaceAll(string(uuid.NewUUID()), "-", "")[:8]
	shadowNS, otherNS := "ss"+id+"-wstunnel", "ss"+id
	for _, ns := range []string{shadowNS, otherNS} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = c.Client.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), ns, metav1.DeleteOptions{})
		})
	}
	secret := func(ns, name string, labels map[string]string) {
		t.Helper()
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, StringData: map[string]string{"privatekey": "k"}}
		if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	shadow := func(component string) map[string]string {
		return map[string]string{labelComponent: component, labelPartOf: valuePartOf}
	}
	secret(shadowNS, "gone-mesh", shadow("gone"))                          // the leftover
	secret(shadowNS, "live-mesh", shadow("live"))                          // its Deployment exists
	secret(shadowNS, "foreign", map[string]string{labelComponent: "gone"}) // not the templates'
	secret(otherNS, "gone-mesh", shadow("gone"))                           // not a shadow namespace
	replicas := int32(0)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "live"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "live"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "live"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.test/none"}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().Deployments(shadowNS).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The sweep runs as a user holding only manifests/local-sweep-rbac.yaml's ClusterRole.
	local, md := sweepUser(t, c, id)

	exists := func(ns, name string) bool {
		_, err := c.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	sweep := func(mode string, grace time.Duration) (int, *prometheus.Registry) {
		t.Helper()
		reg := prometheus.NewRegistry()
		p, err := New(Config{Client: c.Client, LocalClient: local, LocalMetadata: md, ShadowLeftovers: mode,
			LeftoverGrace: grace, Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		n, err := p.SweepShadowLeftovers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n, reg
	}
	if n, _ := sweep(LeftoversDelete, time.Hour); n != 0 || !exists(shadowNS, "gone-mesh") {
		t.Errorf("a Secret younger than the grace: %d removed", n)
	}
	n, reg := sweep(LeftoversDryRun, time.Nanosecond)
	if n != 1 || !exists(shadowNS, "gone-mesh") {
		t.Errorf("dry run: %d counted, leftover still there %v; want 1 counted, kept", n, exists(shadowNS, "gone-mesh"))
	}
	if got := metricOf(t, reg, "Secret", LeftoversDryRun); got != 1 {
		t.Errorf("dry-run metric %v, want 1", got)
	}
	n, reg = sweep(LeftoversDelete, time.Nanosecond)
	if n != 1 || exists(shadowNS, "gone-mesh") {
		t.Errorf("delete: %d removed, leftover still there %v; want 1 removed", n, exists(shadowNS, "gone-mesh"))
	}
	if got := metricOf(t, reg, "Secret", LeftoversDelete); got != 1 {
		t.Errorf("delete metric %v, want 1", got)
	}
	for _, keep := range [][2]string{{shadowNS, "live-mesh"}, {shadowNS, "foreign"}, {otherNS, "gone-mesh"}} {
		if !exists(keep[0], keep[1]) {
			t.Errorf("%s/%s was removed", keep[0], keep[1])
		}
	}
	if n, _ := sweep(LeftoversDelete, time.Nanosecond); n != 0 {
		t.Errorf("second sweep removed %d", n)
	}
	if n, _ := sweep(LeftoversOff, time.Nanosecond); n != 0 {
		t.Errorf("off: %d", n)
	}
	if _, err := New(Config{Client: c.Client, ShadowLeftovers: "sometimes"}); err == nil {
		t.Error("an unknown mode was accepted")
	}
}

// sweepUser applies manifests/local-sweep-rbac.yaml's ClusterRole (renamed for the test), binds
// it to a user of its own and returns clients acting as that user alone.
func sweepUser(t *testing.T, c *testcluster.Cluster, id string) (kubernetes.Interface, metadata.Interface) {
	t.Helper()
	ctx := t.Context()
	b, err := os.ReadFile(filepath.Join("..", "manifests", "local-sweep-rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(b, &role); err != nil {
		t.Fatalf("manifests/local-sweep-rbac.yaml: %v", err)
	}
	role.Name += "-" + id
	user := "sweep-" + id
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.WithoutCancel(ctx)
		_ = c.Client.RbacV1().ClusterRoleBindings().Delete(bg, role.Name, metav1.DeleteOptions{})
		_ = c.Client.RbacV1().ClusterRoles().Delete(bg, role.Name, metav1.DeleteOptions{})
	})
	rc := rest.CopyConfig(c.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	// The role grants list (which the sweep uses for metadata only), never get, on Secrets.
	if _, err := kc.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		t.Fatalf("list secrets as %s: %v", user, err)
	}
	if _, err := kc.CoreV1().Secrets("default").Get(ctx, "anything", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("get a secret as %s: %v, want forbidden", user, err)
	}
	return kc, md
}

// metricOf returns the leftover counter of kind and mode in reg.
func metricOf(t *testing.T, reg *prometheus.Registry, kind, mode string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "interlink_plugin_shadow_leftovers_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["kind"] == kind && l["mode"] == mode {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no interlink_plugin_shadow_leftovers_total{kind=%q,mode=%q}", kind, mode)
	return 0
}
