// Package usernet is an IP stack in user space, gVisor's (the one wireguard-go's tun/netstack
// wraps), presented to wireguard-go as its tun.Device: a mesh end that needs no TUN device, no
// netlink, no iptables and no capability.
//
// Data flow: wireguard-go writes the decrypted packets of its peer into the stack (Write) and
// reads what the stack sends (Read). A TCP connection or UDP flow the peer opens to one of the
// stack's Addresses (or, with AnyDestination, to any address) ends in the stack: DialTCP or
// DialUDP of the Config opens its upstream, and the relay package copies between the two. A TCP
// handshake completes only once the upstream answered, so a refused upstream is a reset to the
// peer, as a kernel DNAT to a closed port would give. Stack.DialTCP and Stack.DialUDP open flows
// the other way, from the stack's first address into the mesh.
//
// Bounds: MaxFlows TCP and UDP flows at once (a TCP flow beyond it is reset, a UDP one dropped),
// MaxPending TCP handshakes waiting for their upstream, UDPIdle for a silent UDP flow. Close
// ends every flow and returns once their goroutines are gone.
//
// Caveats: IPv4 and IPv6 TCP and UDP only; ICMP is answered for the stack's own addresses
// (echo) but never forwarded; IP options and fragments are gVisor's business.
package usernet
