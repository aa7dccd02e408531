package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestVersionAndArguments(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--version"}, &out); err != nil || out.String() != "pause dev\n" {
		t.Fatalf("run --version = %v, %q", err, out.String())
	}
	if err := run(t.Context(), []string{"sleep"}, &out); err == nil {
		t.Fatal("run with an argument succeeded")
	}
}

// TestReapsAndStops proves the two things pause does: a child that exits is reaped (its zombie
// disappears from /proc) and cancelling (SIGTERM in main) returns nil.
func TestReapsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, &bytes.Buffer{}) }()
	time.Sleep(50 * time.Millisecond) // let run subscribe to SIGCHLD
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stat := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat"
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(stat)
		if os.IsNotExist(err) {
			break // reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d not reaped: %s", cmd.Process.Pid, strings.TrimSpace(string(b)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
