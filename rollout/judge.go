package rollout

import (
	"fmt"

	"github.com/signalbox/signalbox/rollout/analysis"
)

// AnalysisState is the judgement carried across looks and restarts.
type AnalysisState struct {
	Test analysis.State `json:"test"`
	// SwitchedAt is the look of a blue-green switch: after it the baseline
	// takes no traffic, and the candidate is held to the baseline's rate
	// from before the switch (analysis.Switch) and to the guards.
	SwitchedAt uint64 `json:"switchedAt,omitempty"`
}

// Decision is one look's verdict and its figures, as the history shows it.
type Decision = analysis.Decision

// VerdictFail is the analysis' rollback verdict.
const VerdictFail = analysis.Fail

func (s AnalysisSpec) config() analysis.Config {
	return analysis.Config{Alpha: s.Alpha, MinRequests: s.MinRequests, MaxErrorRate: s.MaxErrorRate, MaxLatencyRatio: s.MaxLatencyRatio}.WithDefaults()
}

// Observe feeds one look to the test. A look the test refuses (it cannot
// happen with counts from the store) holds, saying why.
func (a *AnalysisState) Observe(s Sample, spec AnalysisSpec) Decision {
	in := analysis.Increment{
		Baseline:  analysis.Counts{Requests: s.Baseline.Requests, Errors: s.Baseline.Errors},
		Candidate: analysis.Counts{Requests: s.Candidate.Requests, Errors: s.Candidate.Errors},
	}
	if s.Baseline.P99Ms > 0 && s.Candidate.P99Ms > 0 {
		in.Latency = &analysis.Latency{BaselineP99Ms: s.Baseline.P99Ms, CandidateP99Ms: s.Candidate.P99Ms,
			BaselineRequests: s.Baseline.P99Requests, CandidateRequests: s.Candidate.P99Requests}
	}
	next, d, err := analysis.Step(a.Test, in, spec.config())
	if err != nil {
		return Decision{Verdict: analysis.InsufficientData, Reason: fmt.Sprintf("look skipped: %v", err)}
	}
	a.Test = next
	return d
}

// Summary is the figures so far, for a step that passed.
func (a *AnalysisState) Summary(spec AnalysisSpec) Decision {
	_, d, err := analysis.Step(a.Test, analysis.Increment{}, spec.config())
	if err != nil {
		return Decision{Verdict: analysis.InsufficientData, Reason: err.Error()}
	}
	d.Stats.Looks = a.Test.Looks // the empty increment was not a look
	if d.Verdict == analysis.InsufficientData && a.Test.Failed == nil {
		// Asked for when a step passed: its data sufficed, and nothing
		// spoke against the candidate.
		d.Verdict = analysis.Continue
		d.Reason = fmt.Sprintf("no evidence against the candidate: %d errors where %.1f were expected at the baseline's rate; log Λ %.2f < %.2f",
			d.Stats.ComparedCandidateErrors, d.Stats.ExpectedCandidateErrors, d.Stats.LogLambda, d.Stats.Threshold)
	}
	return d
}

// Switched marks the blue-green switch, giving the post-promotion test its
// share of the false-rollback rate.
func (a *AnalysisState) Switched(budget float64) {
	a.SwitchedAt = a.Test.Looks + 1
	a.Test = analysis.Switch(a.Test, budget)
}

// judged is the analysis as the test runs it: a blue-green release spends
// half its false-rollback rate on the preview and half after the switch,
// so that the whole release stays within alpha.
func (s Spec) judged() AnalysisSpec {
	a := s.Analysis
	if s.Strategy == BlueGreen {
		a.Alpha /= 2
	}
	return a
}
