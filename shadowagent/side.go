package shadowagent

import (
	"errors"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// newSide builds the shadow's end of the tunnel: a server on ListenAddr (the outbound
// direction: the offloaded pod dials the local ingress), or with ConnectURL a client dialing the
// offloaded pod's mesh-agent through the remote cluster's ingress (the inbound direction: the
// local cluster only dials out).
func (a *Agent) newSide() (wgdevice.Side, error) {
	c := a.cfg
	log := c.Logger.With("component", "tunnel")
	if c.ConnectURL != "" {
		cl, err := tunnel.NewClient(tunnel.ClientConfig{
			URL:         c.ConnectURL,
			PathPrefix:  string(c.PathPrefix),
			Destination: c.Destination,
			Host:        c.ConnectHost,
			CAFile:      c.CAFile,
			Proxy:       tunnel.ProxyFromEnvironment(), // HTTPS_PROXY, HTTP_PROXY, NO_PROXY
			OnSession:   a.rehandshake,
			BatchSize:   c.BatchSize,
			Logger:      log,
		})
		if err != nil {
			return wgdevice.Side{}, &ConfigError{Field: "ConnectURL", Err: err}
		}
		return wgdevice.DialSide(cl), nil
	}
	srv, err := tunnel.NewServer(tunnel.ServerConfig{
		PathPrefix:  string(c.PathPrefix),
		Destination: c.Destination,
		Addr:        c.ListenAddr,
		CertFile:    c.TLSCertFile,
		KeyFile:     c.TLSKeyFile,
		BatchSize:   c.BatchSize,
		Logger:      log,
	})
	if err != nil {
		if c.TLSCertFile != "" && !errors.Is(err, tunnel.ErrConfig) {
			return wgdevice.Side{}, &ConfigError{Field: "TLSCertFile", Err: err}
		}
		return wgdevice.Side{}, err
	}
	return wgdevice.ListenSide(srv), nil
}

// tunnelDesc says where the tunnel is, for logs: the address served, or the URL dialed.
func (a *Agent) tunnelDesc() string {
	if a.cfg.ConnectURL != "" {
		return "dial " + a.cfg.ConnectURL
	}
	return "listen " + a.cfg.ListenAddr
}

// tunnelListening reports whether the tunnel's listener is served; a dialing shadow has none to
// wait for.
func (a *Agent) tunnelListening() bool {
	switch {
	case a.listening != nil:
		return a.listening()
	case a.side.Listening != nil:
		return a.side.Listening()
	}
	return true
}

// rehandshake renews the WireGuard keys when a dialing shadow's new tunnel session comes up after
// a handshake: the mesh-agent behind it may have restarted and lost them, and would drop our data
// until WireGuard's own timers renew the keys. Before the first handshake the device's initial
// one is under way.
func (a *Agent) rehandshake() {
	e := a.eng.Load()
	if e == nil {
		return
	}
	if p, err := e.Peer(); err != nil || p.LastHandshake.IsZero() {
		return
	}
	if err := e.Rehandshake(a.cfg.PeerPublicKey); err != nil {
		a.log.Debug("handshake after reconnect", "err", err)
	}
}
