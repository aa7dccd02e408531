//go:build unix

package main

import (
	"os"
	"syscall"
)

// childExit is the signal of a child's exit.
var childExit = []os.Signal{syscall.SIGCHLD}

// reap collects every exited child, so none stays a zombie.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
