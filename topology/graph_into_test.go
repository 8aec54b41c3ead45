package topology

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestGraphIntoMatchesGraph reuses one graph for every query while edges
// come, go quiet and expire and the granularity and window change: each
// answer must be what a new Graph answers, and what is past it in the
// reused arrays must be zero (no names kept alive).
func TestGraphIntoMatchesGraph(t *testing.T) {
	s := New(Options{Bucket: 10 * time.Second, Buckets: 12})
	r := rand.New(rand.NewPCG(4, 2))
	var g Graph
	at := time.Duration(0)
	for step := range 300 {
		switch r.IntN(10) {
		case 0:
			s.Expire(t0.Add(at), time.Duration(1+r.IntN(60))*time.Second)
		case 1, 2:
			at += time.Duration(r.IntN(40)) * time.Second
		default:
			for range 1 + r.IntN(20) {
				src, dst := r.IntN(8), r.IntN(8)
				s.Record(obs(at, fmt.Sprintf("s%d", src), fmt.Sprintf("v%d", r.IntN(3)), fmt.Sprintf("s%d", dst), fmt.Sprintf("v%d", r.IntN(2)),
					[]int{200, 404, 503}[r.IntN(3)], time.Duration(1+r.IntN(500))*time.Millisecond))
			}
		}
		by := []By{ByService, ByVersion}[r.IntN(2)]
		window := time.Duration(10+r.IntN(120)) * time.Second
		now := t0.Add(at)
		if err := s.GraphInto(&g, now, window, by); err != nil {
			t.Fatal(err)
		}
		want, err := s.Graph(now, window, by)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, want) {
			t.Fatalf("step %d, by %s, window %v:\nGraphInto %+v\nGraph     %+v", step, by, window, g, want)
		}
		for i, e := range g.Edges[len(g.Edges):cap(g.Edges)] {
			if e != (GraphEdge{}) {
				t.Fatalf("step %d: edge %d past the answer is %+v, want zero", step, len(g.Edges)+i, e)
			}
		}
		for i, n := range g.Nodes[len(g.Nodes):cap(g.Nodes)] {
			if n != (GraphNode{}) {
				t.Fatalf("step %d: node %d past the answer is %+v, want zero", step, len(g.Nodes)+i, n)
			}
		}
	}
}

// TestGraphIntoReuses: a second query of the same graph fills the arrays
// the first one made; that is the point of GraphInto.
func TestGraphIntoReuses(t *testing.T) {
	s := New(Options{})
	for i := range 10 {
		s.Record(obs(0, "web", "v1", fmt.Sprintf("api-%d", i), "v1", 200, time.Millisecond))
	}
	var g Graph
	if err := s.GraphInto(&g, t0, time.Minute, ByVersion); err != nil {
		t.Fatal(err)
	}
	edges, nodes := &g.Edges[0], &g.Nodes[0]
	if err := s.GraphInto(&g, t0.Add(time.Second), time.Minute, ByVersion); err != nil {
		t.Fatal(err)
	}
	if len(g.Edges) != 10 || len(g.Nodes) != 11 || &g.Edges[0] != edges || &g.Nodes[0] != nodes {
		t.Fatalf("%d edges, %d nodes, arrays reused: %v, %v; want 10, 11, true, true",
			len(g.Edges), len(g.Nodes), &g.Edges[0] == edges, &g.Nodes[0] == nodes)
	}
	if allocs := testing.AllocsPerRun(10, func() {
		if err := s.GraphInto(&g, t0.Add(time.Second), time.Minute, ByVersion); err != nil {
			t.Fatal(err)
		}
	}); allocs > 3 {
		t.Errorf("%v allocations a query into a graph of the same size, want at most 3 (window string, node sums)", allocs)
	}
}

// TestGraphEmptyAndErrors: an empty graph has empty lists (JSON [], not
// null), and a query that fails leaves the graph it was given alone.
func TestGraphEmptyAndErrors(t *testing.T) {
	s := New(Options{})
	g, err := s.Graph(t0, time.Minute, ByService)
	if err != nil || g.Nodes == nil || g.Edges == nil || len(g.Nodes)+len(g.Edges) != 0 {
		t.Fatalf("empty store: %+v, %v; want empty, non-nil lists", g, err)
	}
	var into Graph
	if err := s.GraphInto(&into, t0, time.Minute, ByService); err != nil || into.Nodes == nil || into.Edges == nil {
		t.Fatalf("empty store, into a zero graph: %+v, %v; want empty, non-nil lists", into, err)
	}

	s.Record(obs(0, "web", "", "api", "", 200, time.Millisecond))
	if err := s.GraphInto(&into, t0, time.Minute, ByService); err != nil || len(into.Edges) != 1 {
		t.Fatalf("%+v, %v", into, err)
	}
	before := into
	if err := s.GraphInto(&into, t0, time.Minute, "host"); err == nil {
		t.Fatal("by=host: no error")
	}
	if err := s.GraphInto(&into, t0, 0, ByService); err == nil {
		t.Fatal("window 0: no error")
	}
	if !reflect.DeepEqual(into, before) || &into.Edges[0] != &before.Edges[0] {
		t.Fatalf("after failed queries: %+v, want %+v", into, before)
	}
}
