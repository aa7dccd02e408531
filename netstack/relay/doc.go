// Package relay copies flows between two connections, the user-space half of what DNAT and
// MASQUERADE do in a kernel: a TCP stream with half-close (Stream), a datagram session that
// expires when idle (Datagrams), and the per-client sessions of a UDP listening socket
// (Sessions).
//
// Memory is bounded per flow: a stream holds two pooled buffers of BufferSize while it copies, a
// datagram session two of MaxDatagram; Sessions holds at most MaxSessions sessions and drops
// the datagrams of new clients beyond that. Every function returns only after the goroutines
// it started have exited, and closes both connections before it returns.
//
// It imports neither Kubernetes nor the agents: callers say where a flow goes.
package relay
