package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signalbox/signalbox/topology"
	"github.com/signalbox/signalbox/topology/zipkin"
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

// scrape serves reg as /metrics does and returns the status and body.
func scrape(t *testing.T, reg *prometheus.Registry) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Code, rec.Body.String()
}

// TestEdgeMetricsLabelsNotUTF8: an edge whose names are not UTF-8 (the
// store takes what it is given) does not fail the scrape of every metric:
// its bytes are replaced with U+FFFD, and edges that then have the same
// labels are exported as one.
func TestEdgeMetricsLabelsNotUTF8(t *testing.T) {
	store := topology.New(topology.Options{})
	for _, v := range []string{"v\xff1", "v\xfe1", "v1"} {
		store.Record(topology.Observation{Time: graphTestNow, Source: topology.Node{Service: "web"}, Target: topology.Node{Service: "api", Version: v},
			Protocol: topology.HTTP, Status: 503, GRPCStatus: -1, Latency: 2 * time.Millisecond})
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewEdgeCollector(store, 0))
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "signalbox_other_total", Help: "Another metric on the page."}))
	if code, body := scrape(t, reg); code != http.StatusOK || !strings.Contains(body, "signalbox_other_total 0") {
		t.Fatalf("/metrics answered %d:\n%.300s", code, body)
	}
	want := `
# HELP signalbox_graph_errors_total Failed requests (5xx, connection failures, failing gRPC statuses) on an edge of the live graph.
# TYPE signalbox_graph_errors_total counter
signalbox_graph_errors_total{protocol="http",source="web",source_version="",target="api",target_version="v1"} 1
signalbox_graph_errors_total{protocol="http",source="web",source_version="",target="api",target_version="v�1"} 2
# HELP signalbox_graph_requests_total Requests on an edge of the live graph since it was first seen.
# TYPE signalbox_graph_requests_total counter
signalbox_graph_requests_total{protocol="http",source="web",source_version="",target="api",target_version="v1"} 1
signalbox_graph_requests_total{protocol="http",source="web",source_version="",target="api",target_version="v�1"} 2
`
	// "v�1": each run of bytes that are not UTF-8 is one U+FFFD.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "signalbox_graph_requests_total", "signalbox_graph_errors_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "signalbox_graph_request_duration_seconds"); err != nil || n != 2 {
		t.Fatalf("%d histograms (%v), want 2", n, err)
	}
}

// TestEdgeMetricsFromSpanNotUTF8: one span whose version tag is not UTF-8,
// through the Zipkin collector and the store, leaves /metrics answering.
func TestEdgeMetricsFromSpanNotUTF8(t *testing.T) {
	store := topology.New(topology.Options{})
	col := zipkin.NewCollector(store, func() time.Time { return graphTestNow }, zipkin.Options{})
	body := "[{\"traceId\":\"0000000000000001\",\"id\":\"0000000000000002\",\"kind\":\"SERVER\",\"timestamp\":" +
		strconv.FormatInt(graphTestNow.UnixMicro(), 10) + ",\"duration\":2000," +
		"\"localEndpoint\":{\"serviceName\":\"api\"},\"remoteEndpoint\":{\"serviceName\":\"web\"}," +
		"\"tags\":{\"service.version\":\"v\xff1\"}}]"
	req := httptest.NewRequest(http.MethodPost, "/api/v2/spans", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	col.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("POST /api/v2/spans answered %d: %s", rec.Code, rec.Body)
	}
	if n := col.Flush(graphTestNow.Add(time.Minute)); n != 1 || store.Edges() != 1 {
		t.Fatalf("linked %d traces into %d edges, want 1 and 1", n, store.Edges())
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewEdgeCollector(store, 0))
	code, page := scrape(t, reg)
	if code != http.StatusOK || !strings.Contains(page, "target_version=\"v\uFFFD1\"") {
		t.Fatalf("/metrics answered %d:\n%.500s", code, page)
	}
}
