package plugin

import (
	"context"
	"errors"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// ErrPodDeleted refuses a create of a pod that InterLink has already deleted: the VK sends deletes
// asynchronously, so a delete can overtake the create of the same pod (or a retry of it).
var ErrPodDeleted = errors.New("the pod was deleted while or before it was created")

// tombstoneTTL is how long a deleted pod's UID refuses creates. UIDs are never reused, so the only
// cost of a long memory is a few bytes per deleted pod; the TTL only bounds that.
const tombstoneTTL = 15 * time.Minute

// podGuard orders the calls that change one pod (create and delete), so that a delete always wins:
//
//   - a delete that arrives while a create runs cancels the create, waits until the create has
//     rolled back what it made (or finished), then deletes whatever is left;
//   - a delete that arrives before the create (or before a retry of it) leaves a tombstone: the
//     create is refused with ErrPodDeleted and makes nothing;
//   - two creates of the same pod run one after the other (the second adopts what the first made).
//
// It also tells Status which pods have a create in flight, so that a pod being created is never
// reported vanished. The guard lives in one plugin process: a restart ends every call it orders.
type podGuard struct {
	mu sync.Mutex
	// pods holds the pods with a call running or waiting, and their lock.
	pods map[types.UID]*podCalls
	// deleted remembers recently deleted pods, oldest first in order, for tombstoneTTL.
	deleted map[types.UID]time.Time
	order   []types.UID
	now     func() time.Time
}

// podCalls is the state of one pod with calls in flight; all fields are guarded by podGuard.mu.
type podCalls struct {
	// turn is held (a token in the channel) by the call that runs; the others wait on it.
	turn chan struct{}
	// refs counts the calls that hold or wait for turn; the entry goes when it falls to zero.
	refs int
	// creates counts the creates that hold or wait for turn.
	creates int
	// cancel, set while a create holds turn, stops it.
	cancel context.CancelFunc
}

func newPodGuard() *podGuard {
	return &podGuard{pods: map[types.UID]*podCalls{}, deleted: map[types.UID]time.Time{}, now: time.Now}
}

// beginCreate waits for the pod's turn and returns the context the create must use (cancelled by a
// delete of the same pod) and the function that ends the create's turn. It fails with
// ErrPodDeleted if the pod was deleted, and with ctx's error if ctx ends while it waits.
func (g *podGuard) beginCreate(ctx context.Context, uid types.UID) (context.Context, func(), error) {
	g.mu.Lock()
	if g.deletedLocked(uid) {
		g.mu.Unlock()
		return nil, nil, ErrPodDeleted
	}
	pc := g.enterLocked(uid)
	pc.creates++
	g.mu.Unlock()
	if err := g.wait(ctx, uid, pc, true); err != nil {
		return nil, nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deletedLocked(uid) { // deleted while this create waited for its turn
		g.leaveLocked(uid, pc, true)
		return nil, nil, ErrPodDeleted
	}
	cctx, cancel := context.WithCancel(ctx)
	pc.cancel = cancel
	return cctx, func() {
		cancel()
		g.mu.Lock()
		defer g.mu.Unlock()
		pc.cancel = nil
		g.leaveLocked(uid, pc, true)
	}, nil
}

// beginDelete records the delete (so later creates are refused), cancels a create in flight and
// waits for the pod's turn. It returns the function that ends the delete's turn.
func (g *podGuard) beginDelete(ctx context.Context, uid types.UID) (func(), error) {
	g.mu.Lock()
	g.tombstoneLocked(uid)
	pc := g.enterLocked(uid)
	if pc.cancel != nil {
		pc.cancel()
	}
	g.mu.Unlock()
	return g.turn(ctx, uid, pc)
}

// beginCollect takes the pod's turn to remove what a create cut short left behind, without a
// tombstone (the local pod may still exist and be created again). It reports false, without the
// turn, when a call of the pod is running or waiting: that call settles the pod.
func (g *podGuard) beginCollect(uid types.UID) (func(), bool) {
	g.mu.Lock()
	if g.pods[uid] != nil {
		g.mu.Unlock()
		return nil, false
	}
	pc := g.enterLocked(uid)
	g.mu.Unlock()
	done, err := g.turn(context.Background(), uid, pc)
	return done, err == nil
}

// turn waits for the pod's turn and returns the function that gives it back.
func (g *podGuard) turn(ctx context.Context, uid types.UID, pc *podCalls) (func(), error) {
	if err := g.wait(ctx, uid, pc, false); err != nil {
		return nil, err
	}
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.leaveLocked(uid, pc, false)
	}, nil
}

// creating reports whether a create of the pod is running or waiting for its turn.
func (g *podGuard) creating(uid types.UID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	pc := g.pods[uid]
	return pc != nil && pc.creates > 0
}

// wasDeleted reports whether the pod has a tombstone.
func (g *podGuard) wasDeleted(uid types.UID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.deletedLocked(uid)
}

// wait takes the pod's turn; if ctx ends first, the call leaves without it.
func (g *podGuard) wait(ctx context.Context, uid types.UID, pc *podCalls, create bool) error {
	select {
	case pc.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		g.forgetLocked(uid, pc, create)
		return ctx.Err()
	}
}

func (g *podGuard) enterLocked(uid types.UID) *podCalls {
	pc := g.pods[uid]
	if pc == nil {
		pc = &podCalls{turn: make(chan struct{}, 1)}
		g.pods[uid] = pc
	}
	pc.refs++
	return pc
}

// leaveLocked gives the turn back and forgets the pod when no call is left.
func (g *podGuard) leaveLocked(uid types.UID, pc *podCalls, create bool) {
	<-pc.turn
	g.forgetLocked(uid, pc, create)
}

func (g *podGuard) forgetLocked(uid types.UID, pc *podCalls, create bool) {
	pc.refs--
	if create {
		pc.creates--
	}
	if pc.refs == 0 {
		delete(g.pods, uid)
	}
}

func (g *podGuard) deletedLocked(uid types.UID) bool {
	at, ok := g.deleted[uid]
	return ok && g.now().Sub(at) < tombstoneTTL
}

// tombstoneLocked records a delete and drops the tombstones that have expired.
func (g *podGuard) tombstoneLocked(uid types.UID) {
	now := g.now()
	for len(g.order) > 0 {
		oldest := g.order[0]
		if at, ok := g.deleted[oldest]; ok && now.Sub(at) < tombstoneTTL {
			break
		}
		delete(g.deleted, oldest)
		g.order = g.order[1:]
	}
	if _, ok := g.deleted[uid]; !ok {
		g.order = append(g.order, uid)
	}
	g.deleted[uid] = now
}
