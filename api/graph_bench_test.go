package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signalbox/signalbox/topology"
)

// benchStore is 1,000 services with 5,000 distinct edges between them,
// each with traffic in every 10 s bucket of the last 5 minutes, at a few
// latencies, so every bucket's sketch has bins to merge.
func benchStore(b *testing.B) (*topology.Store, time.Time) {
	b.Helper()
	store := topology.New(topology.Options{})
	end := graphTestNow
	for i, e := range benchEdges() {
		s, d := e[0], e[1]
		for sec := 0; sec < 300; sec += 10 {
			for k := range 3 {
				store.Record(topology.Observation{
					Time: end.Add(-time.Duration(sec) * time.Second), Source: s, Target: d, Protocol: topology.HTTP,
					Status: 200, GRPCStatus: -1, Latency: time.Duration(1+(i+k*7)%50) * time.Millisecond,
				})
			}
		}
	}
	if store.Edges() != 5000 {
		b.Fatalf("%d edges, want 5000", store.Edges())
	}
	return store, end
}

// benchEdges are the 5,000 edges of benchStore: five targets per source.
func benchEdges() [][2]topology.Node {
	var edges [][2]topology.Node
	for i := range 5000 {
		src := i % 1000
		dst := (src + 1 + (i/1000)*97) % 1000
		edges = append(edges, [2]topology.Node{{Service: fmt.Sprintf("svc-%d", src), Version: "v1"}, {Service: fmt.Sprintf("svc-%d", dst), Version: "v1"}})
	}
	return edges
}

// BenchmarkGraphQuery is GET /api/v1/graph?window=5m&by=version over real
// HTTP at 1,000 nodes and 5,000 edges, every bucket of the window filled.
// The goal is p99 ≤ 10 ms; p50 and p99 are of the timed iterations.
//
// All but the last sub-benchmark query at one instant. json-sliding moves
// the clock on by a second before each request and records a request per
// edge (neither timed), so one request in ten finds a bucket closed: the
// store then slides every edge's window sum.
func BenchmarkGraphQuery(b *testing.B) {
	store, end := benchStore(b)
	var clock atomic.Int64
	clock.Store(end.UnixNano())
	srv := httptest.NewServer(New(Deps{Graph: store, Now: func() time.Time { return time.Unix(0, clock.Load()).UTC() }}))
	defer srv.Close()
	client := srv.Client()
	// The parts, to see what dominates: the store's query alone, and the
	// JSON encoding of its answer alone, both as /api/v1/graph does them
	// (the query into a reused graph, the numbers rounded, then encoded).
	var into topology.Graph
	b.Run("store", func(b *testing.B) {
		timeEachRun(b, func() {
			if err := store.GraphInto(&into, end, 5*time.Minute, topology.ByVersion); err != nil {
				b.Fatal(err)
			}
		})
	})
	g, err := store.Graph(end, 5*time.Minute, topology.ByVersion)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		timeEachRun(b, func() {
			roundGraph(&g) // as costly the second time: it rounds every number again
			if _, err := encodeGraph(g); err != nil {
				b.Fatal(err)
			}
		})
	})
	// The same with encoding/json, which the graph used before.
	b.Run("encode-reflect", func(b *testing.B) {
		timeEachRun(b, func() {
			if err := json.NewEncoder(io.Discard).Encode(g); err != nil {
				b.Fatal(err)
			}
		})
	})
	for _, format := range []string{formatJSON, formatNodeGraph, formatDOT} {
		b.Run(format, func(b *testing.B) {
			url := srv.URL + "/api/v1/graph?window=5m&by=version&format=" + format
			var size int64
			timeEachRun(b, func() {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("%d %v", resp.StatusCode, err)
				}
				size = n
			})
			b.ReportMetric(float64(size), "body-bytes")
		})
	}
	for _, advance := range []bool{false, true} {
		name := "json-sliding"
		if advance {
			name += "-advanced"
		}
		b.Run(name, func(b *testing.B) {
			benchSliding(b, store, srv.URL, &clock, advance)
		})
	}
}

// benchSliding is json-sliding: before each timed GET, the clock moves on
// 1 s and a request per edge is recorded; with advance, the store's sums
// are advanced when a bucket closes, as signalbox's serve loop does.
func benchSliding(b *testing.B, store *topology.Store, base string, clock *atomic.Int64, advance bool) {
	client := &http.Client{}
	url := base + "/api/v1/graph?window=5m&by=version"
	edges := benchEdges()
	n := 0
	timeEachRunAfter(b, func() {
		before := time.Unix(0, clock.Load())
		now := time.Unix(0, clock.Add(int64(time.Second))).UTC()
		for i, e := range edges {
			store.Record(topology.Observation{
				Time: now, Source: e[0], Target: e[1], Protocol: topology.HTTP,
				Status: 200, GRPCStatus: -1, Latency: time.Duration(1+(i+n)%50) * time.Millisecond,
			})
		}
		n++
		if advance && !store.NextBucket(before).After(now) {
			store.Advance(now)
		}
	}, func() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("%d %v", resp.StatusCode, err)
		}
	})
}

// timeEachRun runs f b.N times and reports its p50 and p99 (nearest rank).
func timeEachRun(b *testing.B, f func()) {
	b.Helper()
	timeEachRunAfter(b, nil, f)
}

// timeEachRunAfter is timeEachRun with setup, when not nil, run (and not
// timed) before each f. It also reports the CPU time the process (server
// and client, GC included) used during f, per run: less sensitive than the
// clock to other work on the machine.
func timeEachRunAfter(b *testing.B, setup, f func()) {
	b.Helper()
	var took []time.Duration
	var cpu time.Duration
	b.ReportAllocs()
	for b.Loop() {
		if setup != nil {
			b.StopTimer()
			setup()
			b.StartTimer()
		}
		c, start := processCPU(), time.Now()
		f()
		took = append(took, time.Since(start))
		cpu += processCPU() - c
	}
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(took[(len(took)+1)/2-1]), "p50-ms")
	b.ReportMetric(ms(took[(len(took)*99+99)/100-1]), "p99-ms")
	if cpu > 0 {
		b.ReportMetric(ms(cpu)/float64(len(took)), "cpu-ms/op")
	}
}
