package zipkin

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signalbox/signalbox/topology"
)

// rpc is one call web@v1 → api@v2 as Envoy sidecars trace it: a client
// span and its shared server half. The client names no callee unless
// named: the server span names it.
func rpc(trace uint64, at time.Time, status int) (client, server Span) {
	client = Span{
		TraceID: TraceID{Low: trace}, ID: trace<<8 | 1, Kind: KindClient, Local: Endpoint{Service: "web"}, Version: "v1",
		Timestamp: at, Duration: 10 * time.Millisecond, HTTPStatus: status, GRPCStatus: -1,
	}
	server = Span{
		TraceID: TraceID{Low: trace}, ID: trace<<8 | 1, Kind: KindServer, Shared: true, Local: Endpoint{Service: "api"}, Version: "v2",
		Timestamp: at.Add(time.Millisecond), Duration: 8 * time.Millisecond, HTTPStatus: status, GRPCStatus: -1,
	}
	return client, server
}

// edge is an edge of the graph, by version.
type edge struct{ Requests, Errors uint64 }

func graphOf(t *testing.T, s *topology.Store, now time.Time) map[string]edge {
	t.Helper()
	g, err := s.Graph(now, 15*time.Minute, topology.ByVersion)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]edge{}
	for _, e := range g.Edges {
		out[e.Source+"->"+e.Target] = edge{e.Requests, e.Errors}
	}
	return out
}

func versionCounts(t *testing.T, s *topology.Store, service string, now time.Time) topology.VersionCounts {
	t.Helper()
	vc, err := s.VersionCounts(service, now, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return vc
}

func TestCollectorLinksASettledTrace(t *testing.T) {
	store := topology.New(topology.Options{})
	c := NewCollector(store, nil, Options{Settle: 5 * time.Second})
	client, server := rpc(1, t0, 503)
	client.Error = true

	// The halves come from two sidecars, in two requests.
	c.Add(t0.Add(time.Second), []Span{server})
	if n := c.Flush(t0.Add(5 * time.Second)); n != 0 {
		t.Fatalf("linked %d traces before they settled", n)
	}
	c.Add(t0.Add(3*time.Second), []Span{client})
	if n := c.Flush(t0.Add(7 * time.Second)); n != 0 {
		t.Fatalf("linked %d traces 4s after their last span", n)
	}
	if traces, spans := c.Pending(); traces != 1 || spans != 2 {
		t.Fatalf("pending %d traces, %d spans: want 1, 2", traces, spans)
	}
	if n := c.Flush(t0.Add(8 * time.Second)); n != 1 {
		t.Fatalf("linked %d traces once settled: want 1", n)
	}
	now := t0.Add(10 * time.Second)
	if diff := cmp.Diff(map[string]edge{"web@v1->api@v2": {1, 1}}, graphOf(t, store, now)); diff != "" {
		t.Errorf("graph (-want +got):\n%s", diff)
	}
	want := topology.VersionCounts{Service: "api", Window: "15m0s",
		Callers: map[string]topology.Counts{"v2": {Requests: 1, Errors: 1, P99Ms: 10}},
		Self:    map[string]topology.Counts{"v2": {Requests: 1, Errors: 1, P99Ms: 8}}}
	if diff := cmp.Diff(want, versionCounts(t, store, "api", now), cmpApprox); diff != "" {
		t.Errorf("version counts (-want +got):\n%s", diff)
	}
	if c.Spans.Load() != 2 || c.Traces.Load() != 1 || c.Calls.Load() != 1 || c.Served.Load() != 1 || c.LateSpans.Load() != 0 {
		t.Errorf("counters: spans %d traces %d calls %d served %d late %d", c.Spans.Load(), c.Traces.Load(), c.Calls.Load(), c.Served.Load(), c.LateSpans.Load())
	}
	if traces, spans := c.Pending(); traces != 0 || spans != 0 {
		t.Errorf("pending %d traces, %d spans after the flush", traces, spans)
	}
}

// cmpApprox compares latency quantiles within the sketch's 1%.
var cmpApprox = cmp.Comparer(func(a, b float64) bool {
	d := a - b
	return d < 0.02*max(a, b, 1) && -d < 0.02*max(a, b, 1)
})

// TestCollectorLateSpans: a span arriving after its trace was linked
// joins it through the memory of linked traces, and nothing counts twice.
func TestCollectorLateSpans(t *testing.T) {
	named := func(s Span) Span { s.RemoteService = "api"; return s }
	cases := []struct {
		name          string
		first, second func(client, server Span) []Span
		graph         map[string]edge
		served        uint64
	}{
		{"a late server span finds its caller",
			func(c, s Span) []Span { return []Span{c} }, func(c, s Span) []Span { return []Span{s} },
			map[string]edge{"web@v1->api@v2": {1, 0}}, 1},
		{"a late client span finds its server",
			func(c, s Span) []Span { return []Span{s} }, func(c, s Span) []Span { return []Span{c} },
			map[string]edge{"web@v1->api@v2": {1, 0}}, 1},
		{"a client that counted the call alone is not counted again",
			func(c, s Span) []Span { return []Span{named(c)} }, func(c, s Span) []Span { return []Span{s} },
			map[string]edge{"web@v1->api": {1, 0}}, 1},
		{"spans sent again are not counted again",
			func(c, s Span) []Span { return []Span{c, s} }, func(c, s Span) []Span { return []Span{c, s} },
			map[string]edge{"web@v1->api@v2": {1, 0}}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := topology.New(topology.Options{})
			c := NewCollector(store, nil, Options{})
			client, server := rpc(7, t0, 200)
			c.Add(t0, tc.first(client, server))
			if c.Flush(t0.Add(5*time.Second)) != 1 {
				t.Fatal("the first part did not link")
			}
			c.Add(t0.Add(9*time.Second), tc.second(client, server))
			if c.Flush(t0.Add(14*time.Second)) != 1 {
				t.Fatal("the late part did not link")
			}
			if diff := cmp.Diff(tc.graph, graphOf(t, store, t0.Add(15*time.Second))); diff != "" {
				t.Errorf("graph (-want +got):\n%s", diff)
			}
			if c.Served.Load() != tc.served || c.Calls.Load() != 1 {
				t.Errorf("served %d, calls %d: want %d, 1", c.Served.Load(), c.Calls.Load(), tc.served)
			}
			if n := uint64(len(tc.second(client, server))); c.LateSpans.Load() != n {
				t.Errorf("late spans %d: want %d", c.LateSpans.Load(), n)
			}
		})
	}
}

// TestCollectorForgets: past Remember a late span is a trace of its own; a
// server span alone cannot name its caller.
func TestCollectorForgets(t *testing.T) {
	store := topology.New(topology.Options{})
	c := NewCollector(store, nil, Options{Remember: 10 * time.Second})
	client, server := rpc(9, t0, 200)
	c.Add(t0, []Span{client})
	c.Flush(t0.Add(5 * time.Second))
	if n := c.Remembered(); n != 1 {
		t.Fatalf("remembered %d spans: want 1", n)
	}
	c.Flush(t0.Add(15 * time.Second))
	if n := c.Remembered(); n != 0 {
		t.Fatalf("remembered %d spans after Remember: want 0", n)
	}
	c.Add(t0.Add(16*time.Second), []Span{server})
	c.Flush(t0.Add(21 * time.Second))
	if g := graphOf(t, store, t0.Add(21*time.Second)); len(g) != 0 || c.LateSpans.Load() != 0 || c.Served.Load() != 1 {
		t.Errorf("graph %v, late %d, served %d: want no edge, no late span, served 1", g, c.LateSpans.Load(), c.Served.Load())
	}
}

// TestCollectorCaps: when a cap is reached the trace idle longest is
// linked early, counted, and nothing is lost.
func TestCollectorCaps(t *testing.T) {
	t.Run("pending traces", func(t *testing.T) {
		store := topology.New(topology.Options{})
		c := NewCollector(store, nil, Options{MaxPendingTraces: 2})
		for i := uint64(1); i <= 3; i++ {
			cl, sv := rpc(i, t0, 200)
			c.Add(t0.Add(time.Duration(i)*time.Millisecond), []Span{cl, sv})
		}
		if c.EarlyLinkedFor(EarlyPendingTraces) != 1 || c.EarlyLinked.Load() != 1 || c.Calls.Load() != 1 {
			t.Fatalf("early %d (%d), calls %d: want the oldest trace linked early", c.EarlyLinkedFor(EarlyPendingTraces), c.EarlyLinked.Load(), c.Calls.Load())
		}
		if traces, spans := c.Pending(); traces != 2 || spans != 4 {
			t.Fatalf("pending %d traces %d spans: want 2, 4", traces, spans)
		}
		c.Flush(t0.Add(time.Minute))
		if diff := cmp.Diff(map[string]edge{"web@v1->api@v2": {3, 0}}, graphOf(t, store, t0.Add(time.Minute))); diff != "" {
			t.Errorf("graph (-want +got):\n%s", diff)
		}
	})
	t.Run("pending spans", func(t *testing.T) {
		store := topology.New(topology.Options{})
		c := NewCollector(store, nil, Options{MaxPendingSpans: 3})
		c1, s1 := rpc(1, t0, 200)
		c2, s2 := rpc(2, t0, 200)
		c.Add(t0, []Span{c1, s1, c2})
		c.Add(t0.Add(time.Millisecond), []Span{s2})
		if c.EarlyLinkedFor(EarlyPendingSpans) != 1 || c.Calls.Load() != 1 {
			t.Fatalf("early %d, calls %d: want trace 1 linked early", c.EarlyLinkedFor(EarlyPendingSpans), c.Calls.Load())
		}
		c.Flush(t0.Add(time.Minute))
		if c.Calls.Load() != 2 || c.Served.Load() != 2 {
			t.Errorf("calls %d, served %d: want 2, 2", c.Calls.Load(), c.Served.Load())
		}
	})
	t.Run("spans of one trace", func(t *testing.T) {
		store := topology.New(topology.Options{})
		c := NewCollector(store, nil, Options{MaxTraceSpans: 2})
		cl, sv := rpc(1, t0, 200)
		cl.ParentID = 0x99
		root := Span{TraceID: cl.TraceID, ID: 0x99, Kind: KindServer, Local: Endpoint{Service: "web"}, Version: "v1", Timestamp: t0, GRPCStatus: -1}
		c.Add(t0, []Span{root, cl, sv})
		if c.EarlyLinkedFor(EarlyTraceSpans) != 1 || c.Calls.Load() != 0 {
			t.Fatalf("early %d, calls %d: want the full trace linked, no call yet", c.EarlyLinkedFor(EarlyTraceSpans), c.Calls.Load())
		}
		c.Flush(t0.Add(time.Minute))
		if diff := cmp.Diff(map[string]edge{"web@v1->api@v2": {1, 0}}, graphOf(t, store, t0.Add(time.Minute))); diff != "" {
			t.Errorf("graph (-want +got):\n%s", diff)
		}
		if c.LateSpans.Load() != 1 || c.Served.Load() != 2 {
			t.Errorf("late %d, served %d: want 1, 2", c.LateSpans.Load(), c.Served.Load())
		}
	})
	t.Run("remembered spans", func(t *testing.T) {
		c := NewCollector(topology.New(topology.Options{}), nil, Options{RecentSpans: 3})
		for i := uint64(1); i <= 2; i++ {
			cl, sv := rpc(i, t0, 200)
			c.Add(t0, []Span{cl, sv})
		}
		c.Flush(t0.Add(time.Minute))
		if n := c.Remembered(); n != 2 {
			t.Errorf("remembered %d spans: want the newest trace's 2", n)
		}
	})
}

// TestCollectorTimes: a span without a timestamp, or one too far from its
// arrival, is counted at its arrival.
func TestCollectorTimes(t *testing.T) {
	for _, ts := range []time.Time{{}, t0.Add(-time.Hour), t0.Add(time.Hour)} {
		store := topology.New(topology.Options{})
		c := NewCollector(store, nil, Options{})
		cl, sv := rpc(1, ts, 200)
		cl.Timestamp, sv.Timestamp = ts, ts
		c.Add(t0, []Span{cl, sv})
		c.Flush(t0.Add(5 * time.Second))
		g, err := store.Graph(t0.Add(5*time.Second), 10*time.Second, topology.ByService)
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Edges) != 1 || g.Edges[0].Requests != 1 {
			t.Errorf("timestamp %v: edges %+v in the 10s after arrival: want the call", ts, g.Edges)
		}
	}
}

// TestRun: Run links a trace once it settled, on its ticker.
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := topology.New(topology.Options{})
		c := NewCollector(store, nil, Options{Settle: 5 * time.Second, FlushEvery: time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()

		cl, sv := rpc(1, time.Now(), 200)
		c.Add(time.Now(), []Span{cl})
		time.Sleep(2500 * time.Millisecond)
		c.Add(time.Now(), []Span{sv})
		time.Sleep(4 * time.Second) // 4s after the last span
		synctest.Wait()
		if n := c.Traces.Load(); n != 0 {
			t.Fatalf("linked %d traces before they settled", n)
		}
		time.Sleep(2 * time.Second) // past the first tick 5s after the last span
		synctest.Wait()
		if diff := cmp.Diff(map[string]edge{"web@v1->api@v2": {1, 0}}, graphOf(t, store, time.Now())); diff != "" {
			t.Errorf("graph (-want +got):\n%s", diff)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestConcurrentIngest: two services post the halves of the same calls
// while traces are being linked; however they interleave, each call counts
// once.
func TestConcurrentIngest(t *testing.T) {
	const requests, perRequest = 40, 5
	store := topology.New(topology.Options{})
	c := NewCollector(store, func() time.Time { return t0 }, Options{})
	post := func(half int) {
		for r := range requests {
			var spans []Span
			for i := range perRequest {
				cl, sv := rpc(uint64(r*perRequest+i+1), t0, 200)
				spans = append(spans, []Span{cl, sv}[half])
			}
			c.Add(t0, spans)
		}
	}
	done := make(chan struct{})
	go func() { post(0); done <- struct{}{} }()
	go func() { post(1); done <- struct{}{} }()
	flushing := make(chan struct{})
	go func() {
		defer close(flushing)
		for {
			select {
			case <-done:
				<-done
				return
			default:
				c.Flush(t0.Add(10 * time.Second))
			}
		}
	}()
	<-flushing
	c.Flush(t0.Add(10 * time.Second))
	n := uint64(requests * perRequest)
	if diff := cmp.Diff(map[string]edge{"web@v1->api@v2": {n, 0}}, graphOf(t, store, t0.Add(10*time.Second))); diff != "" {
		t.Errorf("graph (-want +got):\n%s", diff)
	}
	if c.Calls.Load() != n || c.Served.Load() != n {
		t.Errorf("calls %d, served %d: want %d each", c.Calls.Load(), c.Served.Load(), n)
	}
}

// TestCollectorALS: what the sidecars' access logs counted in signalbox's
// ALS is left out and counted in CallsByALS and ServedByALS, once, however
// the trace's spans arrive; a re-link after a late span does not record a
// call left to ALS.
func TestCollectorALS(t *testing.T) {
	// The spans of envoyCall: 0 web's app client, 1 web's sidecar egress,
	// 2 api's sidecar ingress, 3 api's app server.
	both := envoyCall{callerSidecar: true, callerALS: ALSOn, calleeSidecar: true, calleeApp: true, calleeALS: ALSOn}.spans()
	offOn := envoyCall{callerSidecar: true, callerALS: ALSOff, calleeSidecar: true, calleeApp: true, calleeALS: ALSOn}.spans()
	pick := func(spans []Span, idx ...int) []Span {
		var out []Span
		for _, i := range idx {
			out = append(out, spans[i])
		}
		return out
	}
	cases := []struct {
		name                    string
		first, second           []Span // second nil: one linking
		graph                   map[string]edge
		calls, served           uint64
		callsByALS, servedByALS uint64
	}{
		{"ALS on both sides, in one batch", both, nil, map[string]edge{}, 0, 0, 1, 1},
		{"(f) the app spans arrive late", pick(both, 1, 2), pick(both, 0, 3), map[string]edge{}, 0, 0, 1, 1},
		{"(f) the egress span alone first, as a leaf call", pick(both, 0, 1), pick(both, 2, 3), map[string]edge{}, 0, 0, 1, 1},
		{"(f) the ingress span alone first, its caller unknown", pick(both, 2, 3), pick(both, 0, 1), map[string]edge{}, 0, 0, 1, 1},
		{"(f) spans sent again", both, both, map[string]edge{}, 0, 0, 1, 1},
		{"the caller's sidecar without ALS: the call from the spans", offOn, nil, map[string]edge{"web->api": {1, 0}}, 1, 0, 0, 1},
		{"the caller's sidecar without ALS, late: the call from the spans once", pick(offOn, 0, 1), pick(offOn, 2, 3), map[string]edge{"web->api": {1, 0}}, 1, 0, 0, 1},
		// The ingress span alone names no caller, so no call was about to
		// be made and nothing was left to ALS: the late caller's side,
		// which says off, makes it.
		{"an ingress span alone, then its caller's sidecar without ALS: the call from the spans once", pick(offOn, 2, 3), pick(offOn, 0, 1), map[string]edge{"web->api": {1, 0}}, 1, 0, 0, 1},
		// The one loss: the ingress span's caller is known from the
		// caller's server span (web's), its client half is missing, and so
		// the call is left to the callee's inbound ALS. It stays so when
		// the caller's sidecar turns out to be off.
		{"a call left to ALS stays so when a late caller says off",
			append([]Span{span2("e", "", "a", KindServer, "web", "", false)}, pick(offOn, 2, 3)...),
			[]Span{span2("e", "a", "b", KindClient, "web", "", false), offOn[1]},
			map[string]edge{}, 0, 1, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := topology.New(topology.Options{})
			c := NewCollector(store, nil, Options{})
			c.Add(t0, tc.first)
			if c.Flush(t0.Add(5*time.Second)) != 1 {
				t.Fatal("the first part did not link")
			}
			if tc.second != nil {
				c.Add(t0.Add(9*time.Second), tc.second)
				if c.Flush(t0.Add(14*time.Second)) != 1 {
					t.Fatal("the late part did not link")
				}
			}
			now := t0.Add(15 * time.Second)
			g, err := store.Graph(now, 15*time.Minute, topology.ByService)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]edge{}
			for _, e := range g.Edges {
				got[e.Source+"->"+e.Target] = edge{e.Requests, e.Errors}
			}
			if diff := cmp.Diff(tc.graph, got); diff != "" {
				t.Errorf("graph (-want +got):\n%s", diff)
			}
			if c.Calls.Load() != tc.calls || c.Served.Load() != tc.served || c.CallsByALS.Load() != tc.callsByALS || c.ServedByALS.Load() != tc.servedByALS {
				t.Errorf("calls %d, served %d, left to ALS %d and %d: want %d, %d, %d and %d",
					c.Calls.Load(), c.Served.Load(), c.CallsByALS.Load(), c.ServedByALS.Load(), tc.calls, tc.served, tc.callsByALS, tc.servedByALS)
			}
			if vc := versionCounts(t, store, "api", now); len(vc.Self) != 0 {
				t.Errorf("api's served view %v: want none (ALS served it)", vc.Self)
			}
		})
	}
}

// TestCollectorLateJoinedServer: api's app joins the id its sidecar's
// server span shares (two server spans of api, one request). Whichever
// arrives late, the request counts once: the span counted first stays the
// one that counts, even when the late one is the sidecar's.
func TestCollectorLateJoinedServer(t *testing.T) {
	// 0 web's app client, 1 web's sidecar egress, 2 api's sidecar ingress,
	// 3 api's app server sharing 1's id.
	spans := envoyCall{callerSidecar: true, callerALS: ALSOff, calleeSidecar: true, calleeApp: true, calleeJoins: true, calleeALS: ALSOff}.spans()
	for _, tc := range []struct {
		name          string
		first, second []int
	}{
		{"the app's server span late", []int{0, 1, 2}, []int{3}},
		{"the sidecar's server span late", []int{0, 1, 3}, []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := topology.New(topology.Options{})
			c := NewCollector(store, nil, Options{})
			for i, part := range [][]int{tc.first, tc.second} {
				var batch []Span
				for _, j := range part {
					batch = append(batch, spans[j])
				}
				at := t0.Add(time.Duration(i) * 10 * time.Second)
				c.Add(at, batch)
				if c.Flush(at.Add(5*time.Second)) != 1 {
					t.Fatalf("part %d did not link", i)
				}
			}
			if diff := cmp.Diff(map[string]edge{"web->api": {1, 0}}, graphOf(t, store, t0.Add(30*time.Second))); diff != "" {
				t.Errorf("graph (-want +got):\n%s", diff)
			}
			if c.Calls.Load() != 1 || c.Served.Load() != 1 || c.LateSpans.Load() != 1 {
				t.Errorf("calls %d, served %d, late %d: want 1, 1, 1", c.Calls.Load(), c.Served.Load(), c.LateSpans.Load())
			}
		})
	}
}
