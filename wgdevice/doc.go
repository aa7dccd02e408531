// Package wgdevice is the mesh engine both agents run: an embedded wireguard-go device with one
// peer, on a TUN device (kernel mode) or a user-space stack (netstack mode), behind the tunnel's
// Bind. It does not decide what the device is configured with, only how that is done; the
// agents keep their roles (which end of the tunnel, iptables or relays, the plugin's or the VK's
// input).
//
//   - Start brings an Engine up from a Config (Identity, Bind, LinkPlan or usernet.Config, UAPI
//     socket) and undoes a failure half-way; Close undoes it all. Running holds an agent's engine
//     for its probes and metrics. Identity.UAPI is the UAPI "set" text, a pure function.
//   - ServeHealthz, ProbeMux and NewRegistry are what both agents serve: /healthz of the
//     engine, the agent's /readyz, and the metrics of readiness, the tunnel and the peer.
//   - LinkPlan is the kernel state wanted for the device's interface (MTU, address, routes);
//     the agents compute it from their configuration. OpenLink makes sure the TUN clone device
//     exists and opens a netlink socket in the calling thread's network namespace; Link.Apply
//     applies a plan idempotently and Link.Remove undoes exactly what Apply added. Linux only:
//     elsewhere OpenLink fails with errors.ErrUnsupported, so the agents build and vet anywhere.
//   - ListenUAPI serves the device's UAPI on a unix socket, for wg(8) and wgctrl, with an owner:
//     Close ends every connection and waits for its handler.
//   - ParsePeers and ReadPeer read peer state (counters, last handshake) back from the UAPI
//     "get" text; device lines, the private key among them, are skipped and never quoted.
//   - NewLogger bridges wireguard-go's printf device.Logger to log/slog.
//
// It imports neither Kubernetes nor the agents; its project imports are the mechanisms it
// composes (tunnel's Stats, usernet's stack) and meshspec.Key, the shared stdlib-only data
// contract.
package wgdevice
