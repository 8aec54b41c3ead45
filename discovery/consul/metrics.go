package consul

import (
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the watcher's Prometheus collectors; nil fields are never used
// because a Watcher without a Registerer has a nil *metrics.
type metrics struct {
	watchErrors *prometheus.CounterVec
	services    prometheus.Gauge
	updates     prometheus.Counter
	lastContact prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, log *slog.Logger, staleSeconds func() float64) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalbox_consul_watch_errors_total",
			Help: "Failed Consul blocking queries, by watch (services: the service list; service: one service's health).",
		}, []string{"watch"}),
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signalbox_consul_services",
			Help: "Services in the last published catalog.",
		}),
		updates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "signalbox_consul_updates_total",
			Help: "Catalogs published by the Consul watcher.",
		}),
		lastContact: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "signalbox_consul_last_contact_seconds",
			Help: "How long ago the answering Consul server last heard from the leader, from the last successful query (0 when it is the leader).",
		}),
	}
	m.watchErrors = register(reg, log, m.watchErrors)
	// Both label values exist from the start so rate() sees the first error.
	m.watchErrors.WithLabelValues(watchServices)
	m.watchErrors.WithLabelValues(watchService)
	m.services = register(reg, log, m.services)
	m.updates = register(reg, log, m.updates)
	m.lastContact = register(reg, log, m.lastContact)
	register(reg, log, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "signalbox_consul_stale_seconds",
		Help: "Seconds since Consul queries started failing; 0 while every watch is healthy.",
	}, staleSeconds))
	return m
}

// register registers c, or returns the collector already registered under
// the same descriptor, so two watchers on one registry share their series
// instead of panicking.
func register[C prometheus.Collector](reg prometheus.Registerer, log *slog.Logger, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	log.Warn("consul watcher: cannot register metric", "err", err)
	return c
}
