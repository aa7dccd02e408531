package plugin

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/test/testcluster"
)

// apiserverLink stands between the plugin and the test cluster's apiserver on a loopback port of
// its own. down makes the apiserver go away as a restart does: every open connection is closed and
// new ones are refused (nothing listens), until up listens on the same port again.
type apiserverLink struct {
	t        testing.TB
	upstream string
	addr     string

	mu    sync.Mutex
	ln    net.Listener          // nil while down
	conns map[net.Conn]struct{} // both ends of every relayed connection
	wg    sync.WaitGroup
}

func newAPIServerLink(t testing.TB, cfg *rest.Config) (*apiserverLink, *rest.Config) {
	t.Helper()
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	l := &apiserverLink{t: t, upstream: u.Host, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.addr = ln.Addr().String()
	l.serve(ln)
	t.Cleanup(func() {
		l.down()
		l.wg.Wait()
	})
	via := rest.CopyConfig(cfg)
	via.Host = "https://" + l.addr
	if via.TLSClientConfig.ServerName == "" {
		via.TLSClientConfig.ServerName = u.Hostname()
	}
	return l, via
}

func (l *apiserverLink) serve(ln net.Listener) {
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by down
			}
			var d net.Dialer
			up, err := d.Dial("tcp", l.upstream)
			if err != nil {
				c.Close()
				continue
			}
			l.mu.Lock()
			if l.ln != ln { // went down meanwhile
				l.mu.Unlock()
				c.Close()
				up.Close()
				continue
			}
			l.conns[c], l.conns[up] = struct{}{}, struct{}{}
			l.mu.Unlock()
			l.wg.Add(2)
			go l.pipe(c, up)
			go l.pipe(up, c)
		}
	}()
}

func (l *apiserverLink) pipe(dst, src net.Conn) {
	defer l.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	l.mu.Lock()
	delete(l.conns, dst)
	delete(l.conns, src)
	l.mu.Unlock()
}

func (l *apiserverLink) down() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	for c := range l.conns {
		c.Close()
	}
}

func (l *apiserverLink) up() {
	l.t.Helper()
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		l.t.Fatalf("listen again on %s: %v", l.addr, err)
	}
	l.serve(ln)
}

// outage runs the plugin behind an apiserverLink, creates a running pod, takes the apiserver away
// for the given time, deletes the remote pod meanwhile (directly, as another client of the remote
// cluster would) and brings the apiserver back. It returns the plugin and the local pod.
func outage(t *testing.T, lasting time.Duration) (*served, *corev1.Pod, *apiserverLink) {
	t.Helper()
	var link *apiserverLink
	s := serve(t, func(c *Config) {
		var via *rest.Config
		link, via = newAPIServerLink(t, testcluster.Get(t).Config)
		client, err := kubernetes.NewForConfig(via)
		if err != nil {
			t.Fatal(err)
		}
		c.Client = client
	})
	req := runnable("web", "outage")
	s.create(t, req)
	poll(t, "running status from the cache", func(ctx context.Context) (bool, error) {
		st := s.status(t, req.Pod)[0]
		return len(st.Containers) == 1 && st.Containers[0].State.Running != nil, nil
	})
	remote, err := s.remotePod(t, &req.Pod)
	if err != nil {
		t.Fatal(err)
	}

	link.down()
	if _, err := s.Plugin.client.CoreV1().Pods(remote.Namespace).Get(t.Context(), remote.Name, metav1.GetOptions{}); err == nil {
		t.Fatal("the plugin still reaches the apiserver through a link that is down")
	}
	if err := s.cluster.Client.CoreV1().Pods(remote.Namespace).Delete(t.Context(), remote.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the remote pod deleted during the outage", func(ctx context.Context) (bool, error) {
		_, err := s.remotePod(t, &req.Pod)
		return apierrors.IsNotFound(err), nil
	})
	select {
	case <-time.After(lasting):
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
	link.up()
	return s, &req.Pod, link
}

// vanished reports whether status calls the local pod's remote pod gone.
func (s *served) vanished(t *testing.T, local *corev1.Pod) bool {
	st := s.status(t, *local)[0]
	return len(st.Containers) == 1 && st.Containers[0].State.Terminated != nil &&
		st.Containers[0].State.Terminated.Reason == ReasonRemotePodGone
}

// TestStatusAfterOutage: the remote apiserver goes away for 20 s (every connection cut, new ones
// refused, as when it restarts) and a pod is deleted meanwhile. Once the apiserver answers again,
// status reports the pod gone within the cache's retry bound, not after client-go's backoff
// (which had grown to 12.8-25.6 s).
func TestStatusAfterOutage(t *testing.T) {
	t.Parallel()
	s, local, _ := outage(t, 20*time.Second)
	back := time.Now()
	deadline := back.Add(CacheRetryMax + 3*time.Second)
	for !s.vanished(t, local) {
		if time.Now().After(deadline) {
			t.Fatalf("status still reports the pod deleted during the outage %v after the apiserver came back (the cache retries at least every %v)",
				time.Since(back).Round(time.Millisecond), CacheRetryMax)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("status reported the pod gone %v after the apiserver came back", time.Since(back).Round(time.Millisecond))
}

// BenchmarkResyncAfterOutage measures how long after a 20 s outage of the remote apiserver (every
// connection cut, new ones refused) status still reports a pod deleted during the outage as running.
func BenchmarkResyncAfterOutage(b *testing.B) {
	c := testcluster.Get(b)
	link, via := newAPIServerLink(b, c.Config)
	client, err := kubernetes.NewForConfig(via)
	if err != nil {
		b.Fatal(err)
	}
	prefix := "bo" + newUID()[:6]
	p, err := New(Config{Client: client, Offloading: Offloading{NamespacePrefix: prefix}})
	if err != nil {
		b.Fatal(err)
	}
	startServing(b, p)
	gone := func(local *corev1.Pod) bool {
		st, err := p.Status(b.Context(), local)
		return err == nil && len(st.Containers) == 1 && st.Containers[0].State.Terminated != nil
	}
	running := func(local *corev1.Pod) bool {
		st, err := p.Status(b.Context(), local)
		return err == nil && len(st.Containers) == 1 && st.Containers[0].State.Running != nil
	}
	until := func(what string, cond func() bool) time.Duration {
		start := time.Now()
		for !cond() {
			if time.Since(start) > 2*time.Minute {
				b.Fatalf("waiting for %s: gave up after 2 min", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	var stale time.Duration
	for i := 0; b.Loop(); i++ {
		req := runnable(fmt.Sprintf("web-%d", i), "outage")
		if _, err := p.Create(b.Context(), &req); err != nil {
			b.Fatal(err)
		}
		until("the pod running", func() bool { return running(&req.Pod) })
		ns, name := RemoteNamespace(prefix, nil, req.Pod.Namespace), ScopedName(req.Pod.Name, string(req.Pod.UID))
		link.down()
		if err := c.Client.CoreV1().Pods(ns).Delete(b.Context(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			b.Fatal(err)
		}
		time.Sleep(20 * time.Second)
		link.up()
		stale += until("status to report the pod gone", func() bool { return gone(&req.Pod) })
	}
	b.ReportMetric(stale.Seconds()/float64(b.N), "s-stale/op")
}
