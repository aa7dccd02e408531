// Package shadowagent is the runtime of the shadow-agent, the single container of the shadow
// pod that the virtual kubelet creates in the local cluster for every offloaded pod. The shadow
// pod holds the offloaded pod's identity (its IP, its Services); the agent forwards what reaches
// that identity to the remote pod, and lets the remote pod reach the local cluster as that IP.
//
// Data flow: New validates a Config (the VK's template data: path prefix, private key, client
// public key; the rest are the stock mesh's constants) and prepares a tunnel.Server. Run then
//
//  1. listens on HealthAddr (/healthz, /readyz, /metrics) and on ListenAddr, where an HTTP
//     server of its own hands upgrade requests to the tunnel server (the wstunnel v10 wire
//     format) and logs the connections net/http would refuse silently;
//  2. finds the main interface (the one holding PodIP, else the default route's, unless set);
//  3. brings the mesh engine up (wgdevice.Start): a TUN device (made sure /dev/net/tun exists)
//     and an embedded wireguard-go device whose conn.Bind is the tunnel (tunnel.ServerBind,
//     whose backlog drops the handshake initiations sent while no session is up: they would
//     cross the pod's own on replay), configured with the identity computed from the Config
//     (identity, a pure function): its private key and one peer, the offloaded pod, allowed
//     PeerAddress only; its link given the MTU, Address and a route to PeerAddress (planLink
//     computes, wgdevice.Link.Apply applies), and the UAPI socket <UAPIDir>/<Interface>.sock;
//  4. applies the netfilter rule set (DNAT of every TCP and UDP flow arriving on the main
//     interface to PeerAddress, except the agent's own ports; MASQUERADE both ways; forwarding),
//     then answers /readyz with 200 and keeps re-asserting the rules (netfilter.Shadow.Run).
//
// Netstack mode (Config.Mode) replaces steps 2 and 4, and starts the engine on a usernet.Stack
// that terminates every flow the offloaded pod sends (any destination) and dials it from this
// pod's own sockets; the declared ports (TCPPorts, UDPPorts) are ordinary listeners relayed to
// the offloaded pod through the stack (relay.Streams, relay.Sessions). No capability, any user;
// readiness waits for the relays instead of the rules.
//
// Readiness does not wait for the peer: the VK waits for the shadow pod to be Ready before the
// offloaded pod exists. On cancel, Run removes the rules, the route and the address, closes
// everything in reverse order and returns once its goroutines are gone.
//
// Caveats:
//   - Kernel mode needs CAP_NET_ADMIN (TUN, netlink, iptables), CAP_MKNOD only when /dev/net/tun is
//     missing, and net.ipv4.ip_forward at 1 in its network namespace (a pod's namespace takes the
//     node's value; with a writable /proc/sys it sets it itself). IPv4 only, as the netfilter package.
//   - Kernel state is made in the network namespace of the thread that calls Run, and the
//     iptables calls keep running from it (see Agent.Run).
//   - The TUN device belongs to the process: if it dies, the kernel deletes the link with its
//     address and route, but the iptables rules stay until the next start rewrites them (or
//     the pod's network namespace goes away).
//   - The tunnel serves one peer: a newer session with the path prefix replaces the older one
//     (logged as "tunnel session replaced"); WireGuard's own authentication decides which one
//     carries traffic.
//   - Kernel code is Linux-only (wgdevice.Link, routes_linux.go); elsewhere Run fails with
//     errors.ErrUnsupported.
package shadowagent
