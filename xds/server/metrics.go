package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus series. With a nil Registerer they are
// still counted (the debug view and tests read them) but not exported.
type metrics struct {
	clients     *prometheus.GaugeVec
	pushes      *prometheus.CounterVec
	nacks       *prometheus.CounterVec
	convergence *prometheus.HistogramVec
	applies     *prometheus.CounterVec
	resources   *prometheus.GaugeVec
	buildWarns  prometheus.Gauge
	// sidecarProblems counts bad node metadata and policy overrides.
	sidecarProblems prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		clients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signalbox_xds_connected_clients",
			Help: "xDS streams open, by protocol (sotw, delta).",
		}, []string{"protocol"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalbox_xds_pushes_total",
			Help: "xDS responses sent, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalbox_xds_nacks_total",
			Help: "xDS responses rejected by clients, by resource type.",
		}, []string{"type"}),
		convergence: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "signalbox_xds_convergence_seconds",
			Help:    "Time from a change seen in Consul (or a plan change) to a client's ACK of the config that carries it, by resource type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"type"}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalbox_xds_applies_total",
			Help: "Cache updates applied, by path: fast (endpoints only, not debounced) or full.",
		}, []string{"path"}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signalbox_xds_resources",
			Help: "Resources served, by type.",
		}, []string{"type"}),
		buildWarns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signalbox_xds_build_warnings",
			Help: "Instances currently left out of the config because their registration is unusable (see /debug/xds).",
		}),
		sidecarProblems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signalbox_xds_sidecar_problems",
			Help: "Problems in connected sidecars' node metadata or services' policy overrides, for which defaults were used (see /debug/xds/sidecars).",
		}),
	}
	// Every type's series exist from the start, so that increase() sees the
	// first NACK too.
	for _, t := range servedTypes {
		m.nacks.WithLabelValues(shortType(t))
		m.pushes.WithLabelValues(shortType(t))
	}
	if reg != nil {
		reg.MustRegister(m.clients, m.pushes, m.nacks, m.convergence, m.applies, m.resources, m.buildWarns, m.sidecarProblems)
	}
	return m
}
