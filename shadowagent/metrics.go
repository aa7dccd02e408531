package shadowagent

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/relay"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// routes returns the agent's HTTP API on HealthAddr.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.handleHealthz)
	mux.HandleFunc("GET /readyz", a.handleReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	return mux
}

var (
	dirLabel = []string{"direction"}

	descReady = prometheus.NewDesc("shadow_agent_ready",
		"1 while /readyz answers 200: the tunnel listens, the device is up, the rules are applied.", nil, nil)
	descSessions = prometheus.NewDesc("shadow_agent_tunnel_sessions_total",
		"WebSocket sessions accepted; a reconnecting or replacing client adds one each time.", nil, nil)
	descRefused = prometheus.NewDesc("shadow_agent_tunnel_refused_upgrades_total",
		"Upgrade requests answered 400 (wrong path, bad token, rate limited, not a WebSocket upgrade).", nil, nil)
	descMalformed = prometheus.NewDesc("shadow_agent_tunnel_malformed_requests_total",
		"Connections to the tunnel port that closed without sending a valid HTTP request.", nil, nil)
	descActive = prometheus.NewDesc("shadow_agent_tunnel_session_active",
		"1 while a WebSocket session carries the tunnel.", nil, nil)
	descDatagrams = prometheus.NewDesc("shadow_agent_tunnel_datagrams_total",
		"WireGuard datagrams received from (rx) and written to (tx) the WebSocket.", dirLabel, nil)
	descDropped = prometheus.NewDesc("shadow_agent_tunnel_dropped_datagrams_total",
		"Datagrams lost: rx to a full queue, tx while no session was up or with a failing one.", dirLabel, nil)
	descPeerBytes = prometheus.NewDesc("shadow_agent_peer_bytes_total",
		"WireGuard bytes received from (rx) and sent to (tx) the offloaded pod, as counted by the device.", dirLabel, nil)
	descHandshake = prometheus.NewDesc("shadow_agent_peer_last_handshake_timestamp_seconds",
		"Unix time of the last completed handshake with the offloaded pod; absent before the first.", nil, nil)
	descHandshakeAge = prometheus.NewDesc("shadow_agent_peer_last_handshake_age_seconds",
		"Seconds since the last completed handshake; absent before the first. Above about 180 the tunnel is down.", nil, nil)
)

var (
	flowLabels = []string{"direction", "proto"}
	descFlows  = prometheus.NewDesc("shadow_agent_flows_active",
		"Netstack mode: flows relayed now: in (to the declared ports, to the offloaded pod), out (from the offloaded pod).", flowLabels, nil)
	descFlowsTotal = prometheus.NewDesc("shadow_agent_flows_total",
		"Netstack mode: flows relayed, by direction and protocol.", flowLabels, nil)
	descFlowsRefused = prometheus.NewDesc("shadow_agent_flows_refused_total",
		"Netstack mode: flows refused or dropped: the upstream did not answer, or over --max-flows.", []string{"direction"}, nil)
)

// collector reads the tunnel and the device at scrape time, so metrics cost nothing between
// scrapes.
type collector struct{ a *Agent }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descSessions, descRefused, descMalformed, descActive,
		descDatagrams, descDropped, descPeerBytes, descHandshake, descHandshakeAge, descFlows, descFlowsTotal, descFlowsRefused} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	ready := 0.0
	if len(c.a.notReady()) == 0 {
		ready = 1
	}
	gauge(descReady, ready)
	st := c.a.srv.Stats()
	counter(descSessions, st.Sessions)
	counter(descRefused, st.Refused)
	counter(descMalformed, c.a.malformed.Load())
	gauge(descActive, float64(st.Active))
	counter(descDatagrams, st.RxDatagrams, "rx")
	counter(descDatagrams, st.TxDatagrams, "tx")
	counter(descDropped, st.RxDropped, "rx")
	counter(descDropped, st.TxDropped, "tx")
	c.collectFlows(ch)

	dev := c.a.dev.Load()
	if dev == nil {
		return
	}
	p, err := wgdevice.ReadPeer(dev)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPeerBytes, err)
		return
	}
	counter(descPeerBytes, p.RxBytes, "rx")
	counter(descPeerBytes, p.TxBytes, "tx")
	if !p.LastHandshake.IsZero() {
		gauge(descHandshake, float64(p.LastHandshake.UnixNano())/1e9)
		gauge(descHandshakeAge, time.Since(p.LastHandshake).Seconds())
	}
}

// collectFlows reports netstack mode's relays; nothing in kernel mode.
func (c collector) collectFlows(ch chan<- prometheus.Metric) {
	s, in := c.a.stack.Load(), c.a.inbound.Load()
	if s == nil || in == nil {
		return
	}
	m := func(d *prometheus.Desc, t prometheus.ValueType, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, float64(v), labels...)
	}
	var tcp relay.StreamStats
	var udp relay.SessionStats
	for _, r := range in.streams {
		st := r.Stats()
		tcp.Active, tcp.Total, tcp.Refused = tcp.Active+st.Active, tcp.Total+st.Total, tcp.Refused+st.Refused
	}
	for _, r := range in.sessions {
		st := r.Stats()
		udp.Active, udp.Total, udp.Dropped = udp.Active+st.Active, udp.Total+st.Total, udp.Dropped+st.Dropped
	}
	out := s.Stats()
	m(descFlows, prometheus.GaugeValue, tcp.Active, "in", "tcp")
	m(descFlows, prometheus.GaugeValue, udp.Active, "in", "udp")
	m(descFlows, prometheus.GaugeValue, out.TCPActive, "out", "tcp")
	m(descFlows, prometheus.GaugeValue, out.UDPActive, "out", "udp")
	m(descFlowsTotal, prometheus.CounterValue, tcp.Total, "in", "tcp")
	m(descFlowsTotal, prometheus.CounterValue, udp.Total, "in", "udp")
	m(descFlowsTotal, prometheus.CounterValue, out.TCPTotal, "out", "tcp")
	m(descFlowsTotal, prometheus.CounterValue, out.UDPTotal, "out", "udp")
	m(descFlowsRefused, prometheus.CounterValue, tcp.Refused+udp.Dropped, "in")
	m(descFlowsRefused, prometheus.CounterValue, out.Refused+out.OverLimit, "out")
}
