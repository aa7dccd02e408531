package plugin

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/syncbuf"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

func TestNamespaceGone(t *testing.T) {
	terminating := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", nil)
	terminating.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"namespace not found", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "ns"), true},
		{"namespace terminating", terminating, true},
		{"pod not found", apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "p"), false},
		{"other refusal", apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", nil), false},
		{"not an API error", context.DeadlineExceeded, false},
	} {
		if got := namespaceGone(tc.err); got != tc.want {
			t.Errorf("%s: namespaceGone = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestCreateRemembersNamespace: the plugin asks for a pod's namespace once, and makes it anew when
// it was removed behind its back, whether still terminating or gone.
func TestCreateRemembersNamespace(t *testing.T) {
	t.Parallel()
	var asked atomic.Int64 // GETs of one namespace
	var logs syncbuf.Buffer
	nsPath := regexp.MustCompile(`^/api/v1/namespaces/[^/]+$`)
	s := serve(t, func(cfg *Config) {
		rc := rest.CopyConfig(testcluster.Get(t).Config)
		rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.Method == http.MethodGet && nsPath.MatchString(r.URL.Path) {
					asked.Add(1)
				}
				return rt.RoundTrip(r)
			})
		}
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Client = client
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	nss := s.cluster.Client.CoreV1().Namespaces()
	remote := s.remoteNS("remember")
	nsUID := func() string {
		ns, err := nss.Get(t.Context(), remote, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return string(ns.UID)
	}

	s.create(t, runnable("first", "remember"))
	first, firstUID := asked.Load(), nsUID()
	if first == 0 {
		t.Fatal("the first create never asked for its namespace")
	}
	s.create(t, runnable("second", "remember"))
	if n := asked.Load() - first; n != 0 {
		t.Errorf("the second create in the same namespace asked for it %d times, want 0", n)
	}

	// Removed behind the plugin's back: the next create finds it terminating, waits and makes it anew.
	if err := nss.Delete(t.Context(), remote, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	third := runnable("third", "remember")
	s.create(t, third)
	if uid := nsUID(); uid == firstUID {
		t.Errorf("namespace %s still has UID %s after its removal", remote, uid)
	}
	if _, err := s.remotePod(t, &third.Pod); err != nil {
		t.Errorf("pod created after the namespace was removed while terminating: %v", err)
	}

	// Removed and gone: the pod's create finds no namespace and makes it anew.
	secondUID := nsUID()
	if err := nss.Delete(t.Context(), remote, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "namespace "+remote+" gone", func(ctx context.Context) (bool, error) {
		_, err := nss.Get(ctx, remote, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	fourth := runnable("fourth", "remember")
	s.create(t, fourth)
	if uid := nsUID(); uid == secondUID {
		t.Errorf("namespace %s still has UID %s after it was gone", remote, uid)
	}
	if _, err := s.remotePod(t, &fourth.Pod); err != nil {
		t.Errorf("pod created after the namespace was gone: %v", err)
	}
	// Both removals were found by the pod's create (terminating, then not found), not by a Get.
	if n := strings.Count(logs.String(), "making it anew"); n != 2 {
		t.Errorf("the plugin said %d times that it made the namespace anew, want 2; logs:\n%s", n, logs.String())
	}
}
