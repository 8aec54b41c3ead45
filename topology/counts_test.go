package topology

import (
	"math"
	"testing"
	"time"
)

func TestVersionCountsBothSides(t *testing.T) {
	s := New(Options{Bucket: 10 * time.Second, Buckets: 6})
	// Callers' side: web reaches api v1 90 times (2 failing), v2 10 times
	// (4 failing), and api without a subset once.
	for i := 0; i < 90; i++ {
		st := 200
		if i < 2 {
			st = 503
		}
		s.Record(obs(time.Duration(i)*100*time.Millisecond, "web", "v1", "api", "v1", st, 10*time.Millisecond))
	}
	for i := 0; i < 10; i++ {
		st := 200
		if i < 4 {
			st = 503
		}
		s.Record(obs(time.Duration(i)*time.Second, "web", "v1", "api", "v2", st, 40*time.Millisecond))
	}
	s.Record(obs(time.Second, "web", "v1", "api", "", 200, time.Millisecond))
	// Another caller and another service: not api's callers' view of v2 …
	s.Record(obs(time.Second, "api", "v2", "db", "v2", 200, time.Millisecond))
	// Api's own side: its v2 sidecar saw 12 requests, one a gRPC INTERNAL.
	for i := 0; i < 12; i++ {
		o := obs(time.Duration(i)*time.Second, "unknown", "", "api", "v2", 200, 30*time.Millisecond)
		if i == 0 {
			o.GRPCStatus = 13
		}
		s.RecordServed(o)
	}

	vc, err := s.VersionCounts("api", t0.Add(20*time.Second), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]uint64{"v1": {90, 2}, "v2": {10, 4}, "": {1, 0}}
	if len(vc.Callers) != len(want) {
		t.Fatalf("callers' view: %+v, want versions %v", vc.Callers, want)
	}
	for v, w := range want {
		if c := vc.Callers[v]; c.Requests != w[0] || c.Errors != w[1] {
			t.Errorf("callers' view of %q: %+v, want %d requests %d errors", v, c, w[0], w[1])
		}
	}
	if c := vc.Callers["v2"]; math.Abs(c.P99Ms-40)/40 > 0.01 || math.Abs(c.ErrorRate()-0.4) > 1e-9 {
		t.Errorf("v2 p99 %v (want 40 ±1%%), error rate %v", c.P99Ms, c.ErrorRate())
	}
	if len(vc.Self) != 1 || vc.Self["v2"].Requests != 12 || vc.Self["v2"].Errors != 1 {
		t.Errorf("api's own view: %+v, want v2 with 12 requests, 1 error", vc.Self)
	}
	// The served view never shows up as graph edges.
	g, _ := s.Graph(t0.Add(20*time.Second), 30*time.Second, ByVersion)
	for _, e := range g.Edges {
		if e.Source == "unknown" {
			t.Errorf("served-view observation leaked into the graph: %+v", e)
		}
	}

	// A window that ends before the traffic sees nothing.
	vc, _ = s.VersionCounts("api", t0.Add(-time.Minute), 30*time.Second)
	if len(vc.Callers)+len(vc.Self) != 0 {
		t.Errorf("counts before any traffic: %+v", vc)
	}
	if _, err := s.VersionCounts("", t0, time.Minute); err == nil {
		t.Error("no service: want an error")
	}
	if _, err := s.VersionCounts("api", t0, 0); err == nil {
		t.Error("zero window: want an error")
	}
}

func TestTotalsAreMonotonicAndBucketed(t *testing.T) {
	s := New(Options{Bucket: 10 * time.Second, Buckets: 3})
	lat := []time.Duration{500 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 20 * time.Second}
	for i, l := range lat {
		st := 200
		if i == 3 {
			st = 504
		}
		s.Record(obs(time.Duration(i)*time.Minute, "web", "", "api", "", st, l)) // far apart: the ring forgets, totals do not
	}
	var got []Totals
	s.EachTotals(func(k EdgeKey, tt Totals) {
		if k.Source.Service != "web" || k.Target.Service != "api" {
			t.Errorf("unexpected edge %+v", k)
		}
		got = append(got, tt)
	})
	if len(got) != 1 {
		t.Fatalf("totals of %d edges, want 1", len(got))
	}
	tt := got[0]
	if tt.Requests != 4 || tt.Errors != 1 {
		t.Errorf("totals %+v: want 4 requests, 1 error", tt)
	}
	bounds := LatencyBoundsMs()
	want := make([]uint64, len(bounds))
	want[0] = 1 // 0.5 ms ≤ 1 ms
	want[2] = 2 // 3 ms ≤ 5 ms; 20 s is past the last bound: in Requests only
	for i := range want {
		if tt.LatencyBuckets[i] != want[i] {
			t.Errorf("bucket le=%v: %d, want %d", bounds[i], tt.LatencyBuckets[i], want[i])
		}
	}
	if math.Abs(tt.LatencySumMs-20006.5) > 1e-6 {
		t.Errorf("latency sum %v ms, want 20006.5", tt.LatencySumMs)
	}
}

func TestServedViewHasItsOwnCapAndExpiry(t *testing.T) {
	s := New(Options{Bucket: time.Second, Buckets: 10, MaxEdges: 2})
	for i, svc := range []string{"a", "b", "c"} {
		s.RecordServed(obs(time.Duration(i)*time.Second, "x", "", svc, "v1", 200, time.Millisecond))
	}
	if s.Dropped() != 1 {
		t.Errorf("dropped %d, want 1 (cap 2, 3 services served)", s.Dropped())
	}
	// Edges are capped separately: the served view did not use them up.
	if !s.Record(obs(0, "x", "", "a", "v1", 200, time.Millisecond)) {
		t.Error("an edge was refused although no edge is held")
	}
	if n := s.Expire(t0.Add(time.Hour), time.Minute); n != 3 {
		t.Errorf("expired %d series, want 3 (2 served, 1 edge)", n)
	}
	vc, _ := s.VersionCounts("a", t0.Add(time.Hour), 10*time.Second)
	if len(vc.Self) != 0 {
		t.Errorf("expired series still counted: %+v", vc.Self)
	}
	if !s.RecordServed(obs(time.Hour, "x", "", "c", "v1", 200, time.Millisecond)) {
		t.Error("after expiry the served view must take new services")
	}
}

func TestZipkinErrorTagFails(t *testing.T) {
	o := Observation{Status: 200, GRPCStatus: -1, Failed: true}
	if ClassOf(o) != Class2xx || !IsError(o) {
		t.Errorf("a 200 marked failed: class %v error %v, want 2xx and an error", ClassOf(o), IsError(o))
	}
}

func TestVersionTotalsOutliveTheRing(t *testing.T) {
	s := New(Options{Bucket: time.Second, Buckets: 2})
	for i := 0; i < 5; i++ {
		s.Record(obs(time.Duration(i)*time.Minute, "web", "", "api", "v2", 200+300*(i%2), time.Millisecond))
		s.Record(obs(time.Duration(i)*time.Minute, "cron", "", "api", "v2", 200, time.Millisecond))
		s.RecordServed(obs(time.Duration(i)*time.Minute, "web", "", "api", "v2", 200, time.Millisecond))
	}
	s.Record(obs(0, "web", "", "db", "v2", 500, time.Millisecond))
	callers, self := s.VersionTotals("api")
	if c := callers["v2"]; len(callers) != 1 || c.Requests != 10 || c.Errors != 2 {
		t.Errorf("callers' totals %+v: want v2 with 10 requests (two callers), 2 errors", callers)
	}
	if c := self["v2"]; len(self) != 1 || c.Requests != 5 || c.Errors != 0 {
		t.Errorf("own totals %+v: want v2 with 5 requests", self)
	}
}
