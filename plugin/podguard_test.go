package plugin

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

func TestPodGuardDeleteBeforeCreate(t *testing.T) {
	g := newPodGuard()
	done, err := g.beginDelete(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	done()
	if _, _, err := g.beginCreate(t.Context(), "a"); !errors.Is(err, ErrPodDeleted) {
		t.Fatalf("create after delete: %v, want ErrPodDeleted", err)
	}
	if _, end, err := g.beginCreate(t.Context(), "b"); err != nil {
		t.Fatalf("create of another pod: %v", err)
	} else {
		end()
	}
	if len(g.pods) != 0 {
		t.Errorf("%d pods still tracked after every call ended", len(g.pods))
	}
}

func TestPodGuardDeleteCancelsCreateAndWaits(t *testing.T) {
	g := newPodGuard()
	ctx, end, err := g.beginCreate(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if !g.creating("a") {
		t.Error("creating(a) = false while its create holds the turn")
	}
	deleted := make(chan struct{})
	go func() {
		done, err := g.beginDelete(context.Background(), "a")
		if err != nil {
			t.Error(err)
			return
		}
		close(deleted)
		done()
	}()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the delete did not cancel the create")
	}
	select {
	case <-deleted:
		t.Fatal("the delete ran before the create ended")
	case <-time.After(50 * time.Millisecond):
	}
	end()
	<-deleted
	if g.creating("a") || !g.wasDeleted("a") {
		t.Errorf("after both: creating=%v deleted=%v, want false true", g.creating("a"), g.wasDeleted("a"))
	}
}

func TestPodGuardCreatesTakeTurns(t *testing.T) {
	g := newPodGuard()
	_, end, err := g.beginCreate(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		_, end2, err := g.beginCreate(t.Context(), "a")
		if err == nil {
			end2()
		}
		second <- err
	}()
	select {
	case err := <-second:
		t.Fatalf("second create ran beside the first: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	end()
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	// A waiter whose context ends leaves without a trace.
	_, end, _ = g.beginCreate(t.Context(), "c")
	wctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := g.beginCreate(wctx, "c"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiter with an expired context: %v", err)
	}
	end()
	if len(g.pods) != 0 {
		t.Errorf("%d pods still tracked", len(g.pods))
	}
}

func TestPodGuardTombstonesExpire(t *testing.T) {
	g := newPodGuard()
	now := time.Unix(1_000_000, 0)
	g.now = func() time.Time { return now }
	for _, uid := range []types.UID{"a", "b"} {
		done, _ := g.beginDelete(t.Context(), uid)
		done()
	}
	now = now.Add(tombstoneTTL + time.Second)
	if g.wasDeleted("a") {
		t.Error("tombstone outlived its TTL")
	}
	done, _ := g.beginDelete(t.Context(), "c")
	done()
	if len(g.deleted) != 1 || len(g.order) != 1 {
		t.Errorf("expired tombstones kept: %d in map, %d in order", len(g.deleted), len(g.order))
	}
}
