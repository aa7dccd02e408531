package tunnel

import (
	"net/netip"
	"sync"
	"time"
)

// maxTrackedSources bounds the rate limiter's memory.
const maxTrackedSources = 4096

// rateLimiter is a token bucket per source address: each upgrade attempt
// takes a token, tokens refill at rate per second up to burst.
type rateLimiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu        sync.Mutex // guards the fields below
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int, now func() time.Time) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), now: now, buckets: make(map[netip.Addr]*bucket)}
}

// allow takes a token for src and reports whether one was available.
func (l *rateLimiter) allow(src netip.Addr) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[src]
	if !ok {
		if len(l.buckets) >= maxTrackedSources && !l.sweepLocked(now) {
			return false // table full of active sources: fail closed
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[src] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweepLocked forgets sources whose bucket has refilled (they behave as
// new ones), at most once a second, and reports whether room was made.
func (l *rateLimiter) sweepLocked(now time.Time) bool {
	if now.Sub(l.lastSweep) < time.Second {
		return false
	}
	l.lastSweep = now
	for src, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, src)
		}
	}
	return len(l.buckets) < maxTrackedSources
}
