package netfilter

import (
	"errors"
	"net/netip"
	"testing"
)

// validConfig is the stock mesh: eth0 holds the pod IP, wg0 leads to 10.7.0.2.
func validConfig() Config {
	return Config{
		MainInterface:      "eth0",
		WireGuardInterface: "wg0",
		PodIP:              netip.MustParseAddr("10.244.1.17"),
		Peer:               netip.MustParseAddr("10.7.0.2"),
		ExcludeTCP:         []uint16{28080, 9090},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		ok     bool
	}{
		{"valid", func(*Config) {}, true},
		{"no pod IP", func(c *Config) { c.PodIP = netip.Addr{} }, true},
		{"no excluded ports", func(c *Config) { c.ExcludeTCP = nil }, true},
		{"main missing", func(c *Config) { c.MainInterface = "" }, false},
		{"wireguard missing", func(c *Config) { c.WireGuardInterface = "" }, false},
		{"same interface", func(c *Config) { c.WireGuardInterface = "eth0" }, false},
		{"interface too long", func(c *Config) { c.MainInterface = "eth0123456789012" }, false},
		{"interface wildcard", func(c *Config) { c.MainInterface = "eth+" }, false},
		{"interface with space", func(c *Config) { c.MainInterface = "eth 0" }, false},
		{"interface with slash", func(c *Config) { c.WireGuardInterface = "wg/0" }, false},
		{"peer missing", func(c *Config) { c.Peer = netip.Addr{} }, false},
		{"peer IPv6", func(c *Config) { c.Peer = netip.MustParseAddr("fd00::2") }, false},
		{"peer 4in6", func(c *Config) { c.Peer = netip.MustParseAddr("::ffff:10.7.0.2") }, false},
		{"peer unspecified", func(c *Config) { c.Peer = netip.IPv4Unspecified() }, false},
		{"pod IP IPv6", func(c *Config) { c.PodIP = netip.MustParseAddr("fd00::1") }, false},
		{"pod IP is peer", func(c *Config) { c.PodIP = c.Peer }, false},
		{"tcp port 0", func(c *Config) { c.ExcludeTCP = []uint16{80, 0} }, false},
		{"udp port 0", func(c *Config) { c.ExcludeUDP = []uint16{0} }, false},
		{"negative interval", func(c *Config) { c.Interval = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.modify(&c)
			err := c.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if !tt.ok && !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate() = %v, want an ErrConfig", err)
			}
		})
	}
}

func TestNewDefaults(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("New(Config{}) = %v, want an ErrConfig", err)
	}
	c := validConfig()
	c.IPTables = newFakeIPTables()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	if s.interval != DefaultInterval || s.log == nil || s.forwardPath != ipForwardPath {
		t.Fatalf("defaults not applied: interval %v, logger %v, forward path %q", s.interval, s.log, s.forwardPath)
	}
}
