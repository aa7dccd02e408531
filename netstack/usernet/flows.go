package usernet

import (
	"context"
	"net"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/relay"
)

// forwardTCP runs on a goroutine gVisor starts for every SYN without a listener: it dials the
// upstream, then completes the handshake (or resets) and relays until the flow ends.
func (s *Stack) forwardTCP(r *tcp.ForwarderRequest) {
	src, dst := idAddrs(r.ID())
	if s.cfg.DialTCP == nil || !s.admit(&s.tcpActive) {
		r.Complete(true)
		return
	}
	defer s.tcpActive.Add(-1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		r.Complete(true)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	ctx, cancel := context.WithTimeout(s.ctx, DefaultDialTimeout)
	up, err := s.cfg.DialTCP(ctx, src, dst)
	cancel()
	if err != nil {
		s.refused.Add(1)
		s.log.Debug("tcp flow refused", "src", src, "dst", dst, "err", err)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		up.Close()
		s.log.Debug("tcp flow handshake", "src", src, "dst", dst, "err", terr)
		r.Complete(true)
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	down := gonet.NewTCPConn(&wq, ep)
	if !s.track(up, down) {
		up.Close()
		down.Close()
		return
	}
	s.tcpTotal.Add(1)
	_, _, err = relay.Stream(down, up)
	s.untrack(up, down)
	if err != nil {
		s.log.Debug("tcp flow ended", "src", src, "dst", dst, "err", err)
	}
}

// forwardUDP runs on gVisor's packet path for the first datagram of a flow without an
// endpoint: it makes the endpoint here, so the flow's next datagrams find it, and dials and
// relays on a goroutine of its own.
func (s *Stack) forwardUDP(r *udp.ForwarderRequest) {
	src, dst := idAddrs(r.ID())
	if s.cfg.DialUDP == nil || !s.admit(&s.udpActive) {
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		s.udpActive.Add(-1)
		s.log.Debug("udp flow endpoint", "src", src, "dst", dst, "err", terr)
		return
	}
	down := gonet.NewUDPConn(&wq, ep)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.udpActive.Add(-1)
		down.Close()
		return
	}
	s.conns[down] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.udpActive.Add(-1)
		ctx, cancel := context.WithTimeout(s.ctx, DefaultDialTimeout)
		up, err := s.cfg.DialUDP(ctx, src, dst)
		cancel()
		if err != nil {
			s.refused.Add(1)
			s.log.Debug("udp flow refused", "src", src, "dst", dst, "err", err)
			down.Close()
			s.untrack(down)
			return
		}
		if !s.track(up) {
			up.Close()
			down.Close()
			s.untrack(down)
			return
		}
		s.udpTotal.Add(1)
		relay.Datagrams(down, up, s.cfg.UDPIdle)
		s.untrack(up, down)
	}()
}

var _ net.Conn = (*gonet.TCPConn)(nil)
