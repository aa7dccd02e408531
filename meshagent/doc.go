// Package meshagent is the runtime of the mesh-agent sidecar that joins an offloaded pod to the
// WireGuard mesh of its shadow pod in the local cluster.
//
// Data flow: New validates a meshspec.Spec and prepares a tunnel.Client. Run then
//
//  1. listens for HTTP (/healthz, /readyz, /metrics) and starts the tunnel client, which keeps a
//     WebSocket session to the shadow's tunnel server up and re-dials when it breaks;
//  2. brings the mesh engine up (wgdevice.Start): a TUN device (made sure /dev/net/tun exists)
//     and an embedded wireguard-go device whose conn.Bind is the tunnel (tunnel.ClientBind),
//     configured with the identity computed from the spec (identity, a pure function), its link
//     given the MTU, the address and routes to the peer's address and the spec's routes
//     (planLink computes, wgdevice.Link.Apply applies), and the UAPI socket
//     <UAPIDir>/<interface>.sock for wg(8) and wgctrl;
//  3. polls the device until the first handshake, then answers /readyz with 200 and writes the
//     ready file.
//
// On cancel it undoes all of it in reverse order and returns once its goroutines are gone.
//
// Netstack mode (spec mode "netstack", or Config.Mode) starts the engine on a usernet.Stack
// instead of a TUN device whose flows from the mesh go to the same port on the pod's loopback; a DNS
// forwarder (DNSListen, relay.Sessions and relay.Streams to the mesh nameserver through the
// stack) and an HTTP proxy (ProxyListen, dialproxy: hosts the mesh DNS resolves into the routes
// go through the stack, others are dialed from the pod) let the workload reach the local cluster
// without a route. No capability, any user.
//
// Caveats: kernel mode needs CAP_NET_ADMIN (TUN, netlink) and CAP_MKNOD only when /dev/net/tun is missing;
// no sysctl is written. The TUN device belongs to the process: if the process dies, the kernel
// deletes the link with its address and routes, so a restart starts clean. The kernel side is
// Linux-only (wgdevice.Link); elsewhere Run fails with errors.ErrUnsupported. What the two agents
// share of the device (bring-up, health, UAPI, peer and tunnel metrics) is wgdevice's engine;
// what is here is the client's role.
package meshagent
