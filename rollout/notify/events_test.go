package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/signalbox/signalbox/rollout"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func canarySpec(service string) rollout.Spec {
	return rollout.Spec{Service: service, Baseline: "v1", Candidate: "v2", Steps: []uint32{10, 50}, StepInterval: rollout.Duration(time.Minute),
		Analysis: rollout.AnalysisSpec{MinRequests: 50, NoDataTimeout: rollout.Duration(5 * time.Minute)}}
}

// candidateWeight is the candidate's weight in a rollout's plan.
func candidateWeight(r rollout.Rollout) uint64 {
	if p := rollout.PlanOf(r); p != nil {
		for _, w := range p.Weights {
			if w.Subset == r.Spec.Candidate {
				return uint64(w.Weight)
			}
		}
	}
	return 0
}

// look is one second of traffic: n requests split by the candidate's
// weight, with the given errors.
func look(r rollout.Rollout, n, baseErr, candErr uint64) rollout.Observation {
	c := n * candidateWeight(r) / 100
	return rollout.Observation{Sample: &rollout.Sample{
		Baseline:  rollout.VersionSample{Requests: n - c, Errors: baseErr},
		Candidate: rollout.VersionSample{Requests: c, Errors: candErr},
	}}
}

// change is one write of the controller: the rollout before and after.
type change struct{ old, new rollout.Rollout }

// created is a rollout as the controller's Create writes it.
func created(id string, spec rollout.Spec, actor string) change {
	r := rollout.New(id, spec, t0)
	r.History = append(r.History, rollout.Event{At: t0, Kind: "command", Actor: actor, Reason: "created"})
	next, _, err := rollout.Step(r, rollout.Observation{}, t0)
	if err != nil {
		panic(err)
	}
	return change{r, next}
}

// lifecycle is a canary that passes step 1 (10%), is paused and resumed by
// an operator at step 2 (50%), then fails and is rolled back: every change
// that added to the history, as the controller's OnChange sees them.
func lifecycle(t *testing.T, service string) []change {
	t.Helper()
	c := created(service+".3", canarySpec(service), "alice")
	out := []change{c}
	r := c.new
	step := func(o rollout.Observation, at time.Time) {
		t.Helper()
		next, _, err := rollout.Step(r, o, at)
		if err != nil {
			t.Fatal(err)
		}
		if len(next.History) != len(r.History) {
			out = append(out, change{r, next})
		}
		r = next
	}
	s := 0
	for ; r.Step < 2 && s < 200; s++ {
		step(look(r, 100, 0, 0), t0.Add(time.Duration(s+1)*time.Second))
	}
	step(rollout.Observation{Command: &rollout.Command{Kind: rollout.CmdPause, Actor: "bob", Reason: "checking dashboards"}}, t0.Add(time.Duration(s+1)*time.Second))
	step(rollout.Observation{Command: &rollout.Command{Kind: rollout.CmdResume, Actor: "bob"}}, t0.Add(time.Duration(s+2)*time.Second))
	for s += 3; r.Phase != rollout.RolledBack && s < 400; s++ {
		// 0.5% errors on the baseline's side, 10% on the candidate's.
		step(look(r, 200, 1, 10), t0.Add(time.Duration(s)*time.Second))
	}
	if r.Phase != rollout.RolledBack {
		t.Fatalf("the fixture did not roll back: %s (%s)", r.Phase, r.Reason)
	}
	return out
}

func TestEventsOnePerAppendedEvent(t *testing.T) {
	changes := lifecycle(t, "greeter")
	var all []Notification
	for _, c := range changes {
		got := Events(c.old, c.new)
		if len(got) != len(c.new.History)-len(c.old.History) {
			t.Errorf("%d notifications for %d new history events", len(got), len(c.new.History)-len(c.old.History))
		}
		all = append(all, got...)
	}
	final := changes[len(changes)-1].new
	// Every event but the "created" command, which the first change's old
	// side already holds.
	if len(all) != len(final.History)-1 {
		t.Fatalf("%d notifications over the lifecycle, want %d", len(all), len(final.History)-1)
	}
	phase := rollout.Pending
	for i, n := range all {
		e := final.History[i+1]
		if e.Kind == KindPhase {
			phase = e.To
		}
		if n.RolloutID != "greeter.3" || n.Service != "greeter" || n.Baseline != "v1" || n.Candidate != "v2" || n.Strategy != rollout.Canary {
			t.Errorf("notification %d: identity %+v", i, n)
		}
		if n.Kind != e.Kind || n.Step != e.Step || n.CandidateWeight != e.Weight || n.Reason != e.Reason || n.Actor != e.Actor || !n.At.Equal(e.At) || n.From != e.From || n.To != e.To {
			t.Errorf("notification %d = %+v, does not carry event %+v", i, n, e)
		}
		if n.Phase != phase {
			t.Errorf("notification %d (%s %q): phase %s, want %s", i, n.Kind, n.Reason, n.Phase, phase)
		}
		if (n.Stats != nil) != (e.Stats != nil) {
			t.Errorf("notification %d: stats %v, event's %v", i, n.Stats, e.Stats)
		}
	}

	var kinds []string
	for _, n := range all {
		kinds = append(kinds, n.Kind+":"+string(n.Phase))
	}
	want := []string{
		"phase:Progressing",    // step 1 starts
		"decision:Progressing", // step 1 passed
		"step:Progressing",     // step 2
		"command:Progressing",  // bob pauses
		"phase:Paused",         //
		"command:Paused",       // bob resumes
		"phase:Progressing",    //
		"decision:Progressing", // the analysis fails the candidate
		"phase:RollingBack",    //
		"phase:RolledBack",     //
	}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("notifications\n%s\nwant\n%s", strings.Join(kinds, " "), strings.Join(want, " "))
	}
	for _, n := range all {
		if n.Kind == KindCommand && n.Actor != "bob" {
			t.Errorf("command %q without its actor", n.Reason)
		}
		if n.Kind == KindDecision && n.Stats == nil {
			t.Errorf("decision %q without its stats", n.Reason)
		}
	}
}

func TestEventsEdges(t *testing.T) {
	c := created("greeter.1", canarySpec("greeter"), "alice")
	if got := Events(rollout.Rollout{}, c.new); len(got) != len(c.new.History) || got[0].Reason != "created" || got[0].Phase != rollout.Pending {
		t.Errorf("from the zero rollout: %+v, want every event, the first the creation while Pending", got)
	}
	if got := Events(c.new, c.new); got != nil {
		t.Errorf("no change: %+v", got)
	}
	if got := Events(c.new, c.old); got != nil {
		t.Errorf("a stale write (shorter history): %+v", got)
	}
	other := created("greeter.2", canarySpec("greeter"), "alice")
	if got := Events(c.new, other.new); len(got) != len(other.new.History) {
		t.Errorf("another rollout replacing one: %d notifications, want all %d of its events", len(got), len(other.new.History))
	}
}

func TestEventsDoNotShareStats(t *testing.T) {
	changes := lifecycle(t, "greeter")
	for _, c := range changes {
		for i, n := range Events(c.old, c.new) {
			if n.Stats == nil {
				continue
			}
			e := c.new.History[len(c.old.History)+i]
			if n.Stats == e.Stats {
				t.Fatal("the notification shares the history's *Decision")
			}
			if n.Stats.Reason != e.Stats.Reason {
				t.Errorf("stats copied wrong: %+v", n.Stats)
			}
		}
	}
}

func TestText(t *testing.T) {
	changes := lifecycle(t, "greeter")
	var texts []string
	for _, c := range changes {
		for _, n := range Events(c.old, c.new) {
			texts = append(texts, n.Text())
		}
	}
	joined := strings.Join(texts, "\n")
	for _, want := range []string{
		":rocket: greeter.3 (v1 → v2) Progressing at step 1 (10%): step 1 starts",
		":heavy_check_mark: greeter.3 (v1 → v2) Progressing at step 1 (10%): step 1 passed",
		":arrow_right: greeter.3 (v1 → v2) Progressing at step 2 (50%): step 2: 50% of the traffic to v2",
		":bust_in_silhouette: greeter.3 (v1 → v2) Progressing at step 2 (50%): bob: pause (checking dashboards)",
		":double_vertical_bar: greeter.3 (v1 → v2) Paused at step 2 (50%): paused by bob (checking dashboards)",
		":warning: greeter.3 (v1 → v2) Progressing at step 2 (50%): the candidate's errors are anomalous",
		"log Λ 7.71 ≥ 4.61 (α 0.01); candidate error rate 2.5% (20 of 800) vs baseline 0.0357% (2 of 5600)",
		":rewind: greeter.3 (v1 → v2) RollingBack at step 2 (0%): rollback: the candidate's errors are anomalous",
		":leftwards_arrow_with_hook: greeter.3 (v1 → v2) RolledBack at step 2 (0%): traffic is back on v1",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("the texts lack %q:\n%s", want, joined)
		}
	}
	for _, s := range texts {
		if strings.Contains(s, "\n") {
			t.Errorf("not one line: %q", s)
		}
	}
}
