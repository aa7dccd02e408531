// Package porttest finds loopback ports for tests.
package porttest

import (
	"net"
	"testing"
)

// FreeLoopback returns a loopback address ("127.0.0.1:port") whose port was free a moment ago.
func FreeLoopback(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
