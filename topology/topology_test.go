package topology

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func obs(at time.Duration, src, srcV, dst, dstV string, status int, latency time.Duration) Observation {
	return Observation{Time: t0.Add(at), Source: Node{src, srcV}, Target: Node{dst, dstV}, Protocol: HTTP, Status: status, GRPCStatus: -1, Latency: latency, Bytes: 100}
}

func edge(t *testing.T, g Graph, src, dst string) GraphEdge {
	t.Helper()
	for _, e := range g.Edges {
		if e.Source == src && e.Target == dst {
			return e
		}
	}
	t.Fatalf("no edge %s → %s in %+v", src, dst, g.Edges)
	return GraphEdge{}
}

func TestClassesAndErrors(t *testing.T) {
	cases := []struct {
		o     Observation
		class Class
		err   bool
	}{
		{Observation{Status: 200, GRPCStatus: -1}, Class2xx, false},
		{Observation{Status: 302, GRPCStatus: -1}, Class3xx, false},
		{Observation{Status: 404, GRPCStatus: -1}, Class4xx, false},
		{Observation{Status: 503, GRPCStatus: -1}, Class5xx, true},
		{Observation{Status: 0, GRPCStatus: -1}, ClassConnFailure, true},
		{Observation{Status: 200, ConnFailure: true}, ClassConnFailure, true},
		{Observation{Status: 200, GRPCStatus: 14}, Class2xx, true}, // UNAVAILABLE in trailers
		{Observation{Status: 200, GRPCStatus: 5}, Class2xx, false}, // NOT_FOUND: the caller's problem
		{Observation{Status: 200, GRPCStatus: 4}, Class2xx, true},  // DEADLINE_EXCEEDED
		{Observation{Status: 0, GRPCStatus: 13}, Class2xx, true},   // INTERNAL, no HTTP status seen
	}
	for i, c := range cases {
		if got := ClassOf(c.o); got != c.class {
			t.Errorf("case %d: class %v, want %v", i, got, c.class)
		}
		if got := IsError(c.o); got != c.err {
			t.Errorf("case %d: error %v, want %v", i, got, c.err)
		}
	}
}

func TestGraphCountsExactly(t *testing.T) {
	s := New(Options{Bucket: 10 * time.Second, Buckets: 6})
	for i := 0; i < 90; i++ {
		s.Record(obs(time.Duration(i)*time.Second/3, "web", "v1", "api", "v1", 200, 10*time.Millisecond))
	}
	for i := 0; i < 10; i++ {
		s.Record(obs(time.Duration(i)*time.Second, "web", "v1", "api", "v2", 503, 50*time.Millisecond))
	}
	s.Record(obs(5*time.Second, "web", "v1", "db", "", 0, 0))
	now := t0.Add(29 * time.Second)

	g, err := s.Graph(now, 30*time.Second, ByVersion)
	if err != nil {
		t.Fatal(err)
	}
	v1, v2 := edge(t, g, "web@v1", "api@v1"), edge(t, g, "web@v1", "api@v2")
	if v1.Requests != 90 || v1.Errors != 0 || v1.ByClass.C2xx != 90 || v1.Bytes != 9000 {
		t.Errorf("web@v1 → api@v1: %+v", v1)
	}
	if v2.Requests != 10 || v2.Errors != 10 || v2.ByClass.C5xx != 10 || v2.ErrorRate != 1 {
		t.Errorf("web@v1 → api@v2: %+v", v2)
	}
	if db := edge(t, g, "web@v1", "db"); db.ByClass.ConnFailure != 1 || db.Errors != 1 {
		t.Errorf("connection failure edge: %+v", db)
	}
	if math.Abs(v1.RPS-3) > 1e-9 {
		t.Errorf("rps %v, want 90 requests / 30 s = 3", v1.RPS)
	}

	gs, _ := s.Graph(now, 30*time.Second, ByService)
	api := edge(t, gs, "web", "api")
	if api.Requests != 100 || api.Errors != 10 || math.Abs(api.ErrorRate-0.1) > 1e-9 {
		t.Errorf("by service, web → api: %+v", api)
	}
	var node GraphNode
	for _, n := range gs.Nodes {
		if n.ID == "api" {
			node = n
		}
	}
	if math.Abs(node.ErrorRate-0.1) > 1e-9 || math.Abs(node.RPS-100.0/30) > 1e-9 {
		t.Errorf("node api: %+v", node)
	}
}

func TestWindowAndRing(t *testing.T) {
	s := New(Options{Bucket: 10 * time.Second, Buckets: 3})
	s.Record(obs(0, "a", "", "b", "", 200, time.Millisecond))
	s.Record(obs(25*time.Second, "a", "", "b", "", 200, time.Millisecond))
	// A 10s window at 25s sees only the current bucket.
	g, _ := s.Graph(t0.Add(25*time.Second), 10*time.Second, ByService)
	if e := edge(t, g, "a", "b"); e.Requests != 1 {
		t.Fatalf("10s window: %d requests, want 1", e.Requests)
	}
	// After the ring wraps, the first bucket's slot is reused.
	s.Record(obs(35*time.Second, "a", "", "b", "", 200, time.Millisecond))
	g, _ = s.Graph(t0.Add(35*time.Second), time.Hour, ByService)
	if g.Window != "30s" {
		t.Fatalf("window %s, want it cut to the ring's 30s", g.Window)
	}
	if e := edge(t, g, "a", "b"); e.Requests != 2 {
		t.Fatalf("after the ring wrapped: %d requests, want 2 (the bucket at 0s is gone)", e.Requests)
	}
	// An observation older than the ring is not counted.
	s.Record(obs(0, "a", "", "b", "", 200, time.Millisecond))
	g, _ = s.Graph(t0.Add(35*time.Second), time.Hour, ByService)
	if e := edge(t, g, "a", "b"); e.Requests != 2 {
		t.Fatalf("a late observation was counted: %d", e.Requests)
	}
	if _, err := s.Graph(t0, time.Minute, "team"); err == nil {
		t.Fatal("by=team accepted")
	}
	if _, err := s.Graph(t0, 0, ByService); err == nil {
		t.Fatal("window 0 accepted")
	}
}

func TestEdgeCapAndExpiry(t *testing.T) {
	s := New(Options{MaxEdges: 3})
	for i := 0; i < 5; i++ {
		s.Record(obs(0, "web", "", fmt.Sprintf("svc-%d", i), "", 200, time.Millisecond))
	}
	if s.Edges() != 3 || s.Dropped() != 2 {
		t.Fatalf("edges %d dropped %d, want 3 and 2", s.Edges(), s.Dropped())
	}
	// Known edges still count at the cap.
	if !s.Record(obs(time.Second, "web", "", "svc-0", "", 200, time.Millisecond)) {
		t.Fatal("an existing edge was refused at the cap")
	}
	s.Record(obs(5*time.Minute, "web", "", "svc-1", "", 200, time.Millisecond))
	if n := s.Expire(t0.Add(5*time.Minute), time.Minute); n != 2 || s.Edges() != 1 {
		t.Fatalf("expired %d, %d left; want 2 expired, 1 left", n, s.Edges())
	}
	if !s.Record(obs(5*time.Minute, "web", "", "svc-9", "", 200, time.Millisecond)) {
		t.Fatal("room freed by expiry was not reused")
	}
}

func TestQuantilesWithinSketchError(t *testing.T) {
	s := New(Options{RelativeAccuracy: 0.01})
	r := rand.New(rand.NewPCG(1, 2))
	var exact []float64
	for i := 0; i < 20000; i++ {
		ms := math.Exp(r.NormFloat64()) * 20 // log-normal latencies around 20ms
		exact = append(exact, ms)
		s.Record(obs(time.Duration(i)*time.Millisecond, "a", "", "b", "", 200, time.Duration(ms*float64(time.Millisecond))))
	}
	sort.Float64s(exact)
	g, _ := s.Graph(t0.Add(20*time.Second), time.Minute, ByService)
	e := edge(t, g, "a", "b")
	for _, q := range []struct {
		q   float64
		got float64
	}{{0.5, e.P50Ms}, {0.95, e.P95Ms}, {0.99, e.P99Ms}} {
		want := exact[int(q.q*float64(len(exact)-1))]
		if rel := math.Abs(q.got-want) / want; rel > 0.011 {
			t.Errorf("p%v = %.3f ms, exact %.3f ms: relative error %.4f > 1%%", q.q*100, q.got, want, rel)
		}
	}
}

func TestConcurrentRecordAndGraph(t *testing.T) {
	s := New(Options{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				s.Record(obs(time.Duration(i)*time.Millisecond, fmt.Sprintf("s%d", w), "", "api", "", 200, time.Millisecond))
			}
		}(w)
	}
	for i := 0; i < 20; i++ {
		if _, err := s.Graph(t0.Add(2*time.Second), time.Minute, ByService); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	g, _ := s.Graph(t0.Add(2*time.Second), time.Minute, ByService)
	var total uint64
	for _, e := range g.Edges {
		total += e.Requests
	}
	if total != 8000 {
		t.Fatalf("%d requests counted, want 8000", total)
	}
}

// TestFutureObservationKeepsTheWindow: a request stamped far ahead of the
// store's clock (a sender whose clock runs fast) neither takes the ring slot
// of a bucket of real traffic nor keeps its edge from expiring, whether it
// comes after the clock is set or before.
func TestFutureObservationKeepsTheWindow(t *testing.T) {
	const ttl = 16 * time.Minute
	// One request every 10 s for 15 minutes, the clock advancing with them
	// as the serve loop advances it.
	fill := func(s *Store) time.Time {
		var at time.Time
		for i := range 90 {
			at = t0.Add(time.Duration(i) * 10 * time.Second)
			s.Advance(at)
			s.Record(obs(time.Duration(i)*10*time.Second, "web", "", "api", "", 200, time.Millisecond))
		}
		return at
	}
	requests := func(s *Store, now time.Time) uint64 {
		g, err := s.Graph(now, 15*time.Minute, ByService)
		if err != nil {
			t.Fatal(err)
		}
		return edge(t, g, "web", "api").Requests
	}

	t.Run("after the clock is set", func(t *testing.T) {
		s := New(Options{})
		now := fill(s)
		for _, ahead := range []time.Duration{10 * time.Minute, 24 * time.Hour} {
			s.Record(Observation{Time: now.Add(ahead), Source: Node{Service: "web"}, Target: Node{Service: "api"}, Protocol: HTTP, Status: 200, GRPCStatus: -1})
		}
		// The two are counted at the clock, and no bucket is lost.
		if n := requests(s, now); n != 92 || s.Ahead() != 2 {
			t.Fatalf("%d requests in the window, %d ahead; want 92 and 2", n, s.Ahead())
		}
		if n := s.Expire(now.Add(ttl+10*time.Second), ttl); n != 1 {
			t.Fatalf("expired %d edges after %v idle, want 1", n, ttl)
		}
	})
	t.Run("before the clock is set", func(t *testing.T) {
		s := New(Options{})
		s.Record(Observation{Time: t0.Add(24 * time.Hour), Source: Node{Service: "web"}, Target: Node{Service: "api"}, Protocol: HTTP, Status: 200, GRPCStatus: -1})
		now := fill(s)
		if n := requests(s, now); n != 90 {
			t.Fatalf("%d requests in the window, want the 90 real ones", n)
		}
		if n := s.Expire(now.Add(ttl+10*time.Second), ttl); n != 1 {
			t.Fatalf("expired %d edges after %v idle, want 1", n, ttl)
		}
	})
}

// TestEdgeCapIsExact: writers racing for the last places under the cap on
// different shards never take more than the cap, and every observation is
// either recorded or counted as dropped.
func TestEdgeCapIsExact(t *testing.T) {
	const (
		maxEdges = 10
		writers  = 64
		each     = 26
	)
	for trial := range 100 {
		s := New(Options{MaxEdges: maxEdges, Shards: writers})
		start := make(chan struct{})
		var wg sync.WaitGroup
		var recorded [writers]int
		for w := range writers {
			wg.Go(func() {
				<-start
				for i := range each {
					if s.Record(obs(0, "web", "", fmt.Sprintf("svc-%d-%d", w, i), "", 200, time.Millisecond)) {
						recorded[w]++
					}
				}
			})
		}
		close(start)
		wg.Wait()
		total := 0
		for _, n := range recorded {
			total += n
		}
		if s.Edges() != maxEdges || total != maxEdges || s.Dropped() != writers*each-maxEdges {
			t.Fatalf("trial %d: %d edges, %d recorded, %d dropped; want %d, %d, %d",
				trial, s.Edges(), total, s.Dropped(), maxEdges, maxEdges, writers*each-maxEdges)
		}
	}
}

// TestNegativeLatencyCountsAsZero: a negative latency (a sender's bug)
// neither takes from the totals' sum nor reaches the sketch as a value.
func TestNegativeLatencyCountsAsZero(t *testing.T) {
	s := New(Options{})
	s.Record(obs(0, "web", "", "api", "", 200, -5*time.Second))
	s.Record(obs(0, "web", "", "api", "", 200, 2*time.Millisecond))
	var got Totals
	s.EachTotals(func(_ EdgeKey, tt Totals) { got = tt })
	if got.Requests != 2 || got.LatencySumMs != 2 || got.LatencyBuckets[0] != 1 || got.LatencyBuckets[1] != 1 {
		t.Fatalf("totals %+v: want a sum of 2 ms, one request in each of the first two buckets", got)
	}
	g, _ := s.Graph(t0, time.Minute, ByService)
	if e := edge(t, g, "web", "api"); e.P50Ms != 0 {
		t.Fatalf("p50 %v ms, want 0 (half the latencies count as zero)", e.P50Ms)
	}
}
