package api

import (
	"cmp"
	"slices"
	"strings"
	"unicode/utf8"

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
	invalid := false
	c.src.EachTotals(func(k topology.EdgeKey, t topology.Totals) {
		invalid = invalid || !validKey(k)
		edges = append(edges, edgeTotals{k, t})
	})
	if invalid {
		edges = sanitize(edges)
	}
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

// validKey reports whether an edge's labels are all UTF-8. The inputs
// replace bytes that are not, but a label that is not would fail the whole
// scrape (MustNewConstMetric panics, and /metrics answers 500).
func validKey(k topology.EdgeKey) bool {
	return utf8.ValidString(k.Source.Service) && utf8.ValidString(k.Source.Version) &&
		utf8.ValidString(k.Target.Service) && utf8.ValidString(k.Target.Version) && utf8.ValidString(string(k.Protocol))
}

// sanitize replaces the bytes of labels that are not UTF-8 with U+FFFD,
// and adds up the edges that then have the same labels: a series exported
// twice would fail the scrape too.
func sanitize(edges []edgeTotals) []edgeTotals {
	text := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
	for i := range edges {
		k := &edges[i].key
		k.Source.Service, k.Source.Version = text(k.Source.Service), text(k.Source.Version)
		k.Target.Service, k.Target.Version = text(k.Target.Service), text(k.Target.Version)
		k.Protocol = topology.Protocol(text(string(k.Protocol)))
	}
	slices.SortFunc(edges, func(a, b edgeTotals) int { return compareEdgeKeys(a.key, b.key) })
	out := edges[:0]
	for _, e := range edges {
		if n := len(out); n > 0 && out[n-1].key == e.key {
			t := &out[n-1].t
			t.Requests += e.t.Requests
			t.Errors += e.t.Errors
			t.LatencySumMs += e.t.LatencySumMs
			for i, c := range e.t.LatencyBuckets {
				t.LatencyBuckets[i] += c
			}
			continue
		}
		out = append(out, e)
	}
	return out
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
