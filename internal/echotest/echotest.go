// Package echotest serves the echo that tests send traffic to: every byte a connection sends
// comes back, until the test ends.
package echotest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// TCP echoes every connection accepted on ln until the test ends; then it closes ln and every
// connection and waits for its goroutines.
func TCP(t testing.TB, ln net.Listener) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
}
