package netfilter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Run applies the rule set, re-asserts it every Config.Interval, repairing and logging whatever
// someone else deleted or changed, and removes it when ctx is done. It returns only after the
// removal, with nil if that succeeded.
//
// If the first Ensure fails, Run removes whatever of its state is left and returns the error:
// a shadow pod that cannot forward is better restarted than left half working. Later failures
// are logged and retried at the next tick. Run does all its work on the calling goroutine, so
// a caller pinned to a network namespace (runtime.LockOSThread) keeps it for the whole run.
func (s *Shadow) Run(ctx context.Context) error {
	changes, err := s.Ensure(ctx)
	if err != nil {
		if rerr := s.Remove(); rerr != nil {
			s.log.Error("remove netfilter rules after failed apply", "err", rerr)
		}
		return fmt.Errorf("apply netfilter rules: %w", err)
	}
	s.mu.Lock()
	quiet := "chain by chain"
	if s.saved != "" {
		quiet = "one iptables-save"
	}
	s.mu.Unlock()
	s.log.Info("netfilter rules applied", "changes", changes, "interval", s.interval, "quiet_check", quiet)

	// Each wait is the interval ±20 %: shadow pods started together drift apart instead of
	// running iptables at the same moment.
	t := time.NewTimer(jitter(s.interval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := s.Remove(); err != nil {
				return fmt.Errorf("remove netfilter rules: %w", err)
			}
			s.log.Info("netfilter rules removed")
			return nil
		case <-t.C:
			changes, err := s.Ensure(ctx)
			switch {
			case ctx.Err() != nil:
				// Cancelled mid-way: the next turn removes everything.
			case err != nil:
				s.log.Warn("re-assert netfilter rules", "err", err)
			case len(changes) > 0:
				s.log.Warn("repaired netfilter rules", "changes", changes)
			}
			t.Reset(jitter(s.interval))
		}
	}
}

// jitter returns d scaled by a random factor in [0.8, 1.2).
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
