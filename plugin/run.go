package plugin

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
)

// Run keeps the cache of offloaded remote pods and, with a local client, sweeps orphans. It returns
// when ctx ends, after its goroutines have stopped; then the follow log streams end cleanly.
func (p *Plugin) Run(ctx context.Context) error {
	defer p.stopStreams()
	var wg sync.WaitGroup
	wg.Go(func() { p.pods.run(ctx) })
	wg.Go(func() { p.inbound.run(ctx) })
	if p.events != nil {
		wg.Go(func() { p.events.run(ctx) })
	}
	defer wg.Wait()
	if !cache.WaitForCacheSync(ctx.Done(), p.pods.hasSynced) {
		return nil // stopped before the first sync
	}
	p.log.Info("remote pod cache synced", "pods", p.pods.len())
	every := p.cfg.AbandonedAfter
	if ttl := p.cfg.EmptyNamespaceTTL; ttl > 0 && ttl < every {
		every = ttl
	}
	collect := time.NewTicker(max(every/5, 100*time.Millisecond)) // a TTL of 1ns must not stop the plugin
	defer collect.Stop()
	var sweep <-chan time.Time // nil without a local client: never fires
	if p.cfg.LocalClient != nil {
		t := time.NewTicker(p.cfg.SweepInterval)
		defer t.Stop()
		sweep = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-collect.C:
			if n, err := p.CollectAbandoned(ctx); err != nil {
				p.log.Warn("collect abandoned creates", "err", err)
			} else if n > 0 {
				p.log.Info("removed the leftovers of creates cut short", "count", n)
			}
			if _, err := p.RemoveEmptyNamespaces(ctx); err != nil {
				p.log.Warn("remove empty namespaces", "err", err)
			}
		case <-sweep:
			if n, err := p.SweepOrphans(ctx); err != nil {
				p.log.Warn("orphan sweep", "err", err)
			} else if n > 0 {
				p.log.Info("orphan sweep removed remote pods", "count", n)
			}
			if p.cfg.LocalMetadata != nil {
				if _, err := p.SweepShadowLeftovers(ctx); err != nil {
					p.log.Warn("shadow leftover sweep", "err", err)
				}
			}
		}
	}
}
