package plugin

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// CacheRetryMax bounds the wait between two attempts of the remote pod cache to list and watch.
const CacheRetryMax = time.Second

// podCache mirrors the remote pods the plugin offloaded (label interlink.io=offloading): a client-go
// reflector filling an indexer, indexed by namespace and by the local pod's UID.
//
// It is a reflector rather than an informer from a factory for one reason: the retry delay once the
// remote apiserver comes back. Informers back off exponentially up to 30 s (with jitter, 60 s), a
// delay sized for the thousands of clients of one apiserver that must not stampede it; the factory
// has no way to change it. After a 20 s outage a plugin on that backoff went on reporting a pod
// deleted meanwhile as running for up to 13.5 s. The plugin is one client with one watch: it retries
// within CacheRetryMax.
type podCache struct {
	indexer   cache.Indexer
	lister    listersv1.PodLister
	reflector *cache.Reflector
	synced    atomic.Bool
	// seen is called for every remote pod of a local pod the cache receives, gone for every
	// one deleted; neither may block.
	seen     func(pod *corev1.Pod)
	goneHook func(pod *corev1.Pod)
	// gone holds the last state of remote pods deleted since the plugin started.
	gone lastStates
}

func newPodCache(client kubernetes.Interface, seen, gone func(pod *corev1.Pod)) *podCache {
	c := &podCache{seen: seen, goneHook: gone}
	c.indexer = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{
		cache.NamespaceIndex: cache.MetaNamespaceIndexFunc,
		indexSourceUID: func(obj any) ([]string, error) {
			if pod, ok := obj.(*corev1.Pod); ok && pod.Annotations[AnnotSourceUID] != "" {
				return []string{pod.Annotations[AnnotSourceUID]}, nil
			}
			return nil, nil
		},
	})
	c.lister = listersv1.NewPodLister(c.indexer)
	selector := labels.Set{LabelOffloaded: ValueOffloaded}.String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, o)
		},
	}
	logger := klog.Background() // main bridges klog to slog
	c.reflector = cache.NewReflectorWithOptions(lw, &corev1.Pod{}, (*cacheStore)(c), cache.ReflectorOptions{
		Name:            "remote pods",
		TypeDescription: "*v1.Pod",
		Logger:          &logger,
		Backoff: &wait.Backoff{
			Duration: 100 * time.Millisecond,
			Factor:   2,
			Jitter:   0.2, // the delay grows by 0-20 %: stays under CacheRetryMax once capped below it
			Cap:      CacheRetryMax * 5 / 6,
			Steps:    math.MaxInt32,
		},
	})
	return c
}

// run keeps the cache filled until ctx ends.
func (c *podCache) run(ctx context.Context) { c.reflector.RunWithContext(ctx) }

// hasSynced reports whether the first full list has been stored.
func (c *podCache) hasSynced() bool { return c.synced.Load() }

// bySourceUID returns the cached remote pod of the local pod uid, or nil.
func (c *podCache) bySourceUID(uid string) *corev1.Pod {
	objs, err := c.indexer.ByIndex(indexSourceUID, uid)
	if err != nil || len(objs) == 0 {
		return nil
	}
	pod, _ := objs[0].(*corev1.Pod)
	return pod
}

// byName returns the cached remote pod namespace/name, or nil.
func (c *podCache) byName(namespace, name string) *corev1.Pod {
	pod, err := c.lister.Pods(namespace).Get(name)
	if err != nil {
		return nil
	}
	return pod
}

func (c *podCache) len() int { return len(c.indexer.ListKeys()) }

// lastSeen returns the last state of the deleted remote pod of the local pod uid, or nil.
func (c *podCache) lastSeen(uid string) *corev1.Pod { return c.gone.get(uid) }

// cacheStore is the reflector's view of the cache: it trims what the plugin never reads (keeping
// memory flat with many pods) and reports each pod seen before storing it.
type cacheStore podCache

var _ cache.TransformingStore = (*cacheStore)(nil)

func (s *cacheStore) Transformer() cache.TransformFunc { return stripManagedFields }

func (s *cacheStore) keep(obj any) any {
	obj, _ = stripManagedFields(obj)
	if pod, ok := obj.(*corev1.Pod); ok && pod.Annotations[AnnotSourceUID] != "" {
		s.gone.forget(pod.Annotations[AnnotSourceUID])
		if s.seen != nil {
			s.seen(pod)
		}
	}
	return obj
}

func (s *cacheStore) Add(obj any) error    { return s.indexer.Add(s.keep(obj)) }
func (s *cacheStore) Update(obj any) error { return s.indexer.Update(s.keep(obj)) }
func (s *cacheStore) Resync() error        { return nil }

func (s *cacheStore) Delete(obj any) error {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		s.gone.put(pod)
		if s.goneHook != nil {
			s.goneHook(pod)
		}
	}
	return s.indexer.Delete(obj)
}

// Replace stores a full list. A pod cached before and missing from it was deleted while the watch
// was down: its last cached state is kept as for a delete.
func (s *cacheStore) Replace(objs []any, rv string) error {
	listed := make(map[string]bool, len(objs))
	for i := range objs {
		objs[i] = s.keep(objs[i])
		if pod, ok := objs[i].(*corev1.Pod); ok {
			listed[pod.Namespace+"/"+pod.Name] = true
		}
	}
	for _, obj := range s.indexer.List() {
		if pod, ok := obj.(*corev1.Pod); ok && !listed[pod.Namespace+"/"+pod.Name] {
			s.gone.put(pod)
		}
	}
	if err := s.indexer.Replace(objs, rv); err != nil {
		return err
	}
	s.synced.Store(true)
	return nil
}

// stripManagedFields drops what the cache never reads.
func stripManagedFields(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}

// indexSourceUID indexes cached remote pods by the UID of the local pod they stand for.
const indexSourceUID = "sourceUID"
