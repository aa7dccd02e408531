package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/stats"
)

const (
	defaultTimeout = 5 * time.Minute
	dialTimeout    = 10 * time.Second
	maxDatagram    = 64 << 10
)

// serve echoes every TCP flow and every UDP datagram on listen until ctx ends.
func serve(ctx context.Context, listen string, stderr io.Writer) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen tcp: %w", err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen udp: %w", err)
	}
	fmt.Fprintf(stderr, "netprobe %s echoing TCP and UDP on %s\n", version, ln.Addr())
	go func() {
		<-ctx.Done()
		ln.Close()
		pc.Close()
	}()
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				fmt.Fprintf(stderr, "netprobe: accept: %v\n", err)
				time.Sleep(50 * time.Millisecond) // out of descriptors: let flows close
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			echo(c)
		}()
	}
}

// echo writes back what c reads until c ends. A plain loop: io.Copy between two TCP
// connections splices through a pipe, three descriptors a flow instead of one, which would run a
// server holding 10,000 flows out of descriptors.
func echo(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Latency is a distribution of durations in microseconds.
type Latency struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_us"`
	P95  float64 `json:"p95_us"`
	P99  float64 `json:"p99_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

// latencyOf summarizes ds (sorted in place); nearest-rank percentiles.
func latencyOf(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	rank := func(q float64) float64 { return us(stats.QuantileSorted(ds, q)) }
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Latency{N: len(ds), P50: rank(0.50), P95: rank(0.95), P99: rank(0.99), Max: us(ds[len(ds)-1]), Mean: us(sum) / float64(len(ds))}
}

// RTTResult is what rtt prints.
type RTTResult struct {
	Verb  string `json:"verb"`
	Proto string `json:"proto"`
	To    string `json:"to"`
	Size  int    `json:"size"`
	Latency
}

// measureRTT sends n messages of size bytes over one flow, each after the previous one's echo.
func measureRTT(ctx context.Context, to string, n, size int, udp bool) (*RTTResult, error) {
	if size < 1 || size > maxDatagram {
		return nil, fmt.Errorf("-size %d: want 1 to %d", size, maxDatagram)
	}
	proto := "tcp"
	if udp {
		proto = "udp"
	}
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, proto, to)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	msg, got := make([]byte, size), make([]byte, size)
	for i := range msg {
		msg[i] = byte(i)
	}
	ds := make([]time.Duration, 0, n)
	for i := range n {
		msg[0] = byte(i)
		t0 := time.Now()
		if udp {
			// A lost datagram is retried once a second; its round trip counts the wait.
			if err := udpRoundTrip(c, msg, got); err != nil {
				return nil, fmt.Errorf("round trip %d: %w", i+1, err)
			}
		} else if _, err := c.Write(msg); err != nil {
			return nil, fmt.Errorf("round trip %d: %w", i+1, err)
		} else if _, err := io.ReadFull(c, got); err != nil {
			return nil, fmt.Errorf("round trip %d: %w", i+1, err)
		}
		ds = append(ds, time.Since(t0))
		if got[0] != msg[0] {
			return nil, fmt.Errorf("round trip %d: echo carried byte %d, sent %d", i+1, got[0], msg[0])
		}
	}
	return &RTTResult{Verb: "rtt", Proto: proto, To: to, Size: size, Latency: latencyOf(ds)}, nil
}

// udpRoundTrip writes msg and reads its echo into got, resending after a second of silence, up to
// five times; stale echoes of earlier sends are skipped.
func udpRoundTrip(c net.Conn, msg, got []byte) error {
	for range 5 {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, err := c.Read(got)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break // resend
			}
			if err != nil {
				return err
			}
			if n == len(msg) && got[0] == msg[0] {
				c.SetReadDeadline(time.Time{})
				return nil
			}
		}
	}
	return errors.New("no echo after 5 tries")
}

// SetupResult is what setup prints: each flow's time from the dial to its first echoed byte.
type SetupResult struct {
	Verb string `json:"verb"`
	To   string `json:"to"`
	Latency
}

// measureSetup opens n flows one after another; each sends one byte, reads its echo and closes.
func measureSetup(ctx context.Context, to string, n int) (*SetupResult, error) {
	ds := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		c, err := openFlow(ctx, to)
		if err != nil {
			return nil, fmt.Errorf("flow %d: %w", i+1, err)
		}
		ds = append(ds, time.Since(t0))
		c.Close()
	}
	return &SetupResult{Verb: "setup", To: to, Latency: latencyOf(ds)}, nil
}

// openFlow dials to and waits for one byte's echo, so the flow is known to cross the whole path.
func openFlow(ctx context.Context, to string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", to)
	if err != nil {
		return nil, err
	}
	if err := echoOne(c, 'x'); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// echoOne writes b and reads it back within dialTimeout.
func echoOne(c net.Conn, b byte) error {
	c.SetDeadline(time.Now().Add(dialTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{b}); err != nil {
		return err
	}
	var got [1]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return err
	}
	if got[0] != b {
		return fmt.Errorf("echo carried %q, sent %q", got[0], b)
	}
	return nil
}

type holdConfig struct {
	To       string
	Flows    int
	Parallel int
	Hold     time.Duration
}

// HoldResult is what hold prints.
type HoldResult struct {
	Verb       string  `json:"verb"`
	To         string  `json:"to"`
	Flows      int     `json:"flows"`
	Opened     int     `json:"opened"`      // flows that echoed their first byte
	Verified   int     `json:"verified"`    // of those, flows that echoed again after the hold
	Failed     int     `json:"failed"`      // flows that failed to open or to echo again
	OpenSec    float64 `json:"open_s"`      // from the first dial to the last flow open
	FlowsPerS  float64 `json:"flows_per_s"` // opened / open_s
	FirstError string  `json:"first_error,omitempty"`
}

// holdFlows opens c.Flows flows, c.Parallel dials at a time, keeps all of them open for c.Hold,
// checks that each still echoes, then closes them all. Any failure is an error, reported with
// the counts.
func holdFlows(ctx context.Context, c holdConfig) (*HoldResult, error) {
	if c.Flows < 1 {
		return nil, fmt.Errorf("-flows %d: want at least 1", c.Flows)
	}
	if c.Parallel < 1 {
		return nil, fmt.Errorf("-parallel %d: want at least 1", c.Parallel)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(c.Flows)+64 {
		return nil, fmt.Errorf("-flows %d needs that many file descriptors and a few more; RLIMIT_NOFILE is %d (hard %d)", c.Flows, lim.Cur, lim.Max)
	}
	res := &HoldResult{Verb: "hold", To: c.To, Flows: c.Flows}
	conns := make([]net.Conn, c.Flows)
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				cn.Close()
			}
		}
	}()
	var (
		failed   atomic.Int64
		firstErr atomic.Pointer[string]
	)
	fail := func(err error) {
		failed.Add(1)
		s := err.Error()
		firstErr.CompareAndSwap(nil, &s)
	}
	// each runs f for every flow index, c.Parallel at a time, stopping early once ctx ends.
	each := func(f func(i int)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(c.Parallel, c.Flows) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					i := int(next.Add(1)) - 1
					if i >= c.Flows {
						return
					}
					f(i)
				}
			}()
		}
		wg.Wait()
	}
	t0 := time.Now()
	each(func(i int) {
		cn, err := openFlow(ctx, c.To)
		if err != nil {
			fail(fmt.Errorf("open flow %d: %w", i+1, err))
			return
		}
		conns[i] = cn
	})
	res.OpenSec = time.Since(t0).Seconds()
	for _, cn := range conns {
		if cn != nil {
			res.Opened++
		}
	}
	if res.OpenSec > 0 {
		res.FlowsPerS = float64(res.Opened) / res.OpenSec
	}
	select {
	case <-time.After(c.Hold):
	case <-ctx.Done():
	}
	var verified atomic.Int64
	each(func(i int) {
		if conns[i] == nil {
			return
		}
		if err := echoOne(conns[i], 'y'); err != nil {
			fail(fmt.Errorf("flow %d after the hold: %w", i+1, err))
			return
		}
		verified.Add(1)
	})
	res.Verified = int(verified.Load())
	res.Failed = int(failed.Load())
	if p := firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	if err := ctx.Err(); err != nil && res.Verified < c.Flows {
		return res, fmt.Errorf("%d of %d flows checked before the time limit: %w", res.Verified, c.Flows, err)
	}
	if res.Failed > 0 {
		return res, fmt.Errorf("%d of %d flows failed; first: %s", res.Failed, c.Flows, res.FirstError)
	}
	return res, nil
}
