// Package tunnel carries WireGuard datagrams over a WebSocket in wstunnel v10's wire format, as
// a conn.Bind for an embedded wireguard-go device at each end: Client and ClientBind on the
// offloaded pod's side, Server and ServerBind on the shadow pod's side.
//
// Sending: wireguard-go calls Bind.Send with a batch; link writes it to the live session as one
// frame per datagram into a 256 KiB buffer, flushed once (one write for a whole batch), or holds
// it for a second in a small backlog while no session is up (link.go, frame.go). Once the device's
// TUN is wrapped (Bind.TUN), a TUN read waits while wireguard-go holds DefaultOutFlight packets it
// read and has not sent yet (flight.go): each costs it a 64 KiB buffer, and its queues hold 1,024.
//
// Receiving: a session's reader (wsConn.serve) waits until the next frame is wholly in its read
// buffer, handling control frames on the way, then hands it to the inbox (inbox.go). The
// ReceiveFunc wireguard-go calls posts its buffers there; the reader copies the datagram, and
// every further one already buffered up to the batch size, straight into them, unmasking in
// place. Nothing else is read meanwhile: when wireguard-go is busy, the WebSocket's TCP window
// fills and the peer slows down. Once the device's TUN is wrapped (Bind.TUN), a receive also
// waits while wireguard-go holds DefaultInFlight datagrams it has not written to the TUN
// (flight.go), since it keeps a 64 KiB buffer for each. While the Bind is closed (wireguard-go
// rebinds), readers keep reading into a small queue for the next Open (queue.go).
//
// Sessions outlive Binds: the Client re-dials with backoff and the Server lets a newer session
// replace the older, so wireguard-go never sees a transport error.
package tunnel
