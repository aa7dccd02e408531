//go:build !unix

package main

import "os"

// childExit is empty: without SIGCHLD there is nothing to reap.
var childExit []os.Signal

func reap() {}
