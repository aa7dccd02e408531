package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// startServe runs `netprobe serve` on a loopback port and returns its address.
func startServe(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port for both protocols, most likely
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "-listen", addr}, &bytes.Buffer{}, &bytes.Buffer{}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if i == 100 {
			t.Fatalf("serve never listened on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// probe runs a client verb and decodes its JSON into v.
func probe(t *testing.T, v any, args ...string) error {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(t.Context(), args, &out, &errb)
	if out.Len() > 0 {
		if jerr := json.Unmarshal(out.Bytes(), v); jerr != nil {
			t.Fatalf("%v printed %q: %v", args, out.String(), jerr)
		}
	}
	return err
}

func TestRTT(t *testing.T) {
	addr := startServe(t)
	for _, proto := range []string{"tcp", "udp"} {
		var r RTTResult
		args := []string{"rtt", "-to", addr, "-n", "50", "-size", "1000"}
		if proto == "udp" {
			args = append(args, "-udp")
		}
		if err := probe(t, &r, args...); err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if r.Verb != "rtt" || r.Proto != proto || r.N != 50 || r.Size != 1000 {
			t.Errorf("%s: %+v", proto, r)
		}
		if !(r.P50 > 0 && r.P50 <= r.P95 && r.P95 <= r.P99 && r.P99 <= r.Max) {
			t.Errorf("%s: percentiles out of order: %+v", proto, r.Latency)
		}
	}
}

func TestSetup(t *testing.T) {
	addr := startServe(t)
	var r SetupResult
	if err := probe(t, &r, "setup", "-to", addr, "-n", "20"); err != nil {
		t.Fatal(err)
	}
	if r.N != 20 || r.P50 <= 0 || r.P95 < r.P50 {
		t.Errorf("%+v", r)
	}
}

func TestHold(t *testing.T) {
	addr := startServe(t)
	var r HoldResult
	if err := probe(t, &r, "hold", "-to", addr, "-flows", "300", "-parallel", "16", "-hold", "100ms"); err != nil {
		t.Fatal(err)
	}
	if r.Opened != 300 || r.Verified != 300 || r.Failed != 0 || r.FlowsPerS <= 0 {
		t.Errorf("%+v", r)
	}
}

// A path that refuses flows fails the verb, and hold still reports its counts.
func TestHoldReportsFailures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	var r HoldResult
	err = probe(t, &r, "hold", "-to", closed, "-flows", "5", "-parallel", "2")
	if err == nil || !strings.Contains(err.Error(), "5 of 5 flows failed") {
		t.Fatalf("err = %v, want 5 of 5 flows failed", err)
	}
	if r.Opened != 0 || r.Failed != 5 || !strings.Contains(r.FirstError, "refused") {
		t.Errorf("%+v", r)
	}
	var s SetupResult
	if err := probe(t, &s, "setup", "-to", closed, "-n", "1"); err == nil {
		t.Error("setup to a closed port succeeded")
	}
}

func TestBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "no verb"},
		{[]string{"ping"}, `unknown verb "ping"`},
		{[]string{"rtt"}, "-to host:port is required"},
		{[]string{"rtt", "-to", "127.0.0.1:1", "-size", "0"}, "-size 0"},
		{[]string{"hold", "-to", "127.0.0.1:1", "-flows", "0"}, "-flows 0"},
		{[]string{"hold", "-to", "127.0.0.1:1", "-parallel", "0"}, "-parallel 0"},
		{[]string{"hold", "-to", "127.0.0.1:1", "-flows", "100000000"}, "RLIMIT_NOFILE"},
	} {
		err := run(t.Context(), c.args, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.args, err, c.want)
		}
	}
}

// TestServeOneDescriptorPerFlow: a held flow costs the server its socket alone (io.Copy between TCP
// connections would splice through a pipe: three descriptors a flow, and a server holding
// 10,000 flows ran out of them on a real pod).
func TestServeOneDescriptorPerFlow(t *testing.T) {
	addr := startServe(t)
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		return len(ents)
	}
	before := fds()
	const n = 200
	for i := range n {
		c, err := openFlow(t.Context(), addr)
		if err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
		defer c.Close()
	}
	// Each flow has echoed a byte, so the server holds it: n client sockets and n server ones.
	if got := fds() - before; got > 2*n+16 {
		t.Errorf("%d flows held took %d descriptors, want about %d (one on each side)", n, got, 2*n)
	}
}
