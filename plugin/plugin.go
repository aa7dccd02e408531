package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
)

// Config configures a Plugin.
type Config struct {
	// Client reaches the remote cluster. Required.
	Client kubernetes.Interface
	// Offloading shapes the remote pods.
	Offloading Offloading
	// LocalClient, optional, reads the local cluster for the orphan sweep (read-only use).
	LocalClient kubernetes.Interface
	// SweepInterval is the orphan sweep period (default 5m; used only with LocalClient).
	SweepInterval time.Duration
	// LocalMetadata, set with LocalClient, lists the local shadow Secrets as metadata only.
	LocalMetadata metadata.Interface
	// ShadowLeftovers is what the sweep does with the shadow Secrets the VK leaves behind:
	// LeftoversDelete (default), LeftoversDryRun or LeftoversOff. Used only with LocalClient.
	ShadowLeftovers string
	// ShadowNamespaceSuffixes name the VK's shadow namespaces (default
	// DefaultShadowNamespaceSuffixes); the leftover sweep looks nowhere else.
	ShadowNamespaceSuffixes []string
	// MeshEvents, with LocalClient, follows the shadow pods and records MeshLost and MeshReady
	// Events on the offloaded pods (meshevents.go).
	MeshEvents bool
	// LeftoverGrace is how old a shadow Secret must be before its missing Deployment makes it a
	// leftover (default DefaultLeftoverGrace).
	LeftoverGrace time.Duration
	// AbandonedAfter is how long a remote pod may stay held by GateObjects (its create not
	// finished) before the plugin removes it as the leftover of a create cut short (default 5m,
	// far above any create's own deadline). Checked every AbandonedAfter/5.
	AbandonedAfter time.Duration
	// EmptyNamespaceTTL is how long a remote namespace the plugin created may hold none of its
	// pods before the plugin deletes it (default 10m; negative: never).
	EmptyNamespaceTTL time.Duration
	// CapacityTTL is how long a computed ping capacity is reused (default 10s).
	CapacityTTL time.Duration
	// RemoteTimeout bounds each non-streaming remote call (default 30s).
	RemoteTimeout time.Duration
	// MaxBodyBytes limits request bodies (default 16 MiB).
	MaxBodyBytes int64
	// DocsPath, when set, serves the documentation page there as well as at /docs (the Python
	// plugin's app.api_docs_path).
	DocsPath string
	// Pprof serves Go's profiles at /debug/pprof/ on the API's listener (off by default: a CPU
	// profile costs the plugin while it runs, and whoever reaches the API may ask for one).
	Pprof bool
	// Logger receives the plugin's logs (nil discards them).
	Logger *slog.Logger
	// Registry receives the plugin's metrics (nil: a private registry, served on /metrics).
	Registry *prometheus.Registry
}

// Plugin serves the InterLink plugin API against a remote cluster. Build it with New, start its
// cache with Run and serve its Handler.
type Plugin struct {
	cfg     Config
	log     *slog.Logger
	client  kubernetes.Interface
	pods    *podCache
	inbound *inboundEndpoints
	events  *meshEvents // nil without Config.MeshEvents
	lister  listersv1.PodLister
	metrics *metrics
	guard   *podGuard
	nss     namespaces
	// draining ends when Run returns: follow log streams then end cleanly, so that the server's
	// graceful shutdown is not cut short with streams still open.
	draining    context.Context
	stopStreams context.CancelFunc
	// testHook, nil outside tests, is called at the named points of a create so that tests can
	// force interleavings with other calls.
	testHook atomic.Pointer[func(point string)]

	capMu     sync.Mutex
	capAt     time.Time
	capCached *PingResponse
}

// New validates cfg and builds a Plugin.
func New(cfg Config) (*Plugin, error) {
	if cfg.Client == nil {
		return nil, errors.New("plugin config: Client is required")
	}
	if cfg.LeftoverGrace == 0 {
		cfg.LeftoverGrace = DefaultLeftoverGrace
	}
	if cfg.ShadowLeftovers == "" {
		cfg.ShadowLeftovers = LeftoversDelete
	}
	if len(cfg.ShadowNamespaceSuffixes) == 0 {
		cfg.ShadowNamespaceSuffixes = DefaultShadowNamespaceSuffixes
	}
	switch cfg.ShadowLeftovers {
	case LeftoversDelete, LeftoversDryRun, LeftoversOff:
	default:
		return nil, fmt.Errorf("shadow leftovers %q: want %s, %s or %s", cfg.ShadowLeftovers, LeftoversDelete, LeftoversDryRun, LeftoversOff)
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 5 * time.Minute
	}
	if cfg.AbandonedAfter == 0 {
		cfg.AbandonedAfter = 5 * time.Minute
	}
	if cfg.EmptyNamespaceTTL == 0 {
		cfg.EmptyNamespaceTTL = 10 * time.Minute
	}
	if cfg.CapacityTTL == 0 {
		cfg.CapacityTTL = 10 * time.Second
	}
	if cfg.RemoteTimeout == 0 {
		cfg.RemoteTimeout = 30 * time.Second
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	p := &Plugin{cfg: cfg, log: cfg.Logger, client: cfg.Client, guard: newPodGuard()}
	p.nss = namespaces{busy: map[string]int{}, emptySince: map[string]time.Time{}, known: map[string]struct{}{}}
	p.draining, p.stopStreams = context.WithCancel(context.Background())
	// Every remote pod the cache ever holds existed: status may later call it vanished.
	p.inbound = newInboundEndpoints(p)
	if cfg.LocalClient != nil && cfg.MeshEvents {
		p.events = newMeshEvents(p)
	}
	p.pods = newPodCache(cfg.Client, func(pod *corev1.Pod) {
		p.guard.markSeen(types.UID(pod.Annotations[AnnotSourceUID]))
		p.inbound.note(pod)
	}, p.inbound.forget)
	p.lister = p.pods.lister
	p.metrics = newMetrics(cfg.Registry, func() float64 { return float64(p.pods.len()) })
	return p, nil
}

// Synced reports whether the remote pod cache has been filled.
func (p *Plugin) Synced() bool { return p.pods.hasSynced() }

// remoteCtx bounds one non-streaming remote call.
func (p *Plugin) remoteCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.cfg.RemoteTimeout)
}

// cachedBySourceUID returns the cached remote pod standing for the local pod uid.
func (p *Plugin) cachedBySourceUID(uid string) *corev1.Pod { return p.pods.bySourceUID(uid) }

// Points of a create where tests can interleave other calls (Plugin.testHook).
const (
	hookBeforePod      = "before-pod"      // namespace and ServiceAccount ensured, the pod not yet made
	hookPodCreated     = "pod-created"     // the remote pod exists, its ConfigMaps and Secrets not yet
	hookObjectsCreated = "objects-created" // every remote object exists, the reply is not sent
)

func (p *Plugin) hook(point string) {
	if h := p.testHook.Load(); h != nil {
		(*h)(point)
	}
}

// setTestHook sets (nil: removes) the function called at each hook point.
func (p *Plugin) setTestHook(h func(point string)) {
	if h == nil {
		p.testHook.Store(nil)
		return
	}
	p.testHook.Store(&h)
}

// namespaces tracks the remote namespaces creates are using, and since when a namespace the
// plugin made holds none of its pods, so that RemoveEmptyNamespaces never removes one a create
// is about to fill.
type namespaces struct {
	mu         sync.Mutex
	busy       map[string]int       // creates in flight per namespace
	emptySince map[string]time.Time // first time a sweep found the namespace without our pods
	known      map[string]struct{}  // namespaces seen to exist (Active) and not removed by the plugin since
}

// remoteErr counts a failed remote call and returns err unchanged.
func (p *Plugin) remoteErr(op string, err error) error {
	if err != nil {
		p.metrics.remoteErrors.WithLabelValues(op).Inc()
	}
	return err
}
