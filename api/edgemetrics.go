package api

import (
	"cmp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalbox/signalbox/topology"
)

// DefaultMaxEdgeSeries is how many edges NewEdgeCollector exports when not
// told: each edge is 16 series (two counters and a 14-bucket histogram).
const DefaultMaxEdgeSeries = 2000

// TotalsSource is every edge's totals since it was first seen
// (topology.Store).
type TotalsSource interface {
	EachTotals(visit func(topology.EdgeKey, topology.Totals))
}

// EdgeCollector exports the live graph's per-edge totals to Prometheus:
//
//	signalbox_graph_requests_total{source,source_version,target,target_version,protocol}
//	signalbox_graph_errors_total{…}
//	signalbox_graph_request_duration_seconds{…} (histogram)
//	signalbox_graph_edges_unexported
//
// Edges are capped: past the cap, the busiest edges (by requests) are
// exported and the gauge says how many were left out. An edge that drops
// under the cap's line stops being exported, and its counters resume from
// their totals when it climbs back: rate() sees a reset at most.
type EdgeCollector struct {
	src        TotalsSource
	max        int
	bounds     []float64 // seconds
	requests   *prometheus.Desc
	errors     *prometheus.Desc
	latency    *prometheus.Desc
	unexported *prometheus.Desc
}

var _ prometheus.Collector = (*EdgeCollector)(nil)

// NewEdgeCollector exports src's edges, at most maxSeries of them
// (DefaultMaxEdgeSeries when maxSeries <= 0). Register it with the
// registry that serves /metrics.
func NewEdgeCollector(src TotalsSource, maxSeries int) *EdgeCollector {
	if maxSeries <= 0 {
		maxSeries = DefaultMaxEdgeSeries
	}
	labels := []string{"source", "source_version", "target", "target_version", "protocol"}
	ms := topology.LatencyBoundsMs()
	bounds := make([]float64, len(ms))
	for i, b := range ms {
		bounds[i] = b / 1000
	}
	return &EdgeCollector{
		src:    src,
		max:    maxSeries,
		bounds: bounds,
		requests: prometheus.NewDesc("signalbox_graph_requests_total",
			"Requests on an edge of the live graph since it was first seen.", labels, nil),
		errors: prometheus.NewDesc("signalbox_graph_errors_total",
			"Failed requests (5xx, connection failures, failing gRPC statuses) on an edge of the live graph.", labels, nil),
		latency: prometheus.NewDesc("signalbox_graph_request_duration_seconds",
			"Latency of the requests on an edge of the live graph.", labels, nil),
		unexported: prometheus.NewDesc("signalbox_graph_edges_unexported",
			"Edges of the live graph left out of the signalbox_graph_* series by the cap (the least busy ones).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *EdgeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.errors
	ch <- c.latency
	ch <- c.unexported
}

type edgeTotals struct {
	key topology.EdgeKey
	t   topology.Totals
}

// Collect implements prometheus.Collector.
func (c *EdgeCollector) Collect(ch chan<- prometheus.Metric) {
	var edges []edgeTotals
	// Copy out first: the visit runs under the store's locks.
	c.src.EachTotals(func(k topology.EdgeKey, t topology.Totals) {
		edges = append(edges, edgeTotals{k, t})
	})
	unexported := 0
	if len(edges) > c.max {
		// The busiest edges; ties by key, so the same edges stay in from
		// one scrape to the next.
		slices.SortFunc(edges, func(a, b edgeTotals) int {
			if a.t.Requests != b.t.Requests {
				return cmp.Compare(b.t.Requests, a.t.Requests)
			}
			return compareEdgeKeys(a.key, b.key)
		})
		unexported = len(edges) - c.max
		edges = edges[:c.max]
	}
	for _, e := range edges {
		lv := []string{e.key.Source.Service, e.key.Source.Version, e.key.Target.Service, e.key.Target.Version, string(e.key.Protocol)}
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(e.t.Requests), lv...)
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(e.t.Errors), lv...)
		// The store counts each request in one bucket; Prometheus's le
		// buckets are cumulative. Requests slower than the last bound are
		// only in the count (+Inf). A map each: the metric keeps it.
		buckets := make(map[float64]uint64, len(c.bounds))
		var cum uint64
		for i, le := range c.bounds {
			cum += e.t.LatencyBuckets[i]
			buckets[le] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.latency, e.t.Requests, e.t.LatencySumMs/1000, buckets, lv...)
	}
	ch <- prometheus.MustNewConstMetric(c.unexported, prometheus.GaugeValue, float64(unexported))
}

func compareEdgeKeys(a, b topology.EdgeKey) int {
	return cmp.Or(
		cmp.Compare(a.Source.Service, b.Source.Service),
		cmp.Compare(a.Source.Version, b.Source.Version),
		cmp.Compare(a.Target.Service, b.Target.Service),
		cmp.Compare(a.Target.Version, b.Target.Version),
		cmp.Compare(a.Protocol, b.Protocol),
	)
}
