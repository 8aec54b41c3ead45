package api

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/signalbox/signalbox/topology"
)

// sampleGraph is a graph with every field set, and the awkward values:
// names that need escaping, tiny and huge floats, the largest counts.
func sampleGraph() topology.Graph {
	return topology.Graph{
		GeneratedAt: time.Date(2026, 11, 23, 17, 4, 5, 123456789, time.UTC),
		Window:      "5m0s",
		Nodes: []topology.GraphNode{
			{ID: "web", Service: "web", RPS: 12.5, ErrorRate: 0},
			{ID: "greeter/v2", Service: "greeter", Version: "v2", RPS: 1.0 / 3, ErrorRate: 0.0000004},
			{ID: `we"ird<&>\name`, Service: "ünïcode\x01\u2028", Version: "\xff", RPS: 1e21, ErrorRate: 1},
		},
		Edges: []topology.GraphEdge{
			{
				Source: "web", Target: "greeter/v2", Protocol: topology.GRPC, Requests: math.MaxUint64, Errors: 7, Bytes: 1 << 40,
				RPS: 0.016666666666666666, ErrorRate: 1e-7, ByClass: topology.ClassCounts{C2xx: 1, C3xx: 2, C4xx: 3, C5xx: 4, ConnFailure: 5},
				P50Ms: 1.5, P95Ms: 123456789.125, P99Ms: 5e-324,
			},
			{Source: "a", Target: "b", Protocol: topology.TCP, P99Ms: math.Copysign(0, -1)},
		},
	}
}

func TestEncodeGraphIsEncodingJSON(t *testing.T) {
	for name, g := range map[string]topology.Graph{
		"every field":  sampleGraph(),
		"empty":        {},
		"empty slices": {Nodes: []topology.GraphNode{}, Edges: []topology.GraphEdge{}},
	} {
		t.Run(name, func(t *testing.T) {
			checkGraphEncoding(t, g)
		})
	}
}

func TestEncodeGraphRefusesNaN(t *testing.T) {
	g := sampleGraph()
	g.Edges[1].P99Ms = math.NaN()
	_, err := encodeGraph(g)
	if err == nil || !strings.Contains(err.Error(), "edge a -> b: p99Ms: NaN is not a JSON number") {
		t.Fatalf("err = %v, want it to name the edge and the field", err)
	}
	g = sampleGraph()
	g.Nodes[0].RPS = math.Inf(1)
	if _, err := encodeGraph(g); err == nil || !strings.Contains(err.Error(), "node web: rps") {
		t.Fatalf("err = %v, want it to name the node and the field", err)
	}
}

// checkGraphEncoding holds encodeGraph to json.Encoder's bytes.
func checkGraphEncoding(t *testing.T, g topology.Graph) {
	t.Helper()
	var want bytes.Buffer
	wantErr := json.NewEncoder(&want).Encode(g)
	got, err := encodeGraph(g)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("error %v, encoding/json's %v", err, wantErr)
	}
	if err == nil && !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("encoded\n%s\nencoding/json\n%s", got, want.Bytes())
	}
}

// FuzzEncodeGraph: for any names and numbers, the hand-written encoder
// writes what encoding/json writes (or fails where it fails).
func FuzzEncodeGraph(f *testing.F) {
	f.Add("web", "greeter", "v1", 1.5, 0.25, uint64(10), uint64(1), 12.75, int64(1700000000123456789))
	f.Add(`a"b\c`, "<x>&", "\xff\xfe", 1e-7, 1e21, uint64(math.MaxUint64), uint64(0), math.Inf(-1), int64(0))
	f.Add("\u2028\u2029", "\x00\x1f", "ü", 5e-324, math.Copysign(0, -1), uint64(3), uint64(2), math.NaN(), int64(-62135596800000000))
	f.Fuzz(func(t *testing.T, src, dst, version string, rps, rate float64, requests, errors uint64, p99 float64, unixNano int64) {
		g := topology.Graph{
			GeneratedAt: time.Unix(0, unixNano).UTC(),
			Window:      version,
			Nodes:       []topology.GraphNode{{ID: src, Service: dst, Version: version, RPS: rps, ErrorRate: rate}},
			Edges: []topology.GraphEdge{{
				Source: src, Target: dst, Protocol: topology.Protocol(version), Requests: requests, Errors: errors, Bytes: requests ^ errors,
				RPS: rps, ErrorRate: rate, ByClass: topology.ClassCounts{C2xx: requests, C5xx: errors}, P50Ms: rps / 3, P95Ms: rate * 1e20, P99Ms: p99,
			}},
		}
		checkGraphEncoding(t, g)
	})
}
