package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/signalbox/signalbox/rollout"
)

// stepped is a canary at step 2 with some traffic judged, made by the
// model itself.
func stepped(t *testing.T) (rollout.Rollout, time.Time) {
	t.Helper()
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	spec := rollout.Spec{Service: "greeter", Baseline: "v1", Candidate: "v2", Steps: []uint32{10, 50}, StepInterval: rollout.Duration(time.Minute), Analysis: rollout.AnalysisSpec{MinRequests: 50}}
	r := rollout.New("greeter.1", spec, t0)
	r, _, err := rollout.Step(r, rollout.Observation{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for i := 1; i <= 70; i++ {
		now = t0.Add(time.Duration(i) * time.Second)
		r, _, err = rollout.Step(r, rollout.Observation{Sample: &rollout.Sample{
			Baseline:  rollout.VersionSample{Requests: 90, Errors: 1},
			Candidate: rollout.VersionSample{Requests: 10},
		}}, now)
		if err != nil {
			t.Fatal(err)
		}
	}
	if r.Step != 2 {
		t.Fatalf("the model did not reach step 2: %s %d", r.Phase, r.Step)
	}
	return r, now
}

func TestWatchDisplayShowsStepsWeightsAndAnalysis(t *testing.T) {
	r, now := stepped(t)
	out := renderWatch(r, now.Add(10*time.Second), 2)
	for _, want := range []string{
		"greeter.1  greeter v1 → v2 (canary)",
		"phase    Progressing — step 2: 50% of the traffic to v2",
		"steps    1:10% → [2:50%] → 3:100%",
		"step 2/3 for 20s of 1m0s",
		"weights  v1  50% ",
		" 50% v2",
		"analysis 70 looks; baseline 70/6300 errors (1.11%), candidate 0/700 errors (0.00%)",
		"evidence against the candidate: log Λ",
		"… 1 earlier events",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("display lacks %q:\n%s", want, out)
		}
	}
	_, hist, _ := strings.Cut(out, "history\n")
	if n := strings.Count(hist, "\n"); n != 3 { // two events and the "earlier" line
		t.Errorf("%d history lines, want 2 events and the earlier-events line:\n%s", n, out)
	}
}

func TestWatchIntoAPipeWritesChangesOnce(t *testing.T) {
	r, _ := stepped(t)
	var b bytes.Buffer
	shown, last := printRolloutChanges(&b, r, 0, "")
	first := b.String()
	if !strings.Contains(first, "rollout greeter.1: greeter v1 → v2 (canary)") || !strings.Contains(first, "now: Progressing, step 2/3, candidate 50%") {
		t.Fatalf("first frame:\n%s", first)
	}
	b.Reset()
	shown, _ = printRolloutChanges(&b, r, shown, last)
	if b.Len() != 0 {
		t.Errorf("nothing changed, yet it wrote:\n%s", b.String())
	}
	r, _, _ = rollout.Step(r, rollout.Observation{Command: &rollout.Command{Kind: rollout.CmdPause, Actor: "operator:abcd"}}, r.UpdatedAt.Add(time.Second))
	b.Reset()
	printRolloutChanges(&b, r, shown, last)
	if got := b.String(); !strings.Contains(got, "[operator:abcd]") || !strings.Contains(got, "now: Paused") || strings.Contains(got, "rollout greeter.1:") {
		t.Errorf("after a pause it wrote:\n%s\nwant the new events and the new state, not the header", got)
	}
}

// TestWatchFollowsAFullHistory: once the history is full it keeps its
// length, dropping old events; watch still writes each new event once.
func TestWatchFollowsAFullHistory(t *testing.T) {
	r, now := stepped(t)
	cmd := func(kind string) {
		now = now.Add(time.Second)
		var err error
		if r, _, err = rollout.Step(r, rollout.Observation{Command: &rollout.Command{Kind: kind, Actor: "operator:abcd", Reason: "cycle " + now.Format(time.TimeOnly)}}, now); err != nil {
			t.Fatal(err)
		}
	}
	for len(r.History) < rollout.MaxHistory {
		cmd(rollout.CmdPause)
		cmd(rollout.CmdResume)
	}
	var b bytes.Buffer
	shown, last := printRolloutChanges(&b, r, 0, "")
	cmd(rollout.CmdPause)
	if r.HistoryDropped == 0 || len(r.History) != rollout.MaxHistory {
		t.Fatalf("history %d, dropped %d: the test needs a full history", len(r.History), r.HistoryDropped)
	}
	b.Reset()
	printRolloutChanges(&b, r, shown, last)
	got := b.String()
	if strings.Count(got, "cycle "+now.Format(time.TimeOnly)) != 3 || !strings.Contains(got, "now: Paused") {
		t.Errorf("after a pause on a full history it wrote:\n%s\nwant the pause's command and phase events and the new state (each with its reason)", got)
	}
	if strings.Count(got, "\n") != 3 {
		t.Errorf("wrote %d lines; want 3 (two events, the state):\n%s", strings.Count(got, "\n"), got)
	}
	if status := renderWatch(r, now, 5); !strings.Contains(status, "earlier events") {
		t.Errorf("the watch display does not say events were dropped:\n%s", status)
	}
}
