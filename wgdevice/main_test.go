package wgdevice

import (
	"testing"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/internal/leakcheck"
)

// TestMain fails the run when goroutines of this package (the UAPI socket's handlers) or of
// wireguard-go outlive the tests.
func TestMain(m *testing.M) {
	leakcheck.Main(m, leakcheck.Config{Markers: []string{
		"interlink-k8s-mesh/wgdevice.",
		"golang.zx2c4.com/wireguard/device.",
		"golang.zx2c4.com/wireguard/tun.",
	}})
}
