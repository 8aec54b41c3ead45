package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signalbox/signalbox/topology"
)

// recordCalls adds n requests from src to dst (service@version) at t, the
// first errs of them failing with a 503.
func recordCalls(s *topology.Store, t time.Time, src, dst string, proto topology.Protocol, n, errs int, latency time.Duration) {
	node := func(id string) topology.Node {
		svc, ver, _ := strings.Cut(id, "@")
		return topology.Node{Service: svc, Version: ver}
	}
	for i := 0; i < n; i++ {
		status := 200
		if i < errs {
			status = 503
		}
		s.Record(topology.Observation{Time: t, Source: node(src), Target: node(dst), Protocol: proto, Status: status, GRPCStatus: -1, Latency: latency})
	}
}

var graphTestNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// graphServer serves api.New over a store with a fixed clock, on real HTTP.
func graphServer(t *testing.T, store *topology.Store) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(Deps{Graph: store, Now: func() time.Time { return graphTestNow }}))
	t.Cleanup(srv.Close)
	return srv
}

func getBody(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read: %v", url, err)
	}
	return resp, string(b)
}

func wantBadRequest(t *testing.T, resp *http.Response, body, mentions string) {
	t.Helper()
	var e Error
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body is not JSON: %v %q", err, body)
	}
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(e.Error, mentions) || e.Hint == "" {
		t.Fatalf("got %d %+v, want a 400 about %q with a hint", resp.StatusCode, e, mentions)
	}
}

// dotStmt is one statement of the DOT this package writes: a node
// (source only) or an edge, with its label.
type dotStmt struct {
	source, target, label, attrs string
}

// parseDOT parses the DOT subset writeDOT emits and fails on any line it
// does not know, so a broken quote or a stray line shows.
func parseDOT(t *testing.T, dot string) (graphLabel string, nodes map[string]string, edges []dotStmt) {
	t.Helper()
	const q = `"((?:[^"\\]|\\.)*)"`
	var (
		graphRe = regexp.MustCompile(`^  graph \[label=` + q + `, labelloc=t, rankdir=LR\];$`)
		nodeRe  = regexp.MustCompile(`^  ` + q + ` \[label=` + q + `\];$`)
		edgeRe  = regexp.MustCompile(`^  ` + q + ` -> ` + q + ` \[label=` + q + `(.*)\];$`)
	)
	unquote := strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\n`, "\n").Replace
	lines := strings.Split(strings.TrimSuffix(dot, "\n"), "\n")
	if len(lines) < 3 || lines[0] != "digraph signalbox {" || lines[len(lines)-1] != "}" {
		t.Fatalf("not a digraph block:\n%s", dot)
	}
	nodes = map[string]string{}
	for _, l := range lines[1 : len(lines)-1] {
		switch {
		case l == "  node [shape=box, style=rounded];":
		case graphRe.MatchString(l):
			graphLabel = unquote(graphRe.FindStringSubmatch(l)[1])
		case nodeRe.MatchString(l):
			m := nodeRe.FindStringSubmatch(l)
			nodes[unquote(m[1])] = unquote(m[2])
		case edgeRe.MatchString(l):
			m := edgeRe.FindStringSubmatch(l)
			edges = append(edges, dotStmt{source: unquote(m[1]), target: unquote(m[2]), label: unquote(m[3]), attrs: m[4]})
		default:
			t.Fatalf("unexpected DOT line %q in:\n%s", l, dot)
		}
	}
	return graphLabel, nodes, edges
}

func TestGraphAsDOT(t *testing.T) {
	store := topology.New(topology.Options{})
	// Names with dashes, dots, @, a quote and a backslash must survive.
	web, api := "web-front.prod@v1", `api.v2@2.0-"rc"\x`
	recordCalls(store, graphTestNow, web, api, topology.HTTP, 600, 6, 20*time.Millisecond)
	recordCalls(store, graphTestNow, api, "db@", topology.TCP, 60, 0, 2*time.Millisecond)
	srv := graphServer(t, store)

	resp, body := getBody(t, srv.URL+"/api/v1/graph?window=1m&by=version&format=dot")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/vnd.graphviz; charset=utf-8" {
		t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	label, nodes, edges := parseDOT(t, body)
	if !strings.Contains(label, "by version") || !strings.Contains(label, "window 1m0s") {
		t.Errorf("graph label %q does not say the granularity and the window", label)
	}
	wantNodes := map[string]string{web: web, api: api, "db": "db"}
	if fmt.Sprint(nodes) != fmt.Sprint(wantNodes) {
		t.Errorf("nodes %v, want %v", nodes, wantNodes)
	}
	if len(edges) != 2 {
		t.Fatalf("edges %+v, want 2", edges)
	}
	// 600 requests over a minute, 1% failing, 20 ms.
	e := edges[1]
	if e.source != web || e.target != api {
		t.Fatalf("edge %+v, want %s -> %s", e, web, api)
	}
	// p99 is 20 ms within the sketch's 1%.
	for _, want := range []string{"http\n", "\n10.00 rps\n", "\n1.00% err\n", "\np99 "} {
		if !strings.Contains(e.label, want) {
			t.Errorf("edge label %q does not say %q", e.label, want)
		}
	}
	var p99 float64
	if _, err := fmt.Sscanf(e.label[strings.LastIndex(e.label, "p99 "):], "p99 %g ms", &p99); err != nil || p99 < 19.8 || p99 > 20.2 {
		t.Errorf("edge label %q: p99 %v, want 20 ms (%v)", e.label, p99, err)
	}
	if !strings.Contains(e.attrs, "color=red") {
		t.Errorf("failing edge not red: %q", e.attrs)
	}
	if db := edges[0]; db.source != api || db.target != "db" || !strings.Contains(db.label, "0.00% err") || strings.Contains(db.attrs, "red") {
		t.Errorf("db edge %+v", db)
	}

	// By service, versions fold into their service.
	_, body = getBody(t, srv.URL+"/api/v1/graph?window=1m&format=dot")
	if _, nodes, _ = parseDOT(t, body); len(nodes) != 3 || nodes["web-front.prod"] == "" || nodes["api.v2"] == "" {
		t.Errorf("by service: nodes %v", nodes)
	}
}

func TestGraphAsGrafanaNodeGraph(t *testing.T) {
	store := topology.New(topology.Options{})
	recordCalls(store, graphTestNow, "web@v1", "api@v2", topology.HTTP, 100, 25, 10*time.Millisecond)
	recordCalls(store, graphTestNow, "web@v1", "api@v2", topology.GRPC, 20, 0, 30*time.Millisecond)
	srv := graphServer(t, store)

	resp, body := getBody(t, srv.URL+"/api/v1/graph?window=1m&by=version&format=nodegraph")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var ng struct{ Nodes, Edges []map[string]any }
	if err := json.Unmarshal([]byte(body), &ng); err != nil {
		t.Fatal(err)
	}
	if len(ng.Nodes) != 2 || len(ng.Edges) != 2 {
		t.Fatalf("got %d nodes, %d edges: %s", len(ng.Nodes), len(ng.Edges), body)
	}
	for _, n := range ng.Nodes {
		for _, f := range []string{"id", "title", "subtitle", "mainstat", "secondarystat", "arc__failed", "arc__passed"} {
			if _, ok := n[f]; !ok {
				t.Errorf("node %v has no field %q", n["id"], f)
			}
		}
	}
	api := ng.Nodes[0] // sorted by ID
	if api["id"] != "api@v2" || api["title"] != "api" || api["subtitle"] != "v2" {
		t.Fatalf("api node %v", api)
	}
	// 120 requests received over a minute, 25 of them failed.
	if api["mainstat"] != 2.0 || api["arc__failed"].(float64)+api["arc__passed"].(float64) != 1 || api["arc__failed"] != 25.0/120 {
		t.Errorf("api node stats %v", api)
	}
	if web := ng.Nodes[1]; web["arc__failed"] != 0.0 || web["arc__passed"] != 0.0 {
		t.Errorf("a node that received nothing has no arc: %v", web)
	}
	ids := map[any]bool{}
	for _, e := range ng.Edges {
		for _, f := range []string{"id", "source", "target", "mainstat", "secondarystat"} {
			if _, ok := e[f]; !ok {
				t.Errorf("edge %v has no field %q", e["id"], f)
			}
		}
		ids[e["id"]] = true
		if e["source"] != "web@v1" || e["target"] != "api@v2" {
			t.Errorf("edge %v", e)
		}
	}
	if len(ids) != 2 {
		t.Errorf("edge IDs are not unique over protocols: %v", ids)
	}
	if e := ng.Edges[1]; e["detail__protocol"] != "http" || e["mainstat"] != 100.0/60 || e["secondarystat"].(float64) < 9.9 || e["secondarystat"].(float64) > 10.1 {
		t.Errorf("http edge %v: want 1.67 rps and p99 ≈ 10 ms", e)
	}
}

func TestGraphUnknownFormat(t *testing.T) {
	srv := graphServer(t, topology.New(topology.Options{}))
	resp, body := getBody(t, srv.URL+"/api/v1/graph?format=svg")
	wantBadRequest(t, resp, body, `format="svg"`)
	// The JSON stays the default, and compact.
	resp, body = getBody(t, srv.URL+"/api/v1/graph")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || !strings.HasPrefix(body, `{"generatedAt":`) {
		t.Errorf("default format: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

func TestZipkinDependencies(t *testing.T) {
	store := topology.New(topology.Options{})
	// Versions and protocols fold into one link per pair of services.
	recordCalls(store, graphTestNow, "web@v1", "api@v1", topology.HTTP, 10, 2, time.Millisecond)
	recordCalls(store, graphTestNow, "web@v2", "api@v2", topology.GRPC, 5, 1, time.Millisecond)
	recordCalls(store, graphTestNow, "api@v1", "db@", topology.TCP, 7, 0, time.Millisecond)
	// Ten minutes earlier: only in a long enough lookback.
	recordCalls(store, graphTestNow.Add(-10*time.Minute), "cron@", "api@v1", topology.HTTP, 3, 3, time.Millisecond)
	srv := graphServer(t, store)

	links := func(query string) string {
		t.Helper()
		resp, body := getBody(t, srv.URL+"/api/v2/dependencies"+query)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", query, resp.StatusCode, body)
		}
		var ls []map[string]any
		if err := json.Unmarshal([]byte(body), &ls); err != nil {
			t.Fatalf("%s: %v %s", query, err, body)
		}
		var out []string
		for _, l := range ls {
			if len(l) != 4 {
				t.Errorf("link %v: want exactly parent, child, callCount, errorCount", l)
			}
			out = append(out, fmt.Sprintf("%v->%v %v/%v", l["parent"], l["child"], l["callCount"], l["errorCount"]))
		}
		return strings.Join(out, " ")
	}
	endTs := graphTestNow.UnixMilli()
	cases := []struct{ query, want string }{
		{fmt.Sprintf("?endTs=%d&lookback=60000", endTs), "api->db 7/0 web->api 15/3"},
		// lookback defaults to endTs: everything the store holds.
		{fmt.Sprintf("?endTs=%d", endTs), "api->db 7/0 cron->api 3/3 web->api 15/3"},
		// endTs defaults to now.
		{"", "api->db 7/0 cron->api 3/3 web->api 15/3"},
		{fmt.Sprintf("?endTs=%d&lookback=60000", graphTestNow.Add(-10*time.Minute).UnixMilli()), "cron->api 3/3"},
		{fmt.Sprintf("?endTs=%d&lookback=60000", graphTestNow.Add(-time.Hour).UnixMilli()), ""},
		{"?lookback=9223372036854775807", "api->db 7/0 cron->api 3/3 web->api 15/3"},
	}
	for _, tc := range cases {
		if got := links(tc.query); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.query, got, tc.want)
		}
	}
	for _, bad := range []struct{ query, mentions string }{
		{"?endTs=yesterday", "endTs"},
		{"?endTs=-1", "endTs"},
		{"?endTs=0", "endTs"},
		{"?lookback=0", "lookback"},
		{"?lookback=1h", "lookback"},
	} {
		resp, body := getBody(t, srv.URL+"/api/v2/dependencies"+bad.query)
		wantBadRequest(t, resp, body, bad.mentions)
	}
}
