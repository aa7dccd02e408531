package tunnel

import "sync/atomic"

// Stats are counters of a Client or Server since it was created.
type Stats struct {
	// Sessions counts WebSocket sessions established (client: dials that
	// got 101, server: accepted upgrades).
	Sessions uint64
	// Active is 1 while a session carries traffic, else 0.
	Active int
	// Refused counts failed dials (client) or refused upgrades (server).
	Refused uint64
	// CertRefused counts the client's dials refused because the server's
	// certificate did not verify (part of Refused); 0 at a server.
	CertRefused uint64
	// RxDatagrams and TxDatagrams count datagrams received from and written
	// to the WebSocket.
	RxDatagrams, TxDatagrams uint64
	// RxDropped counts received datagrams lost to a full queue or a buffer
	// too small; TxDropped counts datagrams sent while no session was up or
	// lost with a failing session.
	RxDropped, TxDropped uint64
	// Malformed counts connections to a Server's own listener that sent
	// bytes but no valid HTTP request (garbage, truncated, too slow, too
	// large); 0 at a client.
	Malformed uint64
}

type counters struct {
	sessions, refused atomic.Uint64
	certRefused       atomic.Uint64
	malformed         atomic.Uint64
	rx, tx, txDropped atomic.Uint64
}

func (c *counters) snapshot(q *queue, active bool) Stats {
	st := Stats{
		Sessions:    c.sessions.Load(),
		Refused:     c.refused.Load(),
		CertRefused: c.certRefused.Load(),
		RxDatagrams: c.rx.Load(),
		TxDatagrams: c.tx.Load(),
		RxDropped:   q.dropped.Load(),
		TxDropped:   c.txDropped.Load(),
		Malformed:   c.malformed.Load(),
	}
	if active {
		st.Active = 1
	}
	return st
}
