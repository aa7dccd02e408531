package netfilter

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/logtest"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/polltest"
)

// syncBuffer is a log sink the test reads while Run writes.
type syncBuffer = logtest.Buffer

func TestRunRepairsAndCleansUp(t *testing.T) {
	f := newFakeIPTables()
	addForeign(t, f)
	before := f.dump()
	s := fakeShadow(t, f, "0")
	s.interval = 10 * time.Millisecond
	var logs syncBuffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	applied := wantApplied(t, s)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	polltest.True(t, "rules applied", 5*time.Second, func() bool { return f.dump() == applied })
	c := s.Rules()[1]
	if err := f.Delete(c.Table, c.From, c.Jump...); err != nil {
		t.Fatal(err)
	}
	polltest.True(t, "jump repaired", 5*time.Second, func() bool { return f.dump() == applied })
	polltest.True(t, "repair logged", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "repaired netfilter rules") &&
			strings.Contains(logs.String(), "inserted jump nat/POSTROUTING -> IKM-SHADOW-POSTROUTING")
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("after Run (-want +got):\n%s", diff)
	}
	if got := readForward(t, s); got != "0" {
		t.Errorf("ip_forward = %s after Run, want 0", got)
	}
	if !strings.Contains(logs.String(), "netfilter rules removed") {
		t.Errorf("removal not logged:\n%s", logs.String())
	}
}

func TestRunFirstApplyFails(t *testing.T) {
	f := newFakeIPTables()
	before := f.dump()
	s := fakeShadow(t, f, "0")
	errInjected := errors.New("injected")
	f.setFail(func(op, table, chain string) error {
		if op == "Insert" && chain == "PREROUTING" {
			return errInjected
		}
		return nil
	})
	err := s.Run(t.Context())
	if !errors.Is(err, errInjected) {
		t.Fatalf("Run = %v, want the injected error", err)
	}
	if diff := cmp.Diff(before, f.dump()); diff != "" {
		t.Errorf("after failed Run (-want +got):\n%s", diff)
	}
}

func TestRunKeepsGoingAfterFailedReassert(t *testing.T) {
	f := newFakeIPTables()
	s := fakeShadow(t, f, "0")
	s.interval = 10 * time.Millisecond
	var logs syncBuffer
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	polltest.True(t, "rules applied", 5*time.Second, func() bool { return strings.Contains(logs.String(), "netfilter rules applied") })
	f.setFail(func(op, table, chain string) error {
		switch op {
		case "Save": // a quiet turn lists nothing: make it check chain by chain
			return errors.New("injected save failure")
		case "List":
			return errors.New("injected list failure")
		}
		return nil
	})
	polltest.True(t, "failure logged", 5*time.Second, func() bool { return strings.Contains(logs.String(), "injected list failure") })
	f.setFail(nil)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if ok, _ := f.ChainExists("nat", ChainPrerouting); ok {
		t.Error("chain left after Run")
	}
}

// Waits spread over ±20 % of the interval, so agents started together do not stay in step.
func TestJitter(t *testing.T) {
	lo, hi := time.Hour, time.Duration(0)
	for range 1000 {
		d := jitter(time.Minute)
		if d < 48*time.Second || d >= 72*time.Second {
			t.Fatalf("jitter(1m) = %v, want within [48s, 72s)", d)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	if hi-lo < 10*time.Second {
		t.Errorf("1,000 waits spread over only %v (%v to %v)", hi-lo, lo, hi)
	}
}
