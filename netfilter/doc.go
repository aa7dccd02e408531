// Package netfilter makes the shadow pod forward its traffic to the offloaded pod, so that the
// remote pod answers on the shadow pod's IP and reaches the local cluster as that IP.
//
// Data flow: Rules computes, from a Config, the exact chains the package owns (a RuleSet, pure
// and golden-tested); a Shadow applies them through the IPTables interface, satisfied by
// go-iptables' *iptables.IPTables, and Run keeps them applied until its context ends, then
// removes them. In the shadow pod's network namespace (IPv4 only):
//
//	filter FORWARD     -> IKM-SHADOW-FORWARD      accept main <-> wireguard, both ways
//	nat    POSTROUTING -> IKM-SHADOW-POSTROUTING  MASQUERADE out of the tunnel interface, and
//	                                              MASQUERADE the peer's traffic out of main
//	nat    PREROUTING  -> IKM-SHADOW-PREROUTING   on main, to the pod: excluded TCP/UDP ports
//	                                              RETURN, every other TCP and UDP flow is DNATed
//	                                              to the peer, port unchanged
//	net.ipv4.ip_forward = 1, restored on removal if it was changed
//
// Every rule carries a comment starting with CommentPrefix, and each owned chain is entered by
// one jump rule inserted at position 1 of its builtin chain. Nothing outside the owned chains
// and their jump rules is touched.
//
// Caveats:
//   - Kernel calls act on the network namespace of the calling thread (iptables children and
//     /proc/sys/net both follow it). Shadow starts no goroutine, so a caller that enters a
//     namespace with runtime.LockOSThread and setns keeps it across Run.
//   - Changes are a sequence of iptables calls, not one transaction: a chain being rewritten is
//     briefly incomplete, and a failed Ensure rolls back only what that call created.
//   - ICMP is not forwarded: the shadow pod itself answers pings. Flows the shadow pod opens
//     itself (OUTPUT) are not redirected either.
//   - MASQUERADE towards the peer hides the client's address from the offloaded pod; it sees
//     the shadow pod's tunnel address instead.
//   - Writing ip_forward needs a writable /proc/sys (a privileged container); when it is
//     already 1, for instance set through the pod's securityContext.sysctls, nothing is written.
package netfilter
