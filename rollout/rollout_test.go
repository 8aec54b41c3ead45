package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/signalbox/signalbox/rollout/analysis"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func canarySpec() Spec {
	return Spec{Service: "greeter", Baseline: "v1", Candidate: "v2", Steps: []uint32{10, 50}, StepInterval: Duration(time.Minute),
		Analysis: AnalysisSpec{MinRequests: 50, NoDataTimeout: Duration(5 * time.Minute)}}
}

func weights(p *Plan) map[string]uint32 {
	out := map[string]uint32{}
	if p == nil {
		return nil
	}
	for _, w := range p.Normalized().Weights {
		out[w.Subset] = w.Weight
	}
	return out
}

// look is traffic for one second: n requests split by the candidate's
// weight, with the given error counts.
func look(r Rollout, n uint64, baseErr, candErr uint64) Observation {
	c := n * uint64(r.candidateWeight()) / 100
	return Observation{Sample: &Sample{Baseline: VersionSample{Requests: n - c, Errors: baseErr}, Candidate: VersionSample{Requests: c, Errors: candErr}}}
}

func checkTransitions(t *testing.T, r Rollout) {
	t.Helper()
	allowed := map[[2]Phase]bool{}
	for _, tr := range Transitions() {
		allowed[[2]Phase{tr.From, tr.To}] = true
	}
	for _, e := range r.History {
		if e.Kind == "phase" && !allowed[[2]Phase{e.From, e.To}] {
			t.Errorf("transition %s → %s (%s) is not in the table", e.From, e.To, e.Reason)
		}
	}
}

func TestCanaryHealthyIsPromoted(t *testing.T) {
	r := New("greeter.1", canarySpec(), t0)
	r, p, err := Step(r, Observation{}, t0)
	if err != nil || r.Phase != Progressing || weights(p)["v2"] != 10 || weights(p)["v1"] != 90 {
		t.Fatalf("start: %s %v %v", r.Phase, weights(p), err)
	}
	var seen []uint32
	for s := 1; s <= 200 && !r.Phase.Terminal(); s++ {
		r, p, _ = Step(r, look(r, 100, 0, 0), t0.Add(time.Duration(s)*time.Second))
		if w := weights(p)["v2"]; len(seen) == 0 || seen[len(seen)-1] != w {
			seen = append(seen, w)
		}
	}
	if r.Phase != Succeeded || weights(p)["v2"] != 100 || len(weights(p)) != 1 {
		t.Fatalf("after 200 s: %s %v (%s)", r.Phase, weights(p), r.Reason)
	}
	if want := []uint32{10, 50, 100}; len(seen) != len(want) || seen[0] != 10 || seen[1] != 50 || seen[2] != 100 {
		t.Errorf("weights went %v, want %v: no step skipped or repeated", seen, want)
	}
	checkTransitions(t, r)
}

func TestCanaryFailingIsRolledBack(t *testing.T) {
	r := New("greeter.1", canarySpec(), t0)
	r, _, _ = Step(r, Observation{}, t0)
	var p *Plan
	for s := 1; s <= 60 && r.Phase != RolledBack; s++ {
		// 0.5% errors on the baseline side, 10% on the candidate's.
		r, p, _ = Step(r, look(r, 200, 1, 2), t0.Add(time.Duration(s)*time.Second))
	}
	if r.Phase != RolledBack || weights(p)["v1"] != 100 || weights(p)["v2"] != 0 {
		t.Fatalf("phase %s, plan %v (%s)", r.Phase, weights(p), r.Reason)
	}
	var decision *Event
	for i := range r.History {
		if r.History[i].Kind == "decision" && r.History[i].Stats != nil && r.History[i].Stats.Verdict == VerdictFail {
			decision = &r.History[i]
		}
	}
	if decision == nil || decision.Stats.Stats.Candidate.Errors == 0 || decision.Stats.Stats.LogLambda < decision.Stats.Stats.Threshold {
		t.Errorf("the history lacks the rollback decision with its statistics: %+v", decision)
	}
	checkTransitions(t, r)
}

func TestNoTrafficHoldsThenPauses(t *testing.T) {
	r := New("greeter.1", canarySpec(), t0)
	r, _, _ = Step(r, Observation{}, t0)
	for s := 1; s <= 600; s++ {
		r, _, _ = Step(r, Observation{Sample: &Sample{}}, t0.Add(time.Duration(s)*time.Second))
		if r.Phase != Progressing && r.Phase != Paused {
			t.Fatalf("at %d s: %s (%s): no traffic must never promote nor roll back", s, r.Phase, r.Reason)
		}
		if s < 300 && r.Phase != Progressing {
			t.Fatalf("paused at %d s, before the 5m no-data timeout", s)
		}
	}
	if r.Phase != Paused || r.Step != 1 {
		t.Fatalf("phase %s step %d, want Paused at step 1 (%s)", r.Phase, r.Step, r.Reason)
	}
}

func TestCommandsAndGates(t *testing.T) {
	spec := canarySpec()
	spec.Gates = []int{2}
	r := New("greeter.1", spec, t0)
	r, _, _ = Step(r, Observation{}, t0)
	if _, _, err := Step(r, Observation{Command: &Command{Kind: CmdResume, Actor: "ops"}}, t0); !errors.Is(err, ErrConflict) {
		t.Errorf("resume while progressing: %v, want a conflict", err)
	}
	for s := 1; s <= 70; s++ {
		r, _, _ = Step(r, look(r, 100, 0, 0), t0.Add(time.Duration(s)*time.Second))
	}
	if r.Phase != Paused || !r.AtGate || r.Step != 1 {
		t.Fatalf("want paused at the gate before step 2, got %s step %d gate %v", r.Phase, r.Step, r.AtGate)
	}
	if _, _, err := Step(r, Observation{Command: &Command{Kind: CmdResume, Actor: "ops"}}, t0.Add(71*time.Second)); !errors.Is(err, ErrConflict) {
		t.Errorf("resume at a gate: %v, want a conflict saying to promote", err)
	}
	r, p, err := Step(r, Observation{Command: &Command{Kind: CmdPromote, Actor: "operator:1a2b"}}, t0.Add(72*time.Second))
	if err != nil || r.Phase != Progressing || r.Step != 2 || weights(p)["v2"] != 50 {
		t.Fatalf("promote at the gate: %s step %d %v %v", r.Phase, r.Step, weights(p), err)
	}
	r, p, _ = Step(r, Observation{Command: &Command{Kind: CmdAbort, Actor: "operator:1a2b", Reason: "pager"}}, t0.Add(73*time.Second))
	if r.Phase != Aborted || weights(p)["v1"] != 100 {
		t.Fatalf("abort: %s %v", r.Phase, weights(p))
	}
	audited := 0
	for _, e := range r.History {
		if e.Kind == "command" && e.Actor == "operator:1a2b" {
			audited++
		}
	}
	if audited != 2 {
		t.Errorf("%d audited commands by operator:1a2b, want 2 (promote, abort)", audited)
	}
	if _, _, err := Step(r, Observation{Command: &Command{Kind: "reboot"}}, t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown command: %v, want invalid", err)
	}
	checkTransitions(t, r)
}

func TestBlueGreenPreviewSwitchAndSwitchBack(t *testing.T) {
	spec := Spec{Service: "greeter", Strategy: BlueGreen, Baseline: "v1", Candidate: "v2", StepInterval: Duration(30 * time.Second),
		PostPromotionWindow: Duration(time.Minute), Analysis: AnalysisSpec{MinRequests: 20, MaxErrorRate: 0.05}}
	if err := spec.WithDefaults().Validate(); err != nil {
		t.Fatal(err)
	}
	r := New("greeter.1", spec, t0)
	r, p, _ := Step(r, Observation{}, t0)
	if weights(p)["v1"] != 100 || len(p.Matches) != 1 || p.Matches[0].Header != "x-signalbox-preview" || p.Matches[0].Subset != "v2" {
		t.Fatalf("preview plan: %+v", p)
	}
	for s := 1; s <= 31; s++ {
		r, p, _ = Step(r, Observation{Sample: &Sample{Baseline: VersionSample{Requests: 100}, Candidate: VersionSample{Requests: 2}}}, t0.Add(time.Duration(s)*time.Second))
	}
	if r.Phase != Promoting || weights(p)["v2"] != 100 {
		t.Fatalf("after the preview: %s %v (%s)", r.Phase, weights(p), r.Reason)
	}
	// After the switch the candidate fails 20%: the guard switches back.
	r, p, _ = Step(r, Observation{Sample: &Sample{Candidate: VersionSample{Requests: 100, Errors: 20}}}, t0.Add(33*time.Second))
	if r.Phase != RollingBack || weights(p)["v1"] != 100 {
		t.Fatalf("the decision's own plan must already switch back: %s %v", r.Phase, weights(p))
	}
	r, p, _ = Step(r, Observation{}, t0.Add(34*time.Second))
	if r.Phase != RolledBack || weights(p)["v1"] != 100 {
		t.Fatalf("after an anomaly in the window: %s %v (%s)", r.Phase, weights(p), r.Reason)
	}
	checkTransitions(t, r)
}

func TestSpecValidateSaysWhatToFix(t *testing.T) {
	bad := Spec{Service: "greeter", Baseline: "v1", Candidate: "v1", Steps: []uint32{50, 10, 100, 120}, StepInterval: Duration(time.Millisecond), Gates: []int{9}}
	err := bad.WithDefaults().Validate()
	for _, want := range []string{"is the baseline", "must increase", "from 1 to 99", "at least 1s", "is not a step"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	// Header routes get the plan's own checks, not a looser copy.
	m := canarySpec()
	m.Matches = []HeaderRoute{{Header: "x-canary", Value: " 1"}, {Header: "x canary", Value: "1"}, {Header: "x-user-bin", Value: "a"}}
	err = m.WithDefaults().Validate()
	for _, want := range []string{"matches[0]: header x-canary: value \" 1\": leading or trailing spaces never match", "matches[1]: header \"x canary\"", "matches[2]: header \"x-user-bin\": binary (-bin) metadata cannot be matched"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// TestSpecRefusesTheOtherStrategysSettings: settings of the other strategy
// are refused, not silently ignored; a mirror finer than Envoy's resolution
// (which the plan would drop) is refused too.
func TestSpecRefusesTheOtherStrategysSettings(t *testing.T) {
	c := canarySpec()
	c.PostPromotionWindow = Duration(time.Minute)
	c.MirrorPercent = 0.00001
	bg := Spec{Service: "greeter", Strategy: BlueGreen, Baseline: "v1", Candidate: "v2", Matches: []HeaderRoute{{Header: "x-canary", Value: "1"}}}
	for _, tc := range []struct {
		spec  Spec
		wants []string
	}{
		{c, []string{"postPromotionWindow: only for strategy bluegreen", "mirrorPercent 1e-05: want 0 (off), or 0.0001"}},
		{bg, []string{"matches: only for strategy canary"}},
	} {
		err := tc.spec.WithDefaults().Validate()
		for _, want := range tc.wants {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s spec: error %v lacks %q", tc.spec.Strategy, err, want)
			}
		}
	}
}

// The docs show the state machine; it must be the code's.
func TestTransitionsTableIsTheDocs(t *testing.T) {
	b, err := os.ReadFile("../docs/release-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, line := range strings.Split(string(b), "\n") {
		phase := map[string]bool{"Pending": true, "Progressing": true, "Paused": true, "Promoting": true, "Succeeded": true, "RollingBack": true, "RolledBack": true, "Aborted": true, "Failed": true}
		if f := strings.Split(line, " | "); len(f) == 3 && phase[strings.TrimPrefix(f[0], "| ")] && phase[f[1]] {
			rows = append(rows, line)
		}
	}
	var want []string
	for _, tr := range Transitions() {
		want = append(want, fmt.Sprintf("| %s | %s | %s |", tr.From, tr.To, tr.Why))
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("docs/release-guide.md's phase table differs from Transitions(); it should read:\n%s", strings.Join(want, "\n"))
	}
}

// Mirroring: before step 1 the candidate gets a copy of some of the traffic
// (responses discarded) and no user request; the mirror is not judged; after
// one step interval step 1 starts without it.
func TestMirrorBeforeStepOne(t *testing.T) {
	spec := canarySpec()
	spec.MirrorPercent = 20
	r := New("greeter.1", spec, t0)
	r, p, err := Step(r, Observation{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Mirroring || r.Step != 0 || p.Mirror == nil || p.Mirror.Subset != "v2" || p.Mirror.Percent != 20 || weights(p)["v2"] != 0 || weights(p)["v1"] != 100 {
		t.Fatalf("start: mirroring %v step %d plan %+v weights %v; want a 20%% mirror to v2 and all user traffic on v1", r.Mirroring, r.Step, p.Mirror, weights(p))
	}
	// Errors of mirrored requests say nothing: they are not judged.
	r, _, _ = Step(r, Observation{Sample: &Sample{Baseline: VersionSample{Requests: 100}, Candidate: VersionSample{Requests: 20, Errors: 20}}}, t0.Add(30*time.Second))
	if r.Phase != Progressing || !r.Mirroring {
		t.Fatalf("mirrored errors moved the rollout: %s mirroring %v", r.Phase, r.Mirroring)
	}
	r, p, _ = Step(r, Observation{}, t0.Add(time.Minute))
	if r.Mirroring || r.Step != 1 || p.Mirror != nil || weights(p)["v2"] != 10 {
		t.Fatalf("after the mirror hold: mirroring %v step %d mirror %+v weights %v; want step 1 at 10%% without a mirror", r.Mirroring, r.Step, p.Mirror, weights(p))
	}
	checkTransitions(t, r)
	// Blue-green has no mirror step: its preview is the candidate's exercise.
	bg := Spec{Service: "greeter", Strategy: BlueGreen, Baseline: "v1", Candidate: "v2", MirrorPercent: 20}.WithDefaults()
	if err := bg.Validate(); err == nil || !strings.Contains(err.Error(), "mirrorPercent") {
		t.Errorf("blue-green with a mirror: %v, want a refusal naming mirrorPercent", err)
	}
}

// TestGateBeforeStepOne: a gate on step 1 holds the candidate at 0% until a
// promote, which starts step 1 (not step 2).
func TestGateBeforeStepOne(t *testing.T) {
	spec := canarySpec()
	spec.Gates = []int{1}
	if err := spec.WithDefaults().Validate(); err != nil {
		t.Fatalf("gate 1 refused: %v", err)
	}
	r, p, err := Step(New("greeter.1", spec, t0), Observation{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != Paused || !r.AtGate || weights(p)["v2"] != 0 {
		t.Fatalf("gate before step 1: phase %s atGate %v, candidate weight %d%% (%s); want Paused at the gate with 0%%", r.Phase, r.AtGate, weights(p)["v2"], r.Reason)
	}
	// Time passes: still held.
	r, p, _ = Step(r, Observation{}, t0.Add(time.Hour))
	if r.Phase != Paused || weights(p)["v2"] != 0 {
		t.Fatalf("an hour later: phase %s, candidate %d%%", r.Phase, weights(p)["v2"])
	}
	r, p, err = Step(r, Observation{Command: &Command{Kind: CmdPromote, Actor: "operator:x"}}, t0.Add(time.Hour+time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if r.Phase != Progressing || r.Step != 1 || weights(p)["v2"] != spec.Steps[0] {
		t.Fatalf("after promote at the gate: phase %s step %d candidate %d%%; want step 1 at %d%%", r.Phase, r.Step, weights(p)["v2"], spec.Steps[0])
	}
}

// TestHistoryStaysBounded: however many commands a rollout takes, its
// history keeps its first two events and the latest ones, counts what it
// dropped, and a too-long reason is refused before it is recorded — so the
// stored rollout always fits in a Consul KV value and a rollback can always
// be written.
func TestHistoryStaysBounded(t *testing.T) {
	spec := canarySpec()
	spec.StepInterval = Duration(time.Hour)
	r := New("greeter.1", spec, t0)
	r.History = append(r.History, Event{At: t0, Kind: "command", Actor: "operator:x", Reason: "created"}) // as the controller does
	r, _, err := Step(r, Observation{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	first := append([]Event(nil), r.History[:2]...)
	initial := len(r.History)
	reason := strings.Repeat("<", MaxReasonBytes)
	at := t0
	for i := 0; i < 400; i++ {
		for _, kind := range []string{CmdPause, CmdResume} {
			at = at.Add(time.Second)
			if r, _, err = Step(r, Observation{Command: &Command{Kind: kind, Actor: "operator:x", Reason: reason}}, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(r.History) != MaxHistory {
		t.Fatalf("history %d events, %d dropped; want %d kept", len(r.History), r.HistoryDropped, MaxHistory)
	}
	// A pause or a resume records the command and the phase change.
	if total := len(r.History) + r.HistoryDropped; total != initial+1600 {
		t.Errorf("kept + dropped = %d; want %d: every event accounted for", total, initial+1600)
	}
	if r.History[0].At != first[0].At || r.History[0].Reason != first[0].Reason || r.History[1].Reason != first[1].Reason {
		t.Errorf("the first events were dropped: %+v", r.History[:2])
	}
	if last := r.History[len(r.History)-1]; !last.At.Equal(at) {
		t.Errorf("the newest event is from %v; want %v", last.At, at)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 256<<10 {
		t.Errorf("the stored rollout is %d bytes: too close to Consul's 512 KiB limit", len(b))
	}

	// One byte too many: refused, nothing recorded.
	before := len(r.History) + r.HistoryDropped
	_, _, err = Step(r, Observation{Command: &Command{Kind: CmdPause, Actor: "operator:x", Reason: reason + "x"}}, at.Add(time.Second))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("at most %d", MaxReasonBytes)) {
		t.Fatalf("a %d-byte reason: %v; want ErrInvalid saying the limit", MaxReasonBytes+1, err)
	}
	if after := len(r.History) + r.HistoryDropped; after != before {
		t.Errorf("a refused command changed the history")
	}
}

// TestLatencyGuardJudgesWellFoundedP99s: the latency guard rolls back on a
// candidate p99 far above the baseline's only when that p99 summarises
// enough requests in its window; at low traffic (a p99 of ~30 requests is
// about their maximum) one slow request must not roll a release back.
func TestLatencyGuardJudgesWellFoundedP99s(t *testing.T) {
	run := func(candidateWindow uint64) Rollout {
		spec := canarySpec()
		spec.Steps = []uint32{5, 50}
		spec.StepInterval = Duration(10 * time.Minute)
		spec.Analysis.MaxLatencyRatio = 2
		r, _, _ := Step(New("greeter.1", spec, t0), Observation{}, t0)
		for s := 1; s <= 400; s++ {
			c := uint64(s % 2)
			p99 := 100.0
			if s >= 300 {
				p99 = 300 // 3× the baseline's in the last 100 s
			}
			o := Observation{Sample: &Sample{
				Baseline:  VersionSample{Requests: 10 - c, P99Ms: 100, P99Requests: 570},
				Candidate: VersionSample{Requests: c, P99Ms: p99, P99Requests: candidateWindow},
			}}
			r, _, _ = Step(r, o, t0.Add(time.Duration(s)*time.Second))
			if r.Phase == RollingBack {
				return r
			}
		}
		return r
	}
	if r := run(30); r.Phase == RollingBack {
		t.Errorf("rolled back on a p99 of 30 requests (the guard needs %d): %s", analysis.DefaultMinLatencyRequests, r.Reason)
	}
	r := run(analysis.DefaultMinLatencyRequests)
	if r.Phase != RollingBack || !strings.Contains(r.Reason, "p99") {
		t.Errorf("a 3× p99 over %d requests: phase %s (%s); want a rollback naming the p99", analysis.DefaultMinLatencyRequests, r.Phase, r.Reason)
	}
}
