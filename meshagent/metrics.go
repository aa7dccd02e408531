package meshagent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// routes returns the agent's HTTP API.
func (a *Agent) routes() http.Handler { return wgdevice.ProbeMux(&a.eng, a.handleReadyz, a.reg) }

// registry holds the agent's metrics: what the engine reports of both agents, and the flows.
func (a *Agent) registry() *prometheus.Registry {
	return wgdevice.NewRegistry(wgdevice.MetricsConfig{
		Prefix:      "mesh_agent",
		Ready:       a.ready.Load,
		ReadyHelp:   "1 once the first WireGuard handshake with the shadow pod completed.",
		Peer:        "the shadow pod",
		Tunnel:      a.side.Role,
		TunnelStats: a.side.Stats,
		Engine:      &a.eng,
		Extra:       flows{a},
	})
}

var (
	descFlows = prometheus.NewDesc("mesh_agent_flows_active",
		"Netstack mode: flows from the mesh relayed to the workload now, by protocol.", []string{"proto"}, nil)
	descFlowsTotal = prometheus.NewDesc("mesh_agent_flows_total",
		"Netstack mode: flows from the mesh relayed, by protocol.", []string{"proto"}, nil)
	descFlowsRefused = prometheus.NewDesc("mesh_agent_flows_refused_total",
		"Netstack mode: flows from the mesh refused: nothing listens on the port (refused) or over --max-flows (limit).", []string{"reason"}, nil)
)

// flows reports netstack mode's flows at scrape time; nothing in kernel mode.
type flows struct{ a *Agent }

func (flows) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFlows, descFlowsTotal, descFlowsRefused} {
		ch <- d
	}
}

func (f flows) Collect(ch chan<- prometheus.Metric) {
	e := f.a.eng.Load()
	if e == nil || e.Stack() == nil {
		return
	}
	fs := e.Stack().Stats()
	m := func(d *prometheus.Desc, t prometheus.ValueType, v int64, label string) {
		ch <- prometheus.MustNewConstMetric(d, t, float64(v), label)
	}
	m(descFlows, prometheus.GaugeValue, fs.TCPActive, "tcp")
	m(descFlows, prometheus.GaugeValue, fs.UDPActive, "udp")
	m(descFlowsTotal, prometheus.CounterValue, fs.TCPTotal, "tcp")
	m(descFlowsTotal, prometheus.CounterValue, fs.UDPTotal, "udp")
	m(descFlowsRefused, prometheus.CounterValue, fs.Refused, "refused")
	m(descFlowsRefused, prometheus.CounterValue, fs.OverLimit, "limit")
}
