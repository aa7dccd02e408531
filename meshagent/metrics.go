package meshagent

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// routes returns the agent's HTTP API.
func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.handleHealthz)
	mux.HandleFunc("GET /readyz", a.handleReadyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	return mux
}

var (
	dirLabel = []string{"direction"}

	descReady = prometheus.NewDesc("mesh_agent_ready",
		"1 once the first WireGuard handshake with the shadow pod completed.", nil, nil)
	descPeerBytes = prometheus.NewDesc("mesh_agent_peer_bytes_total",
		"WireGuard bytes received from (rx) and sent to (tx) the shadow pod, as counted by the device.", dirLabel, nil)
	descHandshake = prometheus.NewDesc("mesh_agent_peer_last_handshake_timestamp_seconds",
		"Unix time of the last completed handshake; absent before the first.", nil, nil)
	descHandshakeAge = prometheus.NewDesc("mesh_agent_peer_last_handshake_age_seconds",
		"Seconds since the last completed handshake; absent before the first. Above about 180 the tunnel is down.", nil, nil)
	descSessions = prometheus.NewDesc("mesh_agent_tunnel_sessions_total",
		"WebSocket sessions established with the shadow's tunnel server; reconnects are this minus one.", nil, nil)
	descDialFailures = prometheus.NewDesc("mesh_agent_tunnel_dial_failures_total",
		"Failed attempts to open a WebSocket session.", nil, nil)
	descActive = prometheus.NewDesc("mesh_agent_tunnel_session_active",
		"1 while a WebSocket session carries the tunnel.", nil, nil)
	descDatagrams = prometheus.NewDesc("mesh_agent_tunnel_datagrams_total",
		"WireGuard datagrams (packets to and from the peer) received from (rx) and written to (tx) the WebSocket.", dirLabel, nil)
	descDropped = prometheus.NewDesc("mesh_agent_tunnel_dropped_datagrams_total",
		"Datagrams lost: rx to a full queue, tx while no session was up or with a failing one.", dirLabel, nil)
)

var (
	descFlows = prometheus.NewDesc("mesh_agent_flows_active",
		"Netstack mode: flows from the mesh relayed to the workload now, by protocol.", []string{"proto"}, nil)
	descFlowsTotal = prometheus.NewDesc("mesh_agent_flows_total",
		"Netstack mode: flows from the mesh relayed, by protocol.", []string{"proto"}, nil)
	descFlowsRefused = prometheus.NewDesc("mesh_agent_flows_refused_total",
		"Netstack mode: flows from the mesh refused: nothing listens on the port (refused) or over --max-flows (limit).", []string{"reason"}, nil)
)

// collector reads the device and the tunnel at scrape time, so the metrics cost nothing between
// scrapes.
type collector struct{ a *Agent }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descPeerBytes, descHandshake, descHandshakeAge,
		descSessions, descDialFailures, descActive, descDatagrams, descDropped, descFlows, descFlowsTotal, descFlowsRefused} {
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
	if c.a.ready.Load() {
		ready = 1
	}
	gauge(descReady, ready)
	st := c.a.client.Stats()
	counter(descSessions, st.Sessions)
	counter(descDialFailures, st.Refused)
	gauge(descActive, float64(st.Active))
	counter(descDatagrams, st.RxDatagrams, "rx")
	counter(descDatagrams, st.TxDatagrams, "tx")
	counter(descDropped, st.RxDropped, "rx")
	counter(descDropped, st.TxDropped, "tx")
	if s := c.a.stack.Load(); s != nil {
		fs := s.Stats()
		ch <- prometheus.MustNewConstMetric(descFlows, prometheus.GaugeValue, float64(fs.TCPActive), "tcp")
		ch <- prometheus.MustNewConstMetric(descFlows, prometheus.GaugeValue, float64(fs.UDPActive), "udp")
		counter(descFlowsTotal, uint64(fs.TCPTotal), "tcp")
		counter(descFlowsTotal, uint64(fs.UDPTotal), "udp")
		counter(descFlowsRefused, uint64(fs.Refused), "refused")
		counter(descFlowsRefused, uint64(fs.OverLimit), "limit")
	}

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
