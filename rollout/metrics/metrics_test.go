package metrics

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signalbox/signalbox/rollout"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func canarySpec(service string) rollout.Spec {
	return rollout.Spec{Service: service, Baseline: "v1", Candidate: "v2", Steps: []uint32{10, 50}, StepInterval: rollout.Duration(time.Minute),
		Analysis: rollout.AnalysisSpec{MinRequests: 50, NoDataTimeout: rollout.Duration(5 * time.Minute)}}
}

// change is one write of the controller: the rollout before and after.
type change struct{ old, new rollout.Rollout }

// look is one second of traffic: n requests split by the candidate's
// weight, with the given errors.
func look(r rollout.Rollout, n, baseErr, candErr uint64) rollout.Observation {
	c := n * uint64(r.CandidateWeight()) / 100
	return rollout.Observation{Sample: &rollout.Sample{
		Baseline:  rollout.VersionSample{Requests: n - c, Errors: baseErr},
		Candidate: rollout.VersionSample{Requests: c, Errors: candErr},
	}}
}

// run is a canary of 10% then 50% created at start, as the controller's
// OnChange sees it: healthy, it is promoted; failing, it passes step 1, is
// paused and resumed by an operator at step 2, then rolled back. until
// stops it early, in the given phase.
func run(t *testing.T, id string, start time.Time, failing bool, until rollout.Phase) []change {
	t.Helper()
	svc, _, _ := strings.Cut(id, ".")
	r := rollout.New(id, canarySpec(svc), start)
	r.History = append(r.History, rollout.Event{At: start, Kind: "command", Actor: "alice", Reason: "created"})
	var out []change
	step := func(o rollout.Observation, s int) {
		t.Helper()
		next, _, err := rollout.Step(r, o, start.Add(time.Duration(s)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if len(next.History) != len(r.History) {
			out = append(out, change{r, next})
		}
		r = next
	}
	step(rollout.Observation{}, 0)
	s, paused := 1, false
	for ; r.Phase != until && !r.Phase.Terminal() && s < 1000; s++ {
		switch {
		case !failing:
			step(look(r, 100, 0, 0), s)
		case r.Step < 2:
			step(look(r, 100, 0, 0), s)
		case !paused:
			paused = true
			step(rollout.Observation{Command: &rollout.Command{Kind: rollout.CmdPause, Actor: "bob"}}, s)
			step(rollout.Observation{Command: &rollout.Command{Kind: rollout.CmdResume, Actor: "bob"}}, s)
		default:
			step(look(r, 200, 1, 10), s)
		}
	}
	if until == "" && !r.Phase.Terminal() || until != "" && r.Phase != until {
		t.Fatalf("the fixture %s ended %s (%s)", id, r.Phase, r.Reason)
	}
	return out
}

func last(cs []change) rollout.Rollout { return cs[len(cs)-1].new }

func observeAll(m *Metrics, cs []change) {
	for _, c := range cs {
		m.Observe(c.old, c.new)
	}
}

func compare(t *testing.T, reg *prometheus.Registry, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

const (
	phaseHelp  = "# HELP signalbox_rollouts Rollouts by phase: each service's current rollout (active, or the last one ended).\n# TYPE signalbox_rollouts gauge\n"
	weightHelp = "# HELP signalbox_rollout_candidate_weight Percent of a service's user traffic the candidate of its active rollout gets; no series once the rollout ends.\n# TYPE signalbox_rollout_candidate_weight gauge\n"
)

// phaseCounts is the signalbox_rollouts exposition with the given counts,
// every other phase 0.
func phaseCounts(counts map[rollout.Phase]int) string {
	var names []string
	for _, p := range []rollout.Phase{rollout.Aborted, rollout.Failed, rollout.Paused, rollout.Pending, rollout.Progressing,
		rollout.Promoting, rollout.RolledBack, rollout.RollingBack, rollout.Succeeded} {
		names = append(names, fmt.Sprintf("signalbox_rollouts{phase=%q} %d", p, counts[p]))
	}
	return phaseHelp + strings.Join(names, "\n") + "\n"
}

func transitions(m *Metrics) map[string]float64 {
	out := map[string]float64{}
	for _, tr := range rollout.Transitions() {
		if v := testutil.ToFloat64(m.transitions.WithLabelValues(string(tr.From), string(tr.To))); v != 0 {
			out[string(tr.From)+"→"+string(tr.To)] = v
		}
	}
	return out
}

func TestMetricsFollowRollouts(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	compare(t, reg, phaseCounts(nil), "signalbox_rollouts")

	// On start: payments' last rollout succeeded (an older one is
	// archived), orders' is at step 1.
	payments := run(t, "payments.2", t0.Add(-2*time.Hour), false, "")
	orders := run(t, "orders.4", t0.Add(-time.Hour), false, rollout.Progressing)
	m.Set([]rollout.Rollout{last(run(t, "payments.1", t0.Add(-3*time.Hour), true, "")), last(payments), last(orders)})
	compare(t, reg, phaseCounts(map[rollout.Phase]int{rollout.Succeeded: 1, rollout.Progressing: 1}), "signalbox_rollouts")
	compare(t, reg, weightHelp+`signalbox_rollout_candidate_weight{rollout="orders.4",service="orders"} 10
`, "signalbox_rollout_candidate_weight")
	if n := testutil.CollectAndCount(reg, "signalbox_rollout_decisions_total", "signalbox_rollout_rollbacks_total"); n != 0 {
		t.Errorf("Set counted history: %d series", n)
	}
	if len(transitions(m)) != 0 {
		t.Errorf("Set counted transitions: %v", transitions(m))
	}

	// greeter.3 starts, passes step 1, is paused and resumed, fails.
	greeter := run(t, "greeter.3", t0, true, "")
	m.Observe(greeter[0].old, greeter[0].new)
	compare(t, reg, phaseCounts(map[rollout.Phase]int{rollout.Succeeded: 1, rollout.Progressing: 2}), "signalbox_rollouts")
	compare(t, reg, weightHelp+`signalbox_rollout_candidate_weight{rollout="greeter.3",service="greeter"} 10
signalbox_rollout_candidate_weight{rollout="orders.4",service="orders"} 10
`, "signalbox_rollout_candidate_weight")
	for i, c := range greeter[1:] {
		m.Observe(c.old, c.new)
		if c.new.Phase == rollout.Paused {
			compare(t, reg, phaseCounts(map[rollout.Phase]int{rollout.Succeeded: 1, rollout.Progressing: 1, rollout.Paused: 1}), "signalbox_rollouts")
			compare(t, reg, weightHelp+`signalbox_rollout_candidate_weight{rollout="greeter.3",service="greeter"} 50
signalbox_rollout_candidate_weight{rollout="orders.4",service="orders"} 10
`, "signalbox_rollout_candidate_weight")
		}
		if i == len(greeter)-3 && c.new.Phase != rollout.RollingBack {
			t.Fatalf("the fixture's second last write is %s", c.new.Phase)
		}
	}
	counters := `# HELP signalbox_rollout_decisions_total Decisions of the analysis: pass (a step's hold passed) or fail (the candidate was rolled back).
# TYPE signalbox_rollout_decisions_total counter
signalbox_rollout_decisions_total{service="greeter",verdict="fail"} 1
signalbox_rollout_decisions_total{service="greeter",verdict="pass"} 1
# HELP signalbox_rollout_rollbacks_total Rollbacks started (moves to RollingBack): the analysis found the candidate worse, or past a guard.
# TYPE signalbox_rollout_rollbacks_total counter
signalbox_rollout_rollbacks_total{service="greeter"} 1
`
	check := func(when string) {
		t.Helper()
		compare(t, reg, phaseCounts(map[rollout.Phase]int{rollout.Succeeded: 1, rollout.Progressing: 1, rollout.RolledBack: 1}), "signalbox_rollouts")
		compare(t, reg, weightHelp+`signalbox_rollout_candidate_weight{rollout="orders.4",service="orders"} 10
`, "signalbox_rollout_candidate_weight")
		compare(t, reg, counters, "signalbox_rollout_decisions_total", "signalbox_rollout_rollbacks_total")
		want := map[string]float64{"Pending→Progressing": 1, "Progressing→Paused": 1, "Paused→Progressing": 1, "Progressing→RollingBack": 1, "RollingBack→RolledBack": 1}
		if got := transitions(m); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: transitions %v, want %v", when, got, want)
		}
	}
	check("rolled back")

	// The same writes again, in order or not, and a stale one, count
	// nothing and leave the gauges.
	observeAll(m, greeter)
	m.Observe(greeter[2].old, greeter[2].new)
	m.Observe(rollout.Rollout{}, last(greeter))
	m.Observe(rollout.Rollout{}, greeter[1].new)
	check("replayed")

	// greeter.4 replaces it and is promoted; orders.5 replaces orders.4
	// (its weight series goes); an older orders rollout is ignored.
	observeAll(m, run(t, "greeter.4", t0.Add(time.Hour), false, ""))
	orders5 := run(t, "orders.5", t0.Add(time.Hour), false, rollout.Progressing)
	observeAll(m, orders5)
	observeAll(m, run(t, "orders.3", t0.Add(-4*time.Hour), false, rollout.Progressing))
	compare(t, reg, phaseCounts(map[rollout.Phase]int{rollout.Succeeded: 2, rollout.Progressing: 1}), "signalbox_rollouts")
	compare(t, reg, weightHelp+`signalbox_rollout_candidate_weight{rollout="orders.5",service="orders"} 10
`, "signalbox_rollout_candidate_weight")
	// greeter.4 passed its two steps.
	compare(t, reg, strings.Replace(counters, `verdict="pass"} 1`, `verdict="pass"} 3`, 1), "signalbox_rollout_decisions_total", "signalbox_rollout_rollbacks_total")
	if got := transitions(m); got["Progressing→Promoting"] != 1 || got["Promoting→Succeeded"] != 1 || got["Pending→Progressing"] != 3 {
		t.Errorf("transitions %v: want greeter.4's promotion and the starts of greeter.3, greeter.4 and orders.5", got)
	}

	// On a restart, Set replaces the gauges and counts nothing.
	m.Set([]rollout.Rollout{last(payments)})
	compare(t, reg, phaseCounts(map[rollout.Phase]int{rollout.Succeeded: 1}), "signalbox_rollouts")
	if n := testutil.CollectAndCount(reg, "signalbox_rollout_candidate_weight"); n != 0 {
		t.Errorf("%d weight series after Set of an ended rollout", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

// A replica's refresh from KV may read a write before the writer's
// Observe of it: the counters must still count that write's events, and
// the gauges must not go back to the older state Observe carries.
func TestRefreshBeforeObserveCountsAllTheSame(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg)
	m.Set(nil)
	greeter := run(t, "greeter.3", t0, true, "")
	for _, c := range greeter {
		m.Refresh([]rollout.Rollout{c.new})
		m.Observe(c.old, c.new)
	}
	compare(t, reg, `# HELP signalbox_rollout_decisions_total Decisions of the analysis: pass (a step's hold passed) or fail (the candidate was rolled back).
# TYPE signalbox_rollout_decisions_total counter
signalbox_rollout_decisions_total{service="greeter",verdict="fail"} 1
signalbox_rollout_decisions_total{service="greeter",verdict="pass"} 1
# HELP signalbox_rollout_rollbacks_total Rollbacks started (moves to RollingBack): the analysis found the candidate worse, or past a guard.
# TYPE signalbox_rollout_rollbacks_total counter
signalbox_rollout_rollbacks_total{service="greeter"} 1
`, "signalbox_rollout_decisions_total", "signalbox_rollout_rollbacks_total")
	compare(t, reg, phaseCounts(map[rollout.Phase]int{rollout.RolledBack: 1}), "signalbox_rollouts")

	// A late Observe of an earlier write leaves the gauges on the newer state.
	m.Observe(greeter[0].old, greeter[0].new)
	compare(t, reg, phaseCounts(map[rollout.Phase]int{rollout.RolledBack: 1}), "signalbox_rollouts")
	// And a refresh alone counts nothing.
	m2 := New(nil)
	m2.Refresh([]rollout.Rollout{last(greeter)})
	if got := testutil.ToFloat64(m2.rollbacks.WithLabelValues("greeter")); got != 0 {
		t.Errorf("a refresh counted %v rollbacks", got)
	}
}

func TestCandidateWeight(t *testing.T) {
	mirrored := canarySpec("greeter")
	mirrored.MirrorPercent = 5
	blueGreen := rollout.Spec{Service: "greeter", Strategy: rollout.BlueGreen, Baseline: "v1", Candidate: "v2"}
	start := func(s rollout.Spec) rollout.Rollout {
		r, _, err := rollout.Step(rollout.New("greeter.1", s, t0), rollout.Observation{}, t0)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	promote := func(r rollout.Rollout) rollout.Rollout {
		r, _, err := rollout.Step(r, rollout.Observation{Command: &rollout.Command{Kind: rollout.CmdPromote, Actor: "ops"}}, t0)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	failed, _, _ := rollout.Step(start(canarySpec("greeter")), rollout.Observation{Missing: "v2"}, t0)
	for _, tc := range []struct {
		name string
		r    rollout.Rollout
		want float64
	}{
		{"pending", rollout.New("greeter.1", canarySpec("greeter"), t0), 0},
		{"step 1", start(canarySpec("greeter")), 10},
		{"mirroring before step 1", start(mirrored), 0},
		{"blue-green preview", start(blueGreen), 0},
		{"blue-green switched", promote(start(blueGreen)), 100},
		{"failed: no plan", failed, 0},
	} {
		if got := float64(tc.r.CandidateWeight()); got != tc.want {
			t.Errorf("%s (%s): %v, want %v", tc.name, tc.r.Phase, got, tc.want)
		}
	}
}

func TestNewWithoutRegistry(t *testing.T) {
	m := New(nil)
	m.Observe(rollout.Rollout{}, rollout.New("greeter.1", canarySpec("greeter"), t0))
	if got := testutil.ToFloat64(m.rollouts.WithLabelValues("Pending")); got != 1 {
		t.Errorf("pending %v", got)
	}
}
