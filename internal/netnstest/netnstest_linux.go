package netnstest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

type nsHandle = netns.NsHandle

// New creates a network namespace with lo up and registers its deletion on t. It skips t
// unless the process is root and the ip tool is found; any other failure fails t.
func New(t testing.TB) *NS {
	t.Helper()
	Require(t, "ip")
	n := &NS{Name: randomName(), t: t, h: netns.None()}
	if _, err := run("ip", "netns", "add", n.Name); err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() {
		if n.h.IsOpen() {
			_ = n.h.Close()
		}
		if _, err := run("ip", "netns", "del", n.Name); err != nil {
			t.Errorf("delete network namespace: %v", err)
		}
	})
	h, err := netns.GetFromName(n.Name)
	if err != nil {
		t.Fatalf("open network namespace %s: %v", n.Name, err)
	}
	n.h = h
	n.MustExec("ip", "link", "set", "lo", "up")
	return n
}

// Go runs fn on a new goroutine whose OS thread is locked into the namespace, and returns a
// function that waits for fn and returns its error (call it once or more; it always returns
// the same error). Commands fn starts with os/exec run in the namespace too. fn must not call
// t.FailNow or its kin: it is not the test goroutine. Afterwards the thread goes back to its
// original namespace; if that fails it is left locked, so the runtime discards it.
func (n *NS) Go(fn func() error) (wait func() error) {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- n.inside(fn)
	}()
	return sync.OnceValue(func() error { return <-errc })
}

// inside runs fn in the namespace on the locked calling thread and unlocks it only once it is
// back in its original namespace.
func (n *NS) inside(fn func() error) error {
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(n.h); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", n.Name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("leave network namespace %s: %w", n.Name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Do runs fn inside the namespace, as Go does, and waits for it.
func (n *NS) Do(fn func() error) error {
	return n.Go(fn)()
}

// Netlink returns a netlink socket bound to the namespace, usable from any goroutine, closed
// when the test ends.
func (n *NS) Netlink() *netlink.Handle {
	n.t.Helper()
	h, err := netlink.NewHandleAt(n.h)
	if err != nil {
		n.t.Fatalf("netlink socket in %s: %v", n.Name, err)
	}
	n.t.Cleanup(h.Close)
	return h
}

// StopTimeout bounds how long Stop waits for a run to return once cancelled.
const StopTimeout = 30 * time.Second

// Run is a function Start runs in a namespace.
type Run struct {
	t      testing.TB
	ns     string
	cancel context.CancelFunc
	done   chan struct{} // closed once the function returned, err set
	err    error
	stop   func() error
}

// Start runs run(ctx) on a thread locked into the namespace, as Go does, until Stop is called or
// the test ends.
func (n *NS) Start(t testing.TB, run func(ctx context.Context) error) *Run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Run{t: t, ns: n.Name, cancel: cancel, done: make(chan struct{})}
	wait := n.Go(func() error { return run(ctx) })
	go func() {
		r.err = wait()
		close(r.done)
	}()
	r.stop = sync.OnceValue(func() error {
		r.cancel()
		select {
		case <-r.done:
			return r.err
		case <-time.After(StopTimeout):
			t.Errorf("a run in network namespace %s did not return within %v of its cancel", r.ns, StopTimeout)
			return context.DeadlineExceeded
		}
	})
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// Stop cancels the run's context and returns its error; it fails the test if the function has
// not returned within StopTimeout. Later calls return the same.
func (r *Run) Stop() error { return r.stop() }

// Exited reports, without waiting, whether the function returned, and its error if so.
func (r *Run) Exited() (bool, error) {
	select {
	case <-r.done:
		return true, r.err
	default:
		return false, nil
	}
}
