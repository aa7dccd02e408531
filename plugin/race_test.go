package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/logtest"
)

// nothingLeft waits until no remote pod, ConfigMap or Secret of the local pod is left (the pod may
// linger while its graceful deletion completes).
func (s *served) nothingLeft(t *testing.T, local *corev1.Pod) {
	t.Helper()
	poll(t, "nothing of "+local.Name+" left remotely", func(ctx context.Context) (bool, error) {
		_, err := s.remotePod(t, local)
		cms, secrets := s.scoped(t, local)
		return apierrors.IsNotFound(err) && len(cms)+len(secrets) == 0, nil
	})
	// And it stays so: nothing recreates it behind the delete.
	time.Sleep(300 * time.Millisecond)
	if _, err := s.remotePod(t, local); !apierrors.IsNotFound(err) {
		t.Errorf("the remote pod of %s came back after its delete (err %v)", local.Name, err)
	}
}

// deleteDuring makes the create stop at point and sends the pod's delete there; the create goes on
// only once the delete has been received (its tombstone is set).
func (s *served) deleteDuring(t *testing.T, point string, local *corev1.Pod) <-chan int {
	t.Helper()
	codes := make(chan int, 1)
	var once sync.Once
	s.setTestHook(func(p string) {
		if p != point {
			return
		}
		once.Do(func() {
			go func() {
				code, body := s.call(t, "POST", "/delete", local)
				if code != http.StatusOK {
					t.Errorf("delete during create: %d %s", code, body)
				}
				codes <- code
			}()
			for deadline := time.Now().Add(10 * time.Second); !s.guard.wasDeleted(local.UID); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Error("the delete sent during the create was never received")
					return
				}
			}
		})
	})
	return codes
}

// TestDeleteRacingCreate forces each interleaving of a delete with the create of the same pod, as
// InterLink's VK produces them (it sends deletes asynchronously and forgets the pod): the delete
// always wins, nothing of the pod survives remotely, and the create says it lost.
func TestDeleteRacingCreate(t *testing.T) {
	t.Parallel()
	s := serve(t)
	t.Run("delete before create", func(t *testing.T) {
		req := runnable("early", "race")
		if code, body := s.call(t, "POST", "/delete", req.Pod); code != http.StatusOK {
			t.Fatalf("delete of a pod never created: %d %s, want 200", code, body)
		}
		code, body := s.call(t, "POST", "/create", req)
		if code != http.StatusGone {
			t.Errorf("create after its delete: %d %s, want 410", code, body)
		}
		s.nothingLeft(t, &req.Pod)
	})
	for _, point := range []string{hookPodCreated, hookObjectsCreated} {
		t.Run("delete at "+point, func(t *testing.T) {
			req := runnable("mid", "race")
			deleted := s.deleteDuring(t, point, &req.Pod)
			defer s.setTestHook(nil)
			code, body := s.call(t, "POST", "/create", req)
			if code != http.StatusGone {
				t.Errorf("create overtaken by its delete: %d %s, want 410", code, body)
			}
			var e ErrorResponse
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Errorf("error body %s", body)
			}
			if c := <-deleted; c != http.StatusOK {
				t.Fatalf("delete: %d", c)
			}
			s.nothingLeft(t, &req.Pod)
		})
	}
}

// TestDeleteRacingCreateRounds replays the reported failure: create and delete of the same pod sent
// together, 20 rounds, through the HTTP API. Whatever the interleaving, nothing survives.
func TestDeleteRacingCreateRounds(t *testing.T) {
	t.Parallel()
	s := serve(t)
	const rounds = 20
	var wg sync.WaitGroup
	reqs := make([]RetrievedPodData, rounds)
	for i := range reqs {
		reqs[i] = runnable(fmt.Sprintf("round-%d", i), "rounds")
		wg.Add(2)
		go func() {
			defer wg.Done()
			if code, body := s.call(t, "POST", "/create", reqs[i]); code != http.StatusOK && code != http.StatusGone {
				t.Errorf("round %d create: %d %s, want 200 or 410", i, code, body)
			}
		}()
		go func() {
			defer wg.Done()
			if code, body := s.call(t, "POST", "/delete", reqs[i].Pod); code != http.StatusOK {
				t.Errorf("round %d delete: %d %s", i, code, body)
			}
		}()
	}
	wg.Wait()
	for i := range reqs {
		s.nothingLeft(t, &reqs[i].Pod)
	}
}

// TestStatusDuringCreate: a status poll while the create is still running reports the pod as being
// created, never as vanished; once the create returns, the pod is reported from the remote side.
func TestStatusDuringCreate(t *testing.T) {
	t.Parallel()
	s := serve(t)
	req := runnable("slow", "creating")
	var (
		mu   sync.Mutex
		seen []PodStatus
	)
	s.setTestHook(func(p string) {
		if p == hookBeforePod || p == hookPodCreated || p == hookObjectsCreated {
			st := s.status(t, req.Pod)[0]
			mu.Lock()
			seen = append(seen, st)
			mu.Unlock()
		}
	})
	s.create(t, req)
	s.setTestHook(nil)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Fatalf("status taken at %d points, want 3", len(seen))
	}
	// Before the remote pod exists, the pod is being created, and says so.
	for _, c := range append(seen[0].InitContainers, seen[0].Containers...) {
		if c.State.Waiting == nil || c.State.Waiting.Reason != ReasonCreating {
			t.Errorf("before the remote pod exists: %s is %+v, want waiting %s", c.Name, c.State, ReasonCreating)
		}
	}
	for i, st := range seen {
		// Once the remote pod exists it may really run (kwok completes init containers at once);
		// what must never be said is that it vanished.
		for _, c := range append(st.InitContainers, st.Containers...) {
			if term := c.State.Terminated; term != nil && term.Reason == ReasonRemotePodGone {
				t.Errorf("point %d: %s reported vanished while its create runs: %s", i, c.Name, term.Message)
			}
		}
		if len(st.Containers) != len(req.Pod.Spec.Containers) || len(st.InitContainers) != len(req.Pod.Spec.InitContainers) {
			t.Errorf("point %d: %d containers and %d init containers reported, want the local pod's %d and %d", i,
				len(st.Containers), len(st.InitContainers), len(req.Pod.Spec.Containers), len(req.Pod.Spec.InitContainers))
		}
	}
	poll(t, "status after the create", func(ctx context.Context) (bool, error) {
		st := s.status(t, req.Pod)[0]
		return st.JID != "" && len(st.Containers) == 1 && st.Containers[0].State.Terminated == nil, nil
	})
}

// TestCreateWaitsForServiceAccount: a namespace whose ServiceAccount is missing for a moment (a new
// namespace before the controller-manager makes "default", or an account being recreated) refuses
// pods with 403. The create waits for the account instead of answering a refusal that looks final.
func TestCreateWaitsForServiceAccount(t *testing.T) {
	t.Parallel()
	logs, logger := logtest.New(t)
	s := serve(t, func(c *Config) { c.Logger = logger })
	req := runnable("web", "sa-missing")
	req.Pod.Spec.ServiceAccountName = "robot"
	sas := s.cluster.Client.CoreV1().ServiceAccounts(s.remoteNS("sa-missing"))
	pods := s.cluster.Client.CoreV1().Pods(s.remoteNS("sa-missing"))
	back := make(chan error, 1)
	s.setTestHook(func(p string) {
		if p != hookBeforePod {
			return
		}
		// The account the plugin just ensured goes away right before the pod is created, and
		// comes back a second later.
		ctx := context.Background()
		if err := sas.Delete(ctx, "robot", metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete the ServiceAccount: %v", err)
		}
		// Admission reads accounts from a cache: wait until it refuses pods, so that the create
		// meets the refusal rather than racing it.
		probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: corev1.PodSpec{
			ServiceAccountName: "robot", Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
		poll(t, "admission refusing pods of a missing ServiceAccount", func(ctx context.Context) (bool, error) {
			_, err := pods.Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return missingServiceAccount(err) == "robot", nil
		})
		go func() {
			time.Sleep(time.Second)
			_, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{})
			back <- err
		}()
	})
	defer s.setTestHook(nil)
	s.create(t, req)
	if err := <-back; err != nil {
		t.Fatalf("recreate the ServiceAccount: %v", err)
	}
	if _, err := s.remotePod(t, &req.Pod); err != nil {
		t.Fatalf("remote pod after the wait: %v", err)
	}
	if n := logs.Count("waiting for the remote ServiceAccount", "serviceaccount=robot"); n != 1 {
		t.Errorf("%d waits for the ServiceAccount logged, want 1", n)
	}
}

// blockAt makes the plugin's creates stop at point until the returned release is called, and
// returns a channel that receives once a create has reached it.
func (s *served) blockAt(t *testing.T, point string) (reached <-chan struct{}, release func()) {
	t.Helper()
	r := make(chan struct{}, 1)
	gate := make(chan struct{})
	var once sync.Once
	s.setTestHook(func(p string) {
		if p == point {
			r <- struct{}{}
			<-gate
		}
	})
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return r, release
}

// sendAndForget sends a call whose answer nobody waits for, as to a plugin that was killed.
func (s *served) sendAndForget(t *testing.T, path string, body any) {
	t.Helper()
	b := mustJSON(t, body)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "POST", "http://plugin"+path, bytes.NewReader(b))
		if resp, err := s.http.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
}

// gated reports whether the remote pod is still held by the plugin's scheduling gate.
func gated(p *corev1.Pod) bool {
	for _, g := range p.Spec.SchedulingGates {
		if g.Name == GateObjects {
			return true
		}
	}
	return false
}

// TestCreateCutShort: a plugin stopped in the middle of a create (killed: it never answers) has
// left a pod without its ConfigMaps and Secrets. That pod is held by a scheduling gate, so it never
// runs without them; a retried create, by another plugin process, completes it; with no retry,
// another plugin process collects it.
func TestCreateCutShort(t *testing.T) {
	t.Parallel()
	dead := serve(t)
	same := func(c *Config) { c.Offloading.NamespacePrefix = dead.prefix }
	reached, release := dead.blockAt(t, hookPodCreated)

	t.Run("retry completes it", func(t *testing.T) {
		req := runnable("retried", "cut")
		dead.sendAndForget(t, "/create", req)
		<-reached
		remote, err := dead.remotePod(t, &req.Pod)
		if err != nil {
			t.Fatal(err)
		}
		if !gated(remote) {
			t.Fatalf("the pod exists without its objects and is not held: gates %v", remote.Spec.SchedulingGates)
		}
		if cms, secrets := dead.scoped(t, &req.Pod); len(cms)+len(secrets) != 0 {
			t.Fatalf("objects made before the cut: %d ConfigMaps, %d Secrets", len(cms), len(secrets))
		}
		time.Sleep(500 * time.Millisecond) // the scheduler would have placed an ungated pod by now
		if remote, _ = dead.remotePod(t, &req.Pod); remote.Spec.NodeName != "" {
			t.Fatalf("the held pod was scheduled on %s", remote.Spec.NodeName)
		}
		// InterLink retries; the plugin that answers is another process.
		next := serve(t, same)
		next.create(t, req)
		poll(t, "the retried pod running with its objects", func(ctx context.Context) (bool, error) {
			remote, err := dead.remotePod(t, &req.Pod)
			cms, secrets := dead.scoped(t, &req.Pod)
			return err == nil && !gated(remote) && remote.Status.Phase == corev1.PodRunning && len(cms) == 1 && len(secrets) == 2, nil
		})
	})

	t.Run("no retry: collected", func(t *testing.T) {
		req := runnable("abandoned", "cut")
		dead.sendAndForget(t, "/create", req)
		<-reached
		if _, err := dead.remotePod(t, &req.Pod); err != nil {
			t.Fatal(err)
		}
		// A plugin whose leftover age is short removes it (it has no create of that pod running).
		serve(t, same, func(c *Config) { c.AbandonedAfter = time.Second })
		poll(t, "the abandoned pod collected", func(ctx context.Context) (bool, error) {
			_, err := dead.remotePod(t, &req.Pod)
			return apierrors.IsNotFound(err), nil
		})
		release() // the cut-short create resumes against a pod that is gone, and cleans up
		dead.nothingLeft(t, &req.Pod)
	})
}

// TestStatusBeforeCreate: InterLink's VK polls every pod it holds, also those it has not sent the
// create of yet (it makes meshed pods' shadows one at a time, so a pod may wait there for minutes).
// A pod this plugin never saw is not created yet while the VK has not recorded a create's answer on
// it (JobID), whatever its age; with that answer recorded it is reported gone, so the VK's pod ends.
func TestStatusBeforeCreate(t *testing.T) {
	t.Parallel()
	s := serve(t)
	for _, age := range []time.Duration{0, time.Hour} {
		pod := runnable(fmt.Sprintf("queued-%d", int(age.Minutes())), "before").Pod
		pod.CreationTimestamp = metav1.NewTime(time.Now().Add(-age))
		st := s.status(t, pod)[0]
		for _, c := range append(st.InitContainers, st.Containers...) {
			if c.State.Waiting == nil || c.State.Waiting.Reason != ReasonNotCreated {
				t.Errorf("pod %v old, never created: %s is %+v, want waiting %s", age, c.Name, c.State, ReasonNotCreated)
			}
		}
	}
	answered := runnable("answered", "before").Pod
	answered.Annotations = map[string]string{AnnotVKJobID: newUID()}
	st := s.status(t, answered)[0]
	for _, c := range append(st.InitContainers, st.Containers...) {
		if c.State.Terminated == nil || c.State.Terminated.Reason != ReasonRemotePodGone {
			t.Errorf("pod with a JobID whose remote pod is not there: %s is %+v, want terminated %s", c.Name, c.State, ReasonRemotePodGone)
		}
	}
}

// TestEmptyNamespaceRemoved: a namespace the plugin made goes once it has held none of its pods
// for the TTL, and a later create makes it anew.
func TestEmptyNamespaceRemoved(t *testing.T) {
	t.Parallel()
	s := serve(t, func(c *Config) { c.EmptyNamespaceTTL = time.Second })
	req := runnable("web", "tidy")
	s.create(t, req)
	nss := s.cluster.Client.CoreV1().Namespaces()
	if code, body := s.call(t, "POST", "/delete", req.Pod); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	poll(t, "the emptied namespace removed", func(ctx context.Context) (bool, error) {
		_, err := nss.Get(ctx, s.remoteNS("tidy"), metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	again := runnable("web-2", "tidy")
	s.create(t, again)
	if _, err := s.remotePod(t, &again.Pod); err != nil {
		t.Fatalf("create after the namespace went: %v", err)
	}
}

// TestCreateWaitsForTerminatingNamespace: a create into a namespace that is being deleted (it takes
// no new pods) waits until the namespace is gone, makes it anew and succeeds. The namespace is
// held in Terminating by a finalizer until the test lets it go.
func TestCreateWaitsForTerminatingNamespace(t *testing.T) {
	t.Parallel()
	s := serve(t)
	s.create(t, runnable("first", "terminating"))
	ns := s.remoteNS("terminating")
	cms := s.cluster.Client.CoreV1().ConfigMaps(ns)
	hold := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hold", Finalizers: []string{"interlink-k8s-mesh.test/hold"}}}
	if _, err := cms.Create(t.Context(), hold, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.cluster.Client.CoreV1().Namespaces().Delete(t.Context(), ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	req := runnable("second", "terminating")
	done := make(chan int, 1)
	go func() { code, _ := s.call(t, "POST", "/create", req); done <- code }()
	select {
	case code := <-done:
		t.Fatalf("create answered %d while its namespace was terminating, want it to wait", code)
	case <-time.After(2 * time.Second):
	}
	// Let the namespace go.
	poll(t, "finalizer removed", func(ctx context.Context) (bool, error) {
		cm, err := cms.Get(ctx, "hold", metav1.GetOptions{})
		if err != nil {
			return apierrors.IsNotFound(err), nil
		}
		cm.Finalizers = nil
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		return err == nil, nil
	})
	if code := <-done; code != http.StatusOK {
		t.Fatalf("create after the namespace went: %d", code)
	}
	if _, err := s.remotePod(t, &req.Pod); err != nil {
		t.Fatalf("remote pod: %v", err)
	}
}
