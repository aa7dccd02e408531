package wgdevice

import (
	"context"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

// Side is the end of the tunnel an agent holds: it dials the other agent (DialSide) or waits for
// it to dial (ListenSide). Which agent dials is the mesh's direction; the device behind either
// side runs the same, and so do the metrics, named after the side.
type Side struct {
	// Run keeps the side up until ctx is done: re-dials, or accepts sessions.
	Run func(ctx context.Context) error
	// Stats are the tunnel's counters.
	Stats func() tunnel.Stats
	// Bind carries the device's datagrams over the side's sessions.
	Bind Bind
	// Role names the tunnel's metrics at this side.
	Role TunnelRole
	// Listen, at a listening side, opens its listener before Run (a taken port fails first),
	// and Listening reports whether Run serves it (readiness); both nil at a dialing side.
	Listen    func() error
	Listening func() bool
}

// DialSide is the side of an agent that dials its peer's tunnel server.
func DialSide(c *tunnel.Client) Side {
	return Side{
		Run:   c.Run,
		Stats: c.Stats,
		Bind:  tunnel.NewClientBind(c),
		Role: TunnelRole{
			SessionsHelp: "WebSocket sessions established with the peer's tunnel server; reconnects are this minus one.",
			RefusedName:  "dial_failures_total",
			RefusedHelp:  "Failed attempts to open a WebSocket session.",
			CertRefusedHelp: "Attempts to open a WebSocket session over wss:// refused because the server's certificate did not verify " +
				"(unknown authority, expired, another name); the agent logs why and never falls back to ws://.",
		},
	}
}

// ListenSide is the side of an agent that serves the tunnel its peer dials; s must listen on
// its own address (tunnel.ServerConfig.Addr).
func ListenSide(s *tunnel.Server) Side {
	return Side{
		Run:   s.Run,
		Stats: s.Stats,
		Bind:  tunnel.NewServerBind(s),
		Role: TunnelRole{
			SessionsHelp:  "WebSocket sessions accepted; a reconnecting or replacing client adds one each time.",
			RefusedName:   "refused_upgrades_total",
			RefusedHelp:   "Upgrade requests answered 400 (wrong path, bad token, rate limited, not a WebSocket upgrade).",
			MalformedHelp: "Connections to the tunnel port that closed without sending a valid HTTP request.",
		},
		Listen:    s.Listen,
		Listening: func() bool { return s.ListenAddr() != nil },
	}
}
