package wgdevice

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/tunnel"
)

// peerMetrics are the device's peer: bytes each way and the last handshake, read off the device
// at scrape time.
type peerMetrics struct {
	bytes, handshake, age *prometheus.Desc
}

// newPeerMetrics names the metrics <prefix>_peer_…; peer says who the peer is, for their help.
func newPeerMetrics(prefix, peer string) peerMetrics {
	return peerMetrics{
		bytes: prometheus.NewDesc(prefix+"_peer_bytes_total",
			"WireGuard bytes received from (rx) and sent to (tx) "+peer+", as counted by the device.", []string{"direction"}, nil),
		handshake: prometheus.NewDesc(prefix+"_peer_last_handshake_timestamp_seconds",
			"Unix time of the last completed handshake with "+peer+"; absent before the first.", nil, nil),
		age: prometheus.NewDesc(prefix+"_peer_last_handshake_age_seconds",
			"Seconds since the last completed handshake; absent before the first. Above about 180 the tunnel is down.", nil, nil),
	}
}

// Describe sends the descriptors.
func (m peerMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.bytes
	ch <- m.handshake
	ch <- m.age
}

// Collect sends the peer's metrics of engine e; nothing while e is nil (not up).
func (m peerMetrics) Collect(ch chan<- prometheus.Metric, e *Engine) {
	if e == nil {
		return
	}
	p, err := e.Peer()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.bytes, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.CounterValue, float64(p.RxBytes), "rx")
	ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.CounterValue, float64(p.TxBytes), "tx")
	if !p.LastHandshake.IsZero() {
		ch <- prometheus.MustNewConstMetric(m.handshake, prometheus.GaugeValue, float64(p.LastHandshake.UnixNano())/1e9)
		ch <- prometheus.MustNewConstMetric(m.age, prometheus.GaugeValue, time.Since(p.LastHandshake).Seconds())
	}
}

// tunnelMetrics are the tunnel's counters (tunnel.Stats), named <prefix>_tunnel_….
type tunnelMetrics struct {
	sessions, refused, active, datagrams, dropped *prometheus.Desc
	// certRefused is nil at an end that verifies no certificate (the server), malformed at an
	// end that serves none (the client).
	certRefused, malformed *prometheus.Desc
}

// TunnelRole says what the tunnel's counters mean at one end: what a session is, and the name
// and meaning of a refusal (a failed dial, a refused upgrade).
type TunnelRole struct {
	SessionsHelp, RefusedName, RefusedHelp string
	// CertRefusedHelp, at a client, exports <prefix>_tunnel_certificate_refusals_total: dials
	// refused because the server's certificate did not verify.
	CertRefusedHelp string
	// MalformedHelp, at a server, exports <prefix>_tunnel_malformed_requests_total: connections
	// to the tunnel's port that sent no valid HTTP request.
	MalformedHelp string
}

// newTunnelMetrics names the tunnel's metrics for one end of it.
func newTunnelMetrics(prefix string, role TunnelRole) tunnelMetrics {
	dir := []string{"direction"}
	m := tunnelMetrics{
		sessions: prometheus.NewDesc(prefix+"_tunnel_sessions_total", role.SessionsHelp, nil, nil),
		refused:  prometheus.NewDesc(prefix+"_tunnel_"+role.RefusedName, role.RefusedHelp, nil, nil),
		active:   prometheus.NewDesc(prefix+"_tunnel_session_active", "1 while a WebSocket session carries the tunnel.", nil, nil),
		datagrams: prometheus.NewDesc(prefix+"_tunnel_datagrams_total",
			"WireGuard datagrams (packets to and from the peer) received from (rx) and written to (tx) the WebSocket.", dir, nil),
		dropped: prometheus.NewDesc(prefix+"_tunnel_dropped_datagrams_total",
			"Datagrams lost: rx to a full queue, tx while no session was up or with a failing one.", dir, nil),
	}
	if role.CertRefusedHelp != "" {
		m.certRefused = prometheus.NewDesc(prefix+"_tunnel_certificate_refusals_total", role.CertRefusedHelp, nil, nil)
	}
	if role.MalformedHelp != "" {
		m.malformed = prometheus.NewDesc(prefix+"_tunnel_malformed_requests_total", role.MalformedHelp, nil, nil)
	}
	return m
}

// Describe sends the descriptors.
func (m tunnelMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.sessions, m.refused, m.active, m.datagrams, m.dropped} {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{m.certRefused, m.malformed} {
		if d != nil {
			ch <- d
		}
	}
}

// Collect sends the tunnel's counters.
func (m tunnelMetrics) Collect(ch chan<- prometheus.Metric, st tunnel.Stats) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(m.sessions, st.Sessions)
	counter(m.refused, st.Refused)
	ch <- prometheus.MustNewConstMetric(m.active, prometheus.GaugeValue, float64(st.Active))
	counter(m.datagrams, st.RxDatagrams, "rx")
	counter(m.datagrams, st.TxDatagrams, "tx")
	counter(m.dropped, st.RxDropped, "rx")
	counter(m.dropped, st.TxDropped, "tx")
	if m.certRefused != nil {
		counter(m.certRefused, st.CertRefused)
	}
	if m.malformed != nil {
		counter(m.malformed, st.Malformed)
	}
}

// MetricsConfig is what an agent's metrics are made of: what both agents report, and Extra.
type MetricsConfig struct {
	// Prefix starts every metric's name (mesh_agent, shadow_agent).
	Prefix string
	// Ready reports the agent's readiness, <prefix>_ready; ReadyHelp says what it means.
	Ready     func() bool
	ReadyHelp string
	// Peer says who the device's peer is, for the help of <prefix>_peer_….
	Peer string
	// Tunnel and TunnelStats are the tunnel's end and its counters, <prefix>_tunnel_….
	Tunnel      TunnelRole
	TunnelStats func() tunnel.Stats
	// Engine holds the device while it is up.
	Engine *Running
	// Extra collects what only this agent has; nil: nothing.
	Extra prometheus.Collector
}

// NewRegistry is an agent's metrics registry: readiness, the tunnel's and the peer's metrics,
// Extra, and the Go runtime's and the process's. Every value is read at scrape time, so the
// metrics cost nothing between scrapes.
func NewRegistry(cfg MetricsConfig) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&agentCollector{
		cfg:    cfg,
		ready:  prometheus.NewDesc(cfg.Prefix+"_ready", cfg.ReadyHelp, nil, nil),
		tunnel: newTunnelMetrics(cfg.Prefix, cfg.Tunnel),
		peer:   newPeerMetrics(cfg.Prefix, cfg.Peer),
	}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.Extra != nil {
		reg.MustRegister(cfg.Extra)
	}
	return reg
}

type agentCollector struct {
	cfg    MetricsConfig
	ready  *prometheus.Desc
	tunnel tunnelMetrics
	peer   peerMetrics
}

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	c.tunnel.Describe(ch)
	c.peer.Describe(ch)
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	ready := 0.0
	if c.cfg.Ready() {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready)
	c.tunnel.Collect(ch, c.cfg.TunnelStats())
	c.peer.Collect(ch, c.cfg.Engine.Load())
}

// ProbeMux is the HTTP API both agents serve on their health port: GET /healthz (ServeHealthz
// of the running engine), GET /readyz (the agent's own), GET /metrics (its registry).
func ProbeMux(r *Running, readyz http.HandlerFunc, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { ServeHealthz(w, r.Load()) })
	mux.HandleFunc("GET /readyz", readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}
