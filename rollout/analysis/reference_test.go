package analysis

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"
)

// The bound with no error is solvable by hand: 1 − a^(1/n).
func TestSwitchBoundByHand(t *testing.T) {
	s := State{Baseline: Counts{Requests: 1000}}
	n := Switch(s, 0.01)
	want := 1 - math.Pow(0.005, 1.0/1000)
	if n.Reference == nil || math.Abs(n.Reference.Rate-want) > 1e-9 || n.Reference.Alpha != 0.005 {
		t.Fatalf("reference %+v, want rate %.6f at alpha 0.005", n.Reference, want)
	}
	if s.Reference != nil {
		t.Error("Switch changed its input")
	}
	if got := Switch(State{}, 0.01); got.Reference != nil {
		t.Errorf("no baseline data: reference %+v, want none (only the guards judge)", got.Reference)
	}
}

// switchedRun: a preview of 300 looks at 20% share, then the switch and
// post looks of the candidate alone at effect × the baseline's rate. It
// reports whether the post-switch test failed the candidate.
func switchedRun(rng *rand.Rand, budget, rate, p, effect float64, post int) bool {
	var s State
	cfg := Config{Alpha: budget}
	for range 300 {
		total := distuv.Poisson{Lambda: rate, Src: rng}.Rand()
		n1 := distuv.Binomial{N: total, P: 0.2, Src: rng}.Rand()
		n0 := total - n1
		e0 := distuv.Binomial{N: n0, P: p, Src: rng}.Rand()
		e1 := distuv.Binomial{N: n1, P: p, Src: rng}.Rand()
		s, _, _ = Step(s, inc(uint64(n0), uint64(e0), uint64(n1), uint64(e1)), cfg)
	}
	if s.Failed != nil {
		return false // the preview failed: not this test's subject
	}
	s = Switch(s, budget)
	for range post {
		n1 := distuv.Poisson{Lambda: rate, Src: rng}.Rand()
		e1 := distuv.Binomial{N: n1, P: math.Min(1, effect*p), Src: rng}.Rand()
		var d Decision
		s, d, _ = Step(s, inc(0, 0, uint64(n1), uint64(e1)), cfg)
		if d.Verdict == Fail {
			return true
		}
	}
	return false
}

// TestSwitchAAFalseSwitchBacks: a candidate as good as the baseline is
// switched back at most the budget's share of the time, the bound's
// uncertainty included.
func TestSwitchAAFalseSwitchBacks(t *testing.T) {
	t.Parallel()
	const runs, budget = 1500, 0.02
	rng := rand.New(rand.NewPCG(21, 0))
	failed := 0
	for range runs {
		if switchedRun(rng, budget, 50, 0.01, 1, 300) {
			failed++
		}
	}
	rate := float64(failed) / runs
	slack := 3 * math.Sqrt(budget*(1-budget)/runs)
	t.Logf("%d of %d false switch-backs (%.2f%%)", failed, runs, 100*rate)
	if rate > budget+slack {
		t.Errorf("false switch-back rate %.4f, want at most %.4f", rate, budget+slack)
	}
}

// TestSwitchDetects: a candidate 5× worse after the switch is switched back.
func TestSwitchDetects(t *testing.T) {
	t.Parallel()
	const runs = 200
	rng := rand.New(rand.NewPCG(22, 0))
	detected := 0
	for range runs {
		if switchedRun(rng, 0.01, 50, 0.01, 5, 60) {
			detected++
		}
	}
	if detected < runs*95/100 {
		t.Errorf("detected a 5× regression within 60 looks after the switch in %d of %d runs, want at least 95%%", detected, runs)
	}
}

func TestSwitchedStateSaysWhyAndRoundTrips(t *testing.T) {
	s := Switch(State{Baseline: Counts{Requests: 10000, Errors: 10}}, 0.01)
	s, d, err := Step(s, inc(0, 0, 1000, 60), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Verdict != Fail || !strings.Contains(d.Reason, "since the switch the candidate's error rate is 6%") || d.Stats.Reference == nil {
		t.Fatalf("60 errors in 1,000 against ~0.1%%: %s %q %+v", d.Verdict, d.Reason, d.Stats.Reference)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil || back.Reference == nil || back.Reference.Rate != s.Reference.Rate {
		t.Fatalf("round trip: %v %+v", err, back.Reference)
	}
	back.Reference.LogLR = back.Reference.LogLR[:1]
	if _, _, err := Step(back, inc(0, 0, 1, 0), Config{}); err == nil || !strings.Contains(err.Error(), "reference") {
		t.Errorf("a corrupt reference: %v, want an error naming it", err)
	}
}
