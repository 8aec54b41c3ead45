package analysis

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gonum.org/v1/gonum/stat/distuv"
)

// twoPoints is a prior small enough to compute Λ by hand: θ = 2 and θ = 4,
// equal weights.
var twoPoints = []PriorPoint{{Theta: 2, Weight: 1}, {Theta: 4, Weight: 1}}

func inc(bReq, bErr, cReq, cErr uint64) Increment {
	return Increment{Baseline: Counts{bReq, bErr}, Candidate: Counts{cReq, cErr}}
}

func mustStep(t *testing.T, s State, in Increment, cfg Config) (State, Decision) {
	t.Helper()
	n, d, err := Step(s, in, cfg)
	if err != nil {
		t.Fatalf("Step(%+v): %v", in, err)
	}
	return n, d
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestStepHandComputed(t *testing.T) {
	cfg := Config{Prior: twoPoints, MinRequests: 50}
	type want struct {
		lambda, expected, rateRatio, thetaHat, share float64
		verdict                                      Verdict
	}
	looks := []struct {
		name string
		in   Increment
		want want
	}{{
		// s = 10/100, E = 2, x = 1: L(θ) = θ / (1 + 0.1(θ−1))².
		// L(2) = 2/1.21 = 1.652892562, L(4) = 4/1.69 = 2.366863905,
		// Λ = (1.652892562 + 2.366863905)/2 = 2.009878234.
		name: "first look, 10% share",
		in:   inc(90, 1, 10, 1),
		want: want{lambda: 2.009878233654457, expected: 0.2, rateRatio: (1.0 / 10) / (1.0 / 90), thetaHat: 4, share: 0.1, verdict: InsufficientData},
	}, {
		// The weight changes: s = 50/100, E = 1, x = 1: L(2) = 2/1.5,
		// L(4) = 4/2.5. Λ = (1.652892562·4/3 + 2.366863905·1.6)/2
		// = (2.203856749 + 3.786982249)/2 = 2.995419499.
		name: "second look, 50% share",
		in:   inc(50, 0, 50, 1),
		want: want{lambda: 2.995419498916002, expected: 0.7, rateRatio: (2.0 / 60) / (1.0 / 140), thetaHat: 4, share: 0.5, verdict: Continue},
	}}
	var s State
	for _, l := range looks {
		var d Decision
		s, d = mustStep(t, s, l.in, cfg)
		st := d.Stats
		if !near(st.LogLambda, math.Log(l.want.lambda)) {
			t.Errorf("%s: log Λ = %v, want log %v = %v", l.name, st.LogLambda, l.want.lambda, math.Log(l.want.lambda))
		}
		if !near(st.ExpectedCandidateErrors, l.want.expected) {
			t.Errorf("%s: expected candidate errors %v, want %v", l.name, st.ExpectedCandidateErrors, l.want.expected)
		}
		if st.RateRatio == nil || !near(*st.RateRatio, l.want.rateRatio) {
			t.Errorf("%s: rate ratio %v, want %v", l.name, st.RateRatio, l.want.rateRatio)
		}
		if st.ThetaHat != l.want.thetaHat || !near(st.Share, l.want.share) {
			t.Errorf("%s: θ̂ %v share %v, want %v and %v", l.name, st.ThetaHat, st.Share, l.want.thetaHat, l.want.share)
		}
		if !near(st.Threshold, math.Log(100)) || st.Alpha != 0.01 {
			t.Errorf("%s: threshold %v at α %v, want log 100 at 0.01", l.name, st.Threshold, st.Alpha)
		}
		if d.Verdict != l.want.verdict {
			t.Errorf("%s: verdict %s (%s), want %s", l.name, d.Verdict, d.Reason, l.want.verdict)
		}
	}
	if s.Looks != 2 || s.Candidate != (Counts{60, 2}) || s.Baseline != (Counts{140, 1}) {
		t.Errorf("state counts: %d looks, candidate %+v, baseline %+v", s.Looks, s.Candidate, s.Baseline)
	}
}

// TestFairBetUnderH0 checks the property the false-rollback bound rests on:
// when both versions fail at the same rate, one look's factor of Λ has
// expectation exactly 1 if the candidate's errors are binomial, and at most
// 1 if they are hypergeometric (a fixed number of requests per version).
func TestFairBetUnderH0(t *testing.T) {
	for _, c := range []struct{ n0, n1, e uint64 }{
		{95, 5, 3}, {50, 50, 10}, {999, 1, 4}, {10, 90, 30}, {1900, 100, 40},
	} {
		s := float64(c.n1) / float64(c.n0+c.n1)
		var binom, hyper float64
		for x := uint64(0); x <= min(c.e, c.n1); x++ {
			if c.e-x > c.n0 {
				continue
			}
			_, d := mustStep(t, State{}, inc(c.n0, c.e-x, c.n1, x), Config{})
			lambda := math.Exp(d.Stats.LogLambda)
			binom += distuv.Binomial{N: float64(c.e), P: s}.Prob(float64(x)) * lambda
			hyper += hypergeometric(c.n0+c.n1, c.n1, c.e, x) * lambda
		}
		if c.e <= min(c.n0, c.n1) && !near(binom, 1) {
			t.Errorf("%+v: E[Λ] with binomial errors = %v, want 1", c, binom)
		}
		if hyper > 1+1e-9 {
			t.Errorf("%+v: E[Λ] with hypergeometric errors = %v, want at most 1", c, hyper)
		}
	}
}

// hypergeometric is P(x of the e errors fall among the k candidate requests
// out of n).
func hypergeometric(n, k, e, x uint64) float64 {
	lc := func(a, b uint64) float64 {
		ga, _ := math.Lgamma(float64(a) + 1)
		gb, _ := math.Lgamma(float64(b) + 1)
		gab, _ := math.Lgamma(float64(a-b) + 1)
		return ga - gb - gab
	}
	return math.Exp(lc(k, x) + lc(n-k, e-x) - lc(n, e))
}

// simulate draws one analysis of the given number of one-second looks at
// rate requests/s, with the candidate's share and the baseline's error rate
// chosen per look, and returns whether the test failed the candidate.
func simulate(rng *rand.Rand, cfg Config, looks int, rate float64, effect float64, share, baseErr func(look int) float64) bool {
	var s State
	for l := range looks {
		total := distuv.Poisson{Lambda: rate, Src: rng}.Rand()
		n1 := distuv.Binomial{N: total, P: share(l), Src: rng}.Rand()
		n0 := total - n1
		e0 := distuv.Binomial{N: n0, P: baseErr(l), Src: rng}.Rand()
		e1 := distuv.Binomial{N: n1, P: min(1, effect*baseErr(l)), Src: rng}.Rand()
		var d Decision
		var err error
		s, d, err = Step(s, inc(uint64(n0), uint64(e0), uint64(n1), uint64(e1)), cfg)
		if err != nil {
			panic(err) // inputs are valid by construction
		}
		if d.Verdict == Fail {
			return true
		}
	}
	return false
}

// TestAAFalseRollbacks: a candidate exactly as good as the baseline is
// rolled back at most α of the time, although the weights change at every
// look and an incident raises both versions' error rate together.
func TestAAFalseRollbacks(t *testing.T) {
	const runs, looks = 1200, 200
	shares := []float64{0.01, 0.05, 0.25, 0.5}
	share := func(l int) float64 { return shares[l%len(shares)] }
	baseErr := func(l int) float64 {
		if l >= 100 && l < 120 {
			return 0.08 // the incident
		}
		return 0.01
	}
	for _, alpha := range []float64{0.01, 0.05} {
		t.Run(fmt.Sprint("alpha=", alpha), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(7, uint64(alpha*1000)))
			failed := 0
			for range runs {
				if simulate(rng, Config{Alpha: alpha}, looks, 50, 1, share, baseErr) {
					failed++
				}
			}
			rate := float64(failed) / runs
			slack := 3 * math.Sqrt(alpha*(1-alpha)/runs)
			t.Logf("%d of %d false rollbacks (%.2f%%)", failed, runs, 100*rate)
			if rate > alpha+slack {
				t.Errorf("false-rollback rate %.4f, want at most %.4f (α plus 3 standard errors)", rate, alpha+slack)
			}
		})
	}
}

// TestDetects: a 5× regression at 200 requests/s with a 5% share is caught,
// and quickly (docs/benchmarks.md has the full distribution).
func TestDetects(t *testing.T) {
	const runs, looks = 200, 300
	rng := rand.New(rand.NewPCG(11, 0))
	detected := 0
	for range runs {
		if simulate(rng, Config{}, looks, 200, 5, func(int) float64 { return 0.05 }, func(int) float64 { return 0.005 }) {
			detected++
		}
	}
	if detected < runs*95/100 {
		t.Errorf("detected a 5× regression within 5 minutes in %d of %d runs, want at least 95%%", detected, runs)
	}
}

// TestIncidentWhileTheWeightRises: the candidate's weight goes from 5% to
// 50% just as an incident downstream makes both versions fail at 5%. Pooled
// over the whole analysis the candidate looks 2.5× worse; look by look it is
// no worse, and the test must not roll it back.
func TestIncidentWhileTheWeightRises(t *testing.T) {
	var s State
	var d Decision
	for range 10 {
		s, d = mustStep(t, s, inc(950, 1, 50, 0), Config{})
	}
	for range 10 {
		s, d = mustStep(t, s, inc(500, 25, 500, 25), Config{})
	}
	if d.Verdict != Continue {
		t.Errorf("verdict %s (%s), want continue", d.Verdict, d.Reason)
	}
	if d.Stats.RateRatio == nil || *d.Stats.RateRatio < 2 {
		t.Errorf("pooled rate ratio %v: the scenario should make the pooled view misleading", d.Stats.RateRatio)
	}
	if d.Stats.LogLambda > 0 {
		t.Errorf("log Λ %v: looks with a same-rate candidate should be evidence for it", d.Stats.LogLambda)
	}
}

// TestWorseCandidateAcrossWeights: a 4× worse candidate is caught while the
// weight steps up, and the evidence of every step counts.
func TestWorseCandidateAcrossWeights(t *testing.T) {
	var s State
	var d Decision
	steps := []struct{ n0, n1 uint64 }{{990, 10}, {950, 50}, {750, 250}, {500, 500}}
	look := 0
	for _, st := range steps {
		for range 30 {
			look++
			// Baseline 1%, candidate 4%, in expectation (deterministic).
			s, d = mustStep(t, s, inc(st.n0, st.n0/100, st.n1, st.n1*4/100), Config{})
			if d.Verdict == Fail {
				if d.Check != CheckSequential || !strings.Contains(d.Reason, "anomalous") {
					t.Errorf("fail by %s (%s), want the sequential test", d.Check, d.Reason)
				}
				if d.Stats.ThetaHat < 2 {
					t.Errorf("θ̂ %v at the rollback, want near 4", d.Stats.ThetaHat)
				}
				return
			}
		}
	}
	t.Errorf("no rollback after %d looks: last %s (%s)", look, d.Verdict, d.Reason)
}

func TestMinRequests(t *testing.T) {
	cases := []struct {
		name    string
		looks   []Increment
		verdict Verdict
		check   Check
	}{
		{"no traffic at all", []Increment{{}}, InsufficientData, ""},
		{"one candidate error on a small share is not enough to fail", []Increment{inc(990, 0, 10, 1)}, InsufficientData, ""},
		{"clean but below MinRequests", []Increment{inc(1000, 5, 60, 0)}, InsufficientData, ""},
		{"clean at MinRequests", []Increment{inc(1000, 5, 100, 0)}, Continue, ""},
		{"a blatant regression fails before MinRequests", []Increment{inc(10000, 10, 40, 15)}, Fail, CheckSequential},
		{"no candidate requests in this look", []Increment{inc(1000, 5, 100, 0), inc(1000, 5, 0, 0)}, InsufficientData, ""},
		{"no baseline requests in this look: the guards judge", []Increment{inc(1000, 5, 100, 0), inc(0, 0, 100, 0)}, Continue, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s State
			var d Decision
			for _, in := range c.looks {
				s, d = mustStep(t, s, in, Config{})
			}
			if d.Verdict != c.verdict || d.Check != c.check {
				t.Errorf("verdict %s/%s (%s), want %s/%s", d.Verdict, d.Check, d.Reason, c.verdict, c.check)
			}
			if d.Reason == "" {
				t.Error("no reason")
			}
		})
	}
}

func TestGuards(t *testing.T) {
	latency := func(b, c float64, n uint64) *Latency {
		return &Latency{BaselineP99Ms: b, CandidateP99Ms: c, BaselineRequests: n, CandidateRequests: n}
	}
	cases := []struct {
		name    string
		cfg     Config
		looks   []Increment
		verdict Verdict
		check   Check
	}{
		// Both versions fail at 3%: the comparison is clean, the guard is not.
		{"error rate above the guard, too few requests", Config{MaxErrorRate: 0.02}, []Increment{inc(1000, 30, 50, 2)}, InsufficientData, ""},
		{"error rate above the guard", Config{MaxErrorRate: 0.02}, []Increment{inc(1000, 30, 50, 2), inc(1000, 30, 50, 1)}, Fail, CheckErrorRate},
		{"error rate under the guard", Config{MaxErrorRate: 0.05}, []Increment{inc(1000, 30, 100, 3)}, Continue, ""},
		{"p99 3× the baseline's", Config{MaxLatencyRatio: 2}, []Increment{{Baseline: Counts{1000, 0}, Candidate: Counts{100, 0}, Latency: latency(100, 300, 100)}}, Fail, CheckLatency},
		{"p99 3× on too few requests", Config{MaxLatencyRatio: 2}, []Increment{{Baseline: Counts{1000, 0}, Candidate: Counts{100, 0}, Latency: latency(100, 300, 99)}}, Continue, ""},
		{"p99 1.5×", Config{MaxLatencyRatio: 2}, []Increment{{Baseline: Counts{1000, 0}, Candidate: Counts{100, 0}, Latency: latency(100, 150, 100)}}, Continue, ""},
		{"baseline p99 0", Config{MaxLatencyRatio: 2}, []Increment{{Baseline: Counts{1000, 0}, Candidate: Counts{100, 0}, Latency: latency(0, 150, 100)}}, Continue, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s State
			var d Decision
			for _, in := range c.looks {
				s, d = mustStep(t, s, in, c.cfg)
			}
			if d.Verdict != c.verdict || d.Check != c.check {
				t.Errorf("verdict %s/%s (%s), want %s/%s", d.Verdict, d.Check, d.Reason, c.verdict, c.check)
			}
		})
	}
	_, d := mustStep(t, State{}, Increment{Baseline: Counts{1000, 0}, Candidate: Counts{100, 0}, Latency: latency(100, 300, 100)}, Config{MaxLatencyRatio: 2})
	if d.Stats.LatencyRatio == nil || *d.Stats.LatencyRatio != 3 || !strings.Contains(d.Reason, "3×") {
		t.Errorf("latency ratio %v, reason %q: want 3 and said", d.Stats.LatencyRatio, d.Reason)
	}
}

func TestFailIsFinal(t *testing.T) {
	s, d := mustStep(t, State{}, inc(10000, 10, 40, 15), Config{})
	if d.Verdict != Fail {
		t.Fatalf("setup: verdict %s, want fail", d.Verdict)
	}
	first := d.Reason
	for range 3 {
		var n State
		n, d = mustStep(t, s, inc(100000, 0, 100000, 0), Config{})
		if d.Verdict != Fail || d.Reason != first {
			t.Errorf("after a fail, a clean look says %s (%s), want the same fail", d.Verdict, d.Reason)
		}
		if diff := cmp.Diff(s, n); diff != "" {
			t.Errorf("a failed state changed (-was +now):\n%s", diff)
		}
	}
	if s.Failed == nil || s.Failed.Look != 1 || s.Failed.Check != CheckSequential {
		t.Errorf("failure record %+v, want look 1 by the sequential test", s.Failed)
	}
}

func TestStepLeavesItsInputAlone(t *testing.T) {
	s, _ := mustStep(t, State{}, inc(95, 1, 5, 1), Config{})
	before := append([]float64(nil), s.LogLR...)
	a, _ := mustStep(t, s, inc(95, 0, 5, 3), Config{})
	b, _ := mustStep(t, s, inc(95, 3, 5, 0), Config{})
	if !cmp.Equal(s.LogLR, before) {
		t.Errorf("Step modified its input's log-likelihoods: %v, was %v", s.LogLR, before)
	}
	if cmp.Equal(a.LogLR, b.LogLR) {
		t.Error("two different looks from one state gave the same evidence")
	}
}

func TestStateJSONRoundTrip(t *testing.T) {
	cfg := Config{MaxErrorRate: 0.5}
	var s State
	for i := range 5 {
		s, _ = mustStep(t, s, inc(900, uint64(i), 100, 1), cfg)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"looks":5`, `"logLR":[`, `"prior":[{"theta":1.5,`, `"comparedCandidate":{"requests":500,"errors":5}`, `"expectedCandidateErrors":`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("state JSON lacks %s: %s", field, b)
		}
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, back); diff != "" {
		t.Errorf("round trip changed the state (-before +after):\n%s", diff)
	}
	// A controller restarting from the stored state decides exactly as one
	// that never stopped.
	next := inc(900, 0, 100, 6)
	_, d1 := mustStep(t, s, next, cfg)
	_, d2 := mustStep(t, back, next, cfg)
	if diff := cmp.Diff(d1, d2); diff != "" {
		t.Errorf("decision after the round trip differs (-live +restored):\n%s", diff)
	}
}

// TestPriorFixedAtFirstLook: changing the configured prior mid-analysis
// would let an operator pick the prior that fails the candidate; the state's
// prior wins.
func TestPriorFixedAtFirstLook(t *testing.T) {
	s, _ := mustStep(t, State{}, inc(90, 1, 10, 1), Config{Prior: twoPoints})
	s, _ = mustStep(t, s, inc(90, 1, 10, 1), Config{})
	if len(s.Prior) != 2 || s.Prior[0].Theta != 2 {
		t.Errorf("prior %+v, want the two points of the first look", s.Prior)
	}
}

func TestInvalidInput(t *testing.T) {
	good, _ := mustStep(t, State{}, inc(90, 1, 10, 1), Config{})
	corrupt := good
	corrupt.LogLR = corrupt.LogLR[:3]
	cases := []struct {
		name string
		s    State
		in   Increment
		cfg  Config
		want string
	}{
		{"more errors than requests", good, inc(10, 11, 10, 0), Config{}, "baseline: 11 errors out of 10 requests"},
		{"candidate errors", good, inc(10, 0, 1, 2), Config{}, "candidate: 2 errors out of 1 requests"},
		{"NaN latency", good, Increment{Latency: &Latency{BaselineP99Ms: math.NaN()}}, Config{}, "baseline p99 NaN"},
		{"negative latency", good, Increment{Latency: &Latency{CandidateP99Ms: -1}}, Config{}, "candidate p99 -1"},
		{"alpha", good, Increment{}, Config{Alpha: 1.5}, "alpha 1.5"},
		{"error rate guard", good, Increment{}, Config{MaxErrorRate: 2}, "maxErrorRate 2"},
		{"latency guard", good, Increment{}, Config{MaxLatencyRatio: 0.5}, "maxLatencyRatio 0.5"},
		{"prior below 1", State{}, Increment{}, Config{Prior: []PriorPoint{{Theta: 0.5, Weight: 1}}}, "theta 0.5"},
		{"prior weight", State{}, Increment{}, Config{Prior: []PriorPoint{{Theta: 2, Weight: 0}}}, "weight 0"},
		{"corrupt state", corrupt, Increment{}, Config{}, "3 log-likelihoods for 10 prior points"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, _, err := Step(c.s, c.in, c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if diff := cmp.Diff(c.s, n); diff != "" {
				t.Errorf("state changed on error:\n%s", diff)
			}
		})
	}
}

func TestExtremeCounts(t *testing.T) {
	const huge = math.MaxUint64
	looks := []Increment{
		{},
		inc(huge, huge, huge, huge),
		inc(huge, 0, 1, 1),
		inc(1, 1, huge, 0),
		inc(huge, huge/2, huge, huge),
		inc(1, 0, 1, 1),
		{Baseline: Counts{huge, 1}, Candidate: Counts{huge, 1}, Latency: &Latency{BaselineP99Ms: 1e-300, CandidateP99Ms: math.MaxFloat64, BaselineRequests: huge, CandidateRequests: huge}},
	}
	var s State
	for i, in := range looks {
		var d Decision
		s, d = mustStep(t, s, in, Config{MaxLatencyRatio: 2, MaxErrorRate: 0.5})
		checkFinite(t, s, d)
		if i == 1 && s.Baseline.Requests != huge {
			t.Errorf("baseline requests %d, want saturated at the maximum", s.Baseline.Requests)
		}
	}
}

// checkFinite fails the test if a state or decision holds a number JSON
// cannot carry, or does not survive a round trip.
func checkFinite(t *testing.T, s State, d Decision) {
	t.Helper()
	st := d.Stats
	nums := []float64{st.BaselineErrorRate, st.CandidateErrorRate, st.Share, st.ExpectedCandidateErrors, st.ThetaHat, st.LogLambda, st.Threshold, s.ExpectedCandidateErrors}
	if st.RateRatio != nil {
		nums = append(nums, *st.RateRatio)
	}
	if st.LatencyRatio != nil {
		nums = append(nums, *st.LatencyRatio)
	}
	nums = append(nums, s.LogLR...)
	for i, v := range nums {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("number %d is %v in %+v", i, v, d)
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("the returned state is invalid: %v", err)
	}
	for _, v := range []any{s, d} {
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("marshal %T: %v", v, err)
		}
	}
}

func FuzzStep(f *testing.F) {
	f.Add(uint64(90), uint64(1), uint64(10), uint64(1), 100.0, 300.0, uint64(100), uint8(3))
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), 0.0, 0.0, uint64(0), uint8(1))
	f.Add(uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(1), uint64(1), 1e-300, 1e300, uint64(math.MaxUint64), uint8(255))
	f.Fuzz(func(t *testing.T, bReq, bErr, cReq, cErr uint64, bP99, cP99 float64, latReq uint64, looks uint8) {
		in := Increment{
			Baseline:  Counts{bReq, bErr},
			Candidate: Counts{cReq, cErr},
			Latency:   &Latency{BaselineP99Ms: bP99, CandidateP99Ms: cP99, BaselineRequests: latReq, CandidateRequests: latReq},
		}
		cfg := Config{MaxErrorRate: 0.1, MaxLatencyRatio: 2, MinRequests: 1}
		var s State
		for l := range int(looks%16) + 1 {
			n, d, err := Step(s, in, cfg)
			if err != nil {
				if in.Validate() == nil {
					t.Fatalf("look %d: error on a valid increment: %v", l, err)
				}
				if !cmp.Equal(s, n) {
					t.Fatalf("look %d: state changed on error", l)
				}
				return
			}
			checkFinite(t, n, d)
			s = n
			// Vary the next look: swap the versions' counts, so that the
			// share and the direction of the evidence change.
			in.Baseline, in.Candidate = in.Candidate, in.Baseline
		}
	})
}
