package main

import (
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/signalbox/signalbox/api"
	"github.com/signalbox/signalbox/topology"
)

var graphCmdNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// graphAPI serves the real API over a store with traffic: per minute, 600
// web → api (1% failing), 120 api → db, 60 web → api over gRPC.
func graphAPI(t *testing.T) *httptest.Server {
	t.Helper()
	store := topology.New(topology.Options{})
	add := func(src, srcV, dst, dstV string, proto topology.Protocol, n, errs int, latency time.Duration) {
		for i := range n {
			status := 200
			if i < errs {
				status = 500
			}
			store.Record(topology.Observation{Time: graphCmdNow, Source: topology.Node{Service: src, Version: srcV}, Target: topology.Node{Service: dst, Version: dstV},
				Protocol: proto, Status: status, GRPCStatus: -1, Latency: latency})
		}
	}
	add("api", "v2", "db", "", topology.TCP, 120, 0, 2*time.Millisecond)
	add("web", "v1", "api", "v2", topology.HTTP, 600, 6, 150*time.Millisecond)
	add("web", "v1", "api", "v2", topology.GRPC, 60, 0, 20*time.Millisecond)
	srv := httptest.NewServer(api.New(api.Deps{Graph: store, Now: func() time.Time { return graphCmdNow }}))
	t.Cleanup(srv.Close)
	return srv
}

func hostPortOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

func TestGraphCommandPrintsEdgesBusiestFirst(t *testing.T) {
	srv := graphAPI(t)
	code, out, stderr := runCmd(t, nil, "graph", "--addr", hostPortOf(srv), "--window", "1m")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var rows [][]string
	for _, l := range lines {
		rows = append(rows, strings.Fields(l))
	}
	want := [][]string{
		{"SOURCE", "TARGET", "PROTO", "RPS", "ERR%", "P50", "P95", "P99", "REQUESTS"},
		{"web", "api", "http", "10.00", "1.00", "150ms", "150ms", "150ms", "600"},
		// The sketch's quantiles are within 1%: 2 ms reads 1.99.
		{"api", "db", "tcp", "2.00", "0.00", "1.99ms", "1.99ms", "1.99ms", "120"},
		{"web", "api", "grpc", "1.00", "0.00", "19.9ms", "19.9ms", "19.9ms", "60"},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(rows), len(want), out)
	}
	for i := range want {
		for j := range want[i] {
			if rows[i][j] != want[i][j] {
				t.Errorf("line %d column %d: %q, want %q\n%s", i, j, rows[i][j], want[i][j], out)
			}
		}
	}
	// The columns line up: tabwriter pads every column of the header.
	if !strings.HasPrefix(lines[0], "SOURCE  TARGET  PROTO") {
		t.Errorf("header not aligned: %q", lines[0])
	}
}

func TestGraphCommandByVersionAndDOT(t *testing.T) {
	srv := graphAPI(t)
	// The address from the environment, as a URL.
	env := map[string]string{"SIGNALBOX_ADDR": srv.URL}
	code, out, stderr := runCmd(t, env, "graph", "--by", "version", "--window", "1m")
	if code != 0 || !strings.Contains(out, "web@v1") || !strings.Contains(out, "api@v2") {
		t.Fatalf("by version: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = runCmd(t, env, "graph", "--dot", "--by", "version")
	if code != 0 || !strings.HasPrefix(out, "digraph signalbox {\n") || !strings.Contains(out, `"web@v1" -> "api@v2"`) || !strings.HasSuffix(out, "}\n") {
		t.Fatalf("dot: exit %d\n%s%s", code, out, stderr)
	}
}

func TestGraphCommandEmptyGraph(t *testing.T) {
	srv := httptest.NewServer(api.New(api.Deps{Graph: topology.New(topology.Options{})}))
	defer srv.Close()
	code, out, _ := runCmd(t, nil, "graph", "--addr", hostPortOf(srv))
	if code != 0 || out != "no traffic in the last 5m0s\n" {
		t.Fatalf("exit %d: %q", code, out)
	}
}

func TestGraphCommandErrors(t *testing.T) {
	srv := graphAPI(t)
	noGraph := httptest.NewServer(api.New(api.Deps{})) // a signalbox without the graph API
	defer noGraph.Close()
	// An address nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	cases := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want []string
	}{
		{"not running", nil, []string{"graph", "--addr", closed}, 1, []string{"cannot reach signalbox", "is `signalbox serve` running? set --addr"}},
		{"env not running", map[string]string{"SIGNALBOX_ADDR": closed}, []string{"graph"}, 1, []string{closed, "is `signalbox serve` running?"}},
		{"flag wins over env", map[string]string{"SIGNALBOX_ADDR": hostPortOf(srv)}, []string{"graph", "--addr", closed}, 1, []string{"cannot reach signalbox"}},
		{"server refuses the window", nil, []string{"graph", "--addr", hostPortOf(srv), "--window", "48h"}, 2, []string{"400 Bad Request", `window="48h0m0s": want a duration between 1s and 24h`, "hint: e.g. /api/v1/graph?"}},
		{"server without the graph", nil, []string{"graph", "--addr", hostPortOf(noGraph)}, 1, []string{"404 Not Found", "no such endpoint: GET /api/v1/graph", "hint: "}},
		{"bad by", nil, []string{"graph", "--by", "team"}, 2, []string{`--by "team": want service or version`}},
		{"bad window", nil, []string{"graph", "--window", "soon"}, 2, []string{`invalid argument "soon"`}},
		{"negative window", nil, []string{"graph", "--window", "-1m"}, 2, []string{"--window -1m0s: must be positive"}},
		{"bad addr", nil, []string{"graph", "--addr", "ftp://x"}, 2, []string{`--addr "ftp://x"`}},
		{"stray argument", nil, []string{"graph", "web"}, 2, []string{`unexpected argument "web"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCmd(t, tc.env, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tc.code, out, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
}
