package api

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signalbox/signalbox/topology"
)

func TestEdgeMetricsExactValuesAndCumulativeBuckets(t *testing.T) {
	store := topology.New(topology.Options{})
	// web → api: one request in each of three latency buckets, one slower
	// than the last bound (10 s), and the 1.5 ms one failing.
	for _, o := range []struct {
		latency time.Duration
		status  int
	}{{500 * time.Microsecond, 200}, {1500 * time.Microsecond, 503}, {2500 * time.Microsecond, 200}, {30 * time.Second, 200}} {
		store.Record(topology.Observation{Time: graphTestNow, Source: topology.Node{Service: "web", Version: "v1"}, Target: topology.Node{Service: "api", Version: "v2"},
			Protocol: topology.HTTP, Status: o.status, GRPCStatus: -1, Latency: o.latency})
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewEdgeCollector(store, 0))

	want := `
# HELP signalbox_graph_edges_unexported Edges of the live graph left out of the signalbox_graph_* series by the cap (the least busy ones).
# TYPE signalbox_graph_edges_unexported gauge
signalbox_graph_edges_unexported 0
# HELP signalbox_graph_errors_total Failed requests (5xx, connection failures, failing gRPC statuses) on an edge of the live graph.
# TYPE signalbox_graph_errors_total counter
signalbox_graph_errors_total{protocol="http",source="web",source_version="v1",target="api",target_version="v2"} 1
# HELP signalbox_graph_request_duration_seconds Latency of the requests on an edge of the live graph.
# TYPE signalbox_graph_request_duration_seconds histogram
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="0.001"} 1
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="0.0025"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="0.005"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="0.01"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="0.025"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="0.05"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="0.1"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="0.25"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="0.5"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="1"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="2.5"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="5"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="10"} 3
signalbox_graph_request_duration_seconds_bucket{protocol="http",source="web",source_version="v1",target="api",target_version="v2",le="+Inf"} 4
signalbox_graph_request_duration_seconds_sum{protocol="http",source="web",source_version="v1",target="api",target_version="v2"} 30.0045
signalbox_graph_request_duration_seconds_count{protocol="http",source="web",source_version="v1",target="api",target_version="v2"} 4
# HELP signalbox_graph_requests_total Requests on an edge of the live graph since it was first seen.
# TYPE signalbox_graph_requests_total counter
signalbox_graph_requests_total{protocol="http",source="web",source_version="v1",target="api",target_version="v2"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

func TestEdgeMetricsCapKeepsTheBusiestEdges(t *testing.T) {
	store := topology.New(topology.Options{})
	// svc-i → db with i+1 requests: svc-4, svc-3 and svc-2 are the busiest.
	for i := range 5 {
		recordCalls(store, graphTestNow, fmt.Sprintf("svc-%d@v1", i), "db@", topology.TCP, i+1, 0, time.Millisecond)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewEdgeCollector(store, 3))

	want := `
# HELP signalbox_graph_edges_unexported Edges of the live graph left out of the signalbox_graph_* series by the cap (the least busy ones).
# TYPE signalbox_graph_edges_unexported gauge
signalbox_graph_edges_unexported 2
# HELP signalbox_graph_requests_total Requests on an edge of the live graph since it was first seen.
# TYPE signalbox_graph_requests_total counter
signalbox_graph_requests_total{protocol="tcp",source="svc-2",source_version="v1",target="db",target_version=""} 3
signalbox_graph_requests_total{protocol="tcp",source="svc-3",source_version="v1",target="db",target_version=""} 4
signalbox_graph_requests_total{protocol="tcp",source="svc-4",source_version="v1",target="db",target_version=""} 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "signalbox_graph_requests_total", "signalbox_graph_edges_unexported"); err != nil {
		t.Fatal(err)
	}
	// Three edges, each a histogram of 14 buckets besides the counters.
	if n, err := testutil.GatherAndCount(reg, "signalbox_graph_errors_total", "signalbox_graph_request_duration_seconds"); err != nil || n != 6 {
		t.Fatalf("errors and histograms: %d series (%v), want 3 of each", n, err)
	}
}

func TestEdgeMetricsDefaultCap(t *testing.T) {
	store := topology.New(topology.Options{})
	for i := range DefaultMaxEdgeSeries + 10 {
		recordCalls(store, graphTestNow, fmt.Sprintf("svc-%d", i), "db", topology.TCP, 1, 0, time.Millisecond)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewEdgeCollector(store, 0))
	if n, err := testutil.GatherAndCount(reg, "signalbox_graph_requests_total"); err != nil || n != DefaultMaxEdgeSeries {
		t.Errorf("%d edges exported (%v), want the default cap %d", n, err, DefaultMaxEdgeSeries)
	}
	want := `
# HELP signalbox_graph_edges_unexported Edges of the live graph left out of the signalbox_graph_* series by the cap (the least busy ones).
# TYPE signalbox_graph_edges_unexported gauge
signalbox_graph_edges_unexported 10
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "signalbox_graph_edges_unexported"); err != nil {
		t.Error(err)
	}
}
