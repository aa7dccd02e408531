package shadowagent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/netstack/relay"
	"github.com/interlink-k8s-mesh/interlink-k8s-mesh/wgdevice"
)

// routes returns the agent's HTTP API on HealthAddr.
func (a *Agent) routes() http.Handler { return wgdevice.ProbeMux(&a.eng, a.handleReadyz, a.reg) }

// registry holds the agent's metrics: what the engine reports of both agents (the tunnel's named
// after its side) and the flows.
func (a *Agent) registry() *prometheus.Registry {
	return wgdevice.NewRegistry(wgdevice.MetricsConfig{
		Prefix:      "shadow_agent",
		Ready:       func() bool { return len(a.notReady()) == 0 },
		ReadyHelp:   "1 while /readyz answers 200: the tunnel listens, the device is up, the rules are applied.",
		Peer:        "the offloaded pod",
		Tunnel:      a.side.Role,
		TunnelStats: a.side.Stats,
		Engine:      &a.eng,
		Extra:       collector{a},
	})
}

var (
	flowLabels = []string{"direction", "proto"}
	descFlows  = prometheus.NewDesc("shadow_agent_flows_active",
		"Netstack mode: flows relayed now: in (to the declared ports, to the offloaded pod), out (from the offloaded pod).", flowLabels, nil)
	descFlowsTotal = prometheus.NewDesc("shadow_agent_flows_total",
		"Netstack mode: flows relayed, by direction and protocol.", flowLabels, nil)
	descFlowsRefused = prometheus.NewDesc("shadow_agent_flows_refused_total",
		"Netstack mode: flows refused or dropped: the upstream did not answer, or over --max-flows.", []string{"direction"}, nil)
)

// collector reads what only the shadow reports at scrape time.
type collector struct{ a *Agent }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFlows, descFlowsTotal, descFlowsRefused} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.collectFlows(ch)
}

// collectFlows reports netstack mode's relays; nothing in kernel mode.
func (c collector) collectFlows(ch chan<- prometheus.Metric) {
	e, in := c.a.eng.Load(), c.a.inbound.Load()
	if e == nil || e.Stack() == nil || in == nil {
		return
	}
	s := e.Stack()
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
