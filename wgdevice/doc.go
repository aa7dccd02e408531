// Package wgdevice is the plumbing around an embedded wireguard-go device that both agents
// share: it does not decide what the device is configured with, only how that is done.
//
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
// It imports neither Kubernetes nor the agents; its only project import is meshspec.Key, the
// shared stdlib-only data contract.
package wgdevice
