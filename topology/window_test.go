package topology

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
)

// op is one step of a store's history: an observation, an expiry, or an
// Advance (which sets the store's clock too).
type op struct {
	o       Observation
	expire  time.Duration // > 0: Expire(o.Time, expire)
	advance bool          // Advance(o.Time)
}

// fresh replays a history into a new store, which has no window sums yet:
// its first query of a window sums the buckets afresh, as the store did
// before it kept sums (its Advances only set its clock).
func fresh(opts Options, history []op) *Store {
	s := New(opts)
	for _, h := range history {
		switch {
		case h.expire > 0:
			s.Expire(h.o.Time, h.expire)
		case h.advance:
			s.Advance(h.o.Time)
		default:
			s.Record(h.o)
		}
	}
	return s
}

func sameGraph(t *testing.T, what string, got, want Graph) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\ngot  %+v\nwant %+v", what, got, want)
	}
}

// TestWindowSumsMatchFreshSums drives a store through a random history
// (observations in the open bucket, late ones in closed buckets, ones too
// old to count, ones ahead of the clock, expiry, the clock moving by
// seconds, by buckets, past the ring and backwards, the sums advanced in
// between or not) and queries it after
// every step, at more window lengths than a series keeps sums for. Every
// answer must be exactly what a store that never summed before answers.
func TestWindowSumsMatchFreshSums(t *testing.T) {
	opts := Options{Bucket: 10 * time.Second, Buckets: 12, RelativeAccuracy: 0.01}
	r := rand.New(rand.NewPCG(4, 2))
	s := New(opts)
	var history []op
	now := t0
	windows := []time.Duration{time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second, 45 * time.Second, time.Minute, 90 * time.Second, 2 * time.Minute, time.Hour}
	nodes := []Node{{"web", "v1"}, {"web", "v2"}, {"api", "v1"}, {"api", "v2"}, {"api", ""}, {"db", ""}, {"cache", "v1"}}
	steps := 300
	if testing.Short() {
		steps = 100
	}
	for step := 0; step < steps; step++ {
		switch x := r.IntN(100); {
		case x < 60:
			for range 1 + r.IntN(8) {
				src, dst := nodes[r.IntN(2)], nodes[2+r.IntN(len(nodes)-2)]
				var at time.Duration
				switch y := r.IntN(100); {
				case y < 70: // the open bucket, or about
					at = -time.Duration(r.IntN(10)) * time.Second
				case y < 85: // late, still in the ring
					at = -time.Duration(r.IntN(11*10)) * time.Second
				case y < 92: // older than the ring
					at = -time.Duration(120+r.IntN(100)) * time.Second
				default: // ahead of the clock
					at = time.Duration(1+r.IntN(25)) * time.Second
				}
				status := []int{200, 200, 200, 302, 404, 503, 0}[r.IntN(7)]
				latency := time.Duration(math.Exp(r.NormFloat64())*20*float64(time.Millisecond)) + time.Duration(r.IntN(1000))
				if r.IntN(20) == 0 {
					latency = 0
				}
				proto := HTTP
				if r.IntN(4) == 0 {
					proto = GRPC
				}
				o := Observation{Time: now.Add(at), Source: src, Target: dst, Protocol: proto, Status: status, GRPCStatus: -1, Latency: latency, Bytes: uint64(r.IntN(5000))}
				history = append(history, op{o: o})
				s.Record(o)
			}
		case x < 93:
			switch y := r.IntN(100); {
			case y < 60:
				now = now.Add(time.Duration(r.IntN(4)) * time.Second)
			case y < 85:
				now = now.Add(10 * time.Second)
			case y < 93:
				now = now.Add(time.Duration(20+r.IntN(40)) * time.Second)
			case y < 97:
				now = now.Add(time.Duration(150+r.IntN(100)) * time.Second) // past the whole ring
			default:
				now = now.Add(-time.Duration(5+r.IntN(30)) * time.Second) // a caller behind
			}
			// The serve loop's Advance after a bucket closes, usually at the
			// clock, sometimes ahead of or behind the queries'.
			if r.IntN(2) == 0 {
				at := now.Add(time.Duration(r.IntN(41)-20) * time.Second * time.Duration(r.IntN(2)))
				history = append(history, op{o: Observation{Time: at}, advance: true})
				s.Advance(at)
			}
		default:
			ttl := time.Duration(30+r.IntN(120)) * time.Second
			history = append(history, op{o: Observation{Time: now}, expire: ttl})
			s.Expire(now, ttl)
		}
		f := fresh(opts, history)
		for range 3 {
			w := windows[r.IntN(len(windows))]
			by := []By{ByService, ByVersion}[r.IntN(2)]
			got, err := s.Graph(now, w, by)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := f.Graph(now, w, by)
			sameGraph(t, fmt.Sprintf("step %d: window %v by %s at %v", step, w, by, now.Sub(t0)), got, want)
		}
		w := windows[r.IntN(len(windows))]
		got, _ := s.VersionCounts("api", now, w)
		want, _ := f.VersionCounts("api", now, w)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: version counts over %v:\ngot  %+v\nwant %+v", step, w, got, want)
		}
	}
}

// TestWindowSlidesWithinAccuracy queries a 5-minute window every second for
// 10 minutes while requests arrive, so the window slides over bucket
// boundaries and the open bucket fills between queries: counts must be
// exact and quantiles within the sketch's relative accuracy of the exact
// ones (the value at rank q·(n−1) of the window's latencies).
func TestWindowSlidesWithinAccuracy(t *testing.T) {
	const alpha = 0.01
	s := New(Options{RelativeAccuracy: alpha})
	r := rand.New(rand.NewPCG(7, 7))
	type sample struct {
		at time.Duration
		ms float64
	}
	var seen []sample
	record := func(at time.Duration) {
		ms := math.Exp(r.NormFloat64()*0.8) * 30
		seen = append(seen, sample{at, ms})
		s.Record(obs(at, "web", "v1", "api", "v1", 200, time.Duration(ms*float64(time.Millisecond))))
	}
	for sec := 0; sec < 600; sec++ {
		for range 1 + r.IntN(20) {
			record(time.Duration(sec)*time.Second + time.Duration(r.IntN(1000))*time.Millisecond)
		}
		now := t0.Add(time.Duration(sec)*time.Second + 500*time.Millisecond)
		g, err := s.Graph(now, 5*time.Minute, ByVersion)
		if err != nil {
			t.Fatal(err)
		}
		e := edge(t, g, "web@v1", "api@v1")
		// The window: the 30 buckets up to and including now's.
		from := time.Duration(sec/10-29) * 10 * time.Second
		var exact []float64
		for _, x := range seen {
			if x.at >= from {
				exact = append(exact, x.ms)
			}
		}
		if e.Requests != uint64(len(exact)) {
			t.Fatalf("at %ds: %d requests, want %d", sec, e.Requests, len(exact))
		}
		slices.Sort(exact)
		for _, q := range []struct {
			q   float64
			got float64
		}{{0.5, e.P50Ms}, {0.95, e.P95Ms}, {0.99, e.P99Ms}} {
			want := exact[int(q.q*float64(len(exact)-1))]
			if rel := math.Abs(q.got-want) / want; rel > alpha*(1+1e-9) {
				t.Fatalf("at %ds: p%v = %.4f ms, exact %.4f ms: relative error %.5f > %v", sec, q.q*100, q.got, want, rel, alpha)
			}
		}
	}
}

// TestWindowOfTheWholeRing: a window as long as the ring covers its oldest
// bucket, which every bucket boundary reuses; the sum must follow.
func TestWindowOfTheWholeRing(t *testing.T) {
	opts := Options{Bucket: 10 * time.Second, Buckets: 6}
	s := New(opts)
	var history []op
	for sec := 0; sec < 200; sec += 3 {
		o := obs(time.Duration(sec)*time.Second, "a", "", "b", "", 200, time.Duration(1+sec%40)*time.Millisecond)
		history = append(history, op{o: o})
		s.Record(o)
		now := t0.Add(time.Duration(sec) * time.Second)
		got, _ := s.Graph(now, time.Minute, ByService)
		want, _ := fresh(opts, history).Graph(now, time.Minute, ByService)
		sameGraph(t, fmt.Sprintf("at %ds", sec), got, want)
		for i := range s.edges.shards {
			for _, se := range s.edges.shards[i].series {
				if se.nwins != 1 || !se.wins[0].valid {
					t.Fatalf("at %ds: the window's sum was dropped (%d sums, valid %v), not kept", sec, se.nwins, se.wins[0].valid)
				}
			}
		}
	}
}

// TestGraphWhileRecording races queries whose clock moves on against
// writers (run it with -race). The writers' times stay within the ring, so
// the buckets end the same whatever the interleaving, and the answers after
// must be those of a store that saw the same requests and no query.
func TestGraphWhileRecording(t *testing.T) {
	opts := Options{Bucket: time.Second, Buckets: 30}
	s := New(opts)
	const writers, each = 4, 3000
	logs := make([][]op, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range each {
				// Mostly in order, some a few seconds late.
				at := time.Duration(i)*5*time.Millisecond - time.Duration(r.IntN(3000))*time.Millisecond
				if at < 0 {
					at = 0
				}
				o := obs(at, fmt.Sprintf("s%d", w%2), fmt.Sprintf("v%d", i%2), "api", fmt.Sprintf("v%d", i%3), []int{200, 503}[r.IntN(2)], time.Duration(1+r.IntN(100))*time.Millisecond)
				logs[w] = append(logs[w], op{o: o})
				s.Record(o)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
queries:
	for i := 0; ; i++ {
		select {
		case <-done:
			break queries
		default:
		}
		now := t0.Add(time.Duration(i%20) * time.Second)
		if _, err := s.Graph(now, []time.Duration{5 * time.Second, 15 * time.Second}[i%2], []By{ByService, ByVersion}[i%3%2]); err != nil {
			t.Fatal(err)
		}
	}
	f := fresh(opts, slices.Concat(logs...))
	end := t0.Add(each * 5 * time.Millisecond)
	for _, w := range []time.Duration{5 * time.Second, 15 * time.Second, 30 * time.Second} {
		for _, by := range []By{ByService, ByVersion} {
			got, _ := s.Graph(end, w, by)
			want, _ := f.Graph(end, w, by)
			sameGraph(t, fmt.Sprintf("window %v by %s", w, by), got, want)
		}
	}
}

// TestHistMatchesDDSketch: over the same values, the histogram's quantiles
// are exactly those of the DDSketch it stands for (same mapping, same rank
// rule), zeros included.
func TestHistMatchesDDSketch(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	for _, alpha := range []float64{0.01, 0.02, 0.001} {
		lm := newLatencyMapping(alpha)
		for trial := 0; trial < 100; trial++ {
			sk, err := ddsketch.LogCollapsingLowestDenseDDSketch(alpha, 1<<15)
			if err != nil {
				t.Fatal(err)
			}
			// The values split between a sum and a bucket, read
			// together, as a graph reads a window's closed buckets
			// and its open one; the bucket's values are apart from,
			// overlapping or inside the sum's, or none.
			var sum hist[uint64]
			var open hist[uint32]
			n := 1 + r.IntN(2000)
			shift := []float64{0.01, 1, 100, 1e4}[r.IntN(4)]
			share := []int{0, 1, 5, 50}[r.IntN(4)]
			for range n {
				ms := math.Exp(r.NormFloat64()*2) * 10
				inOpen := r.IntN(100) < share
				if inOpen {
					ms *= shift
				}
				if r.IntN(10) == 0 {
					ms = 0
				}
				_ = sk.Add(ms)
				if inOpen {
					open.add(lm.key(ms))
				} else {
					sum.add(lm.key(ms))
				}
			}
			qs := []float64{0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1}
			want, err := sk.GetValuesAtQuantiles(qs)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float64, len(qs))
			lm.quantiles(got, qs, uint64(n), &sum, &open)
			if !slices.Equal(got, want) {
				t.Fatalf("α %v, %d values (%d%% apart ×%v): quantiles %v, DDSketch says %v", alpha, n, share, shift, got, want)
			}
			addHist(&sum, &open)
			lm.quantiles(got, qs, uint64(n), &sum, nil)
			if !slices.Equal(got, want) {
				t.Fatalf("α %v, %d values summed: quantiles %v, DDSketch says %v", alpha, n, got, want)
			}
		}
	}
}

// TestHistAddSubtract: arrays grow either way, sums subtract exactly back to
// empty, and a subtraction of what was not added is refused.
func TestHistAddSubtract(t *testing.T) {
	var sum hist[uint64]
	var bs [4]hist[uint32]
	keys := [][]int{{10, 12, 10}, {5, 30}, {-40, 11}, {100}}
	for i, ks := range keys {
		for _, k := range ks {
			bs[i].add(k, true)
		}
		bs[i].add(0, false)
		addHist(&sum, &bs[i])
	}
	if sum.lo != -40 || sum.hi() != 100 || sum.zero != 4 || sum.at(10) != 2 || sum.at(11) != 1 || sum.at(30) != 1 {
		t.Fatalf("sum: lo %d hi %d zero %d, bins %v", sum.lo, sum.hi(), sum.zero, sum.bins)
	}
	var other hist[uint32]
	other.add(7, true)
	cp := hist[uint64]{zero: sum.zero, lo: sum.lo, bins: slices.Clone(sum.bins)}
	if subHist(&cp, &other) {
		t.Fatal("subtracted a key that was never added")
	}
	for i := range bs {
		if !subHist(&sum, &bs[i]) {
			t.Fatalf("subtracting bucket %d failed", i)
		}
	}
	if sum.zero != 0 || len(sum.bins) != 0 {
		t.Fatalf("after subtracting everything: zero %d, bins %v", sum.zero, sum.bins)
	}
	// Emptied, the array is reused.
	addHist(&sum, &bs[1])
	if sum.lo != 5 || sum.hi() != 30 || sum.at(5) != 1 || sum.at(30) != 1 || sum.at(10) != 0 {
		t.Fatalf("reused: lo %d hi %d bins %v", sum.lo, sum.hi(), sum.bins)
	}
}
