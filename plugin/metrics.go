package plugin

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	remoteErrors *prometheus.CounterVec
	leftovers    *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, offloaded func() float64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlink_plugin_requests_total",
			Help: "InterLink API requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "interlink_plugin_request_duration_seconds",
			Help:    "InterLink API request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		remoteErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlink_plugin_remote_api_errors_total",
			Help: "Failed calls to the remote Kubernetes API by operation.",
		}, []string{"op"}),
		leftovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "interlink_plugin_shadow_leftovers_total",
			Help: "Objects the VK's shadow templates left behind in the local cluster, by kind and by what the sweep did (delete, dry-run).",
		}, []string{"kind", "mode"}),
	}
	reg.MustRegister(m.requests, m.latency, m.remoteErrors, m.leftovers,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "interlink_plugin_offloaded_pods",
			Help: "Remote pods this plugin manages, as seen by its cache.",
		}, offloaded))
	return m
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}
