package analysis

import (
	"errors"
	"fmt"
	"time"
)

// FixedConfig is a fixed-threshold rule in the style of Flagger's
// request-success-rate check, kept to compare the sequential test against:
// every Window, the candidate's success rate over that window is checked
// against MinSuccessRate, and the rollout fails after Threshold failed
// checks (counted over the whole analysis, not in a row, as Flagger counts
// them). Zero fields take the defaults.
type FixedConfig struct {
	// Window is the length of a check (default 1m, Flagger's interval).
	Window time.Duration `json:"window,omitempty"`
	// MinSuccessRate fails a check whose success rate is below it (default
	// 0.99, Flagger's example).
	MinSuccessRate float64 `json:"minSuccessRate,omitempty"`
	// MinRequests: a window with fewer candidate requests is not checked
	// (default 1: a success rate needs a request). Flagger has no such floor;
	// its query has no value on an empty window and it halts advancement.
	MinRequests uint64 `json:"minRequests,omitempty"`
	// Threshold is how many failed checks fail the rollout (default 1).
	Threshold int `json:"threshold,omitempty"`
}

// WithDefaults fills the zero fields.
func (c FixedConfig) WithDefaults() FixedConfig {
	if c.Window == 0 {
		c.Window = time.Minute
	}
	if c.MinSuccessRate == 0 {
		c.MinSuccessRate = 0.99
	}
	if c.MinRequests == 0 {
		c.MinRequests = 1
	}
	if c.Threshold == 0 {
		c.Threshold = 1
	}
	return c
}

// Validate says everything that is wrong with a config after WithDefaults.
func (c FixedConfig) Validate() error {
	var errs []error
	if c.Window <= 0 {
		errs = append(errs, fmt.Errorf("window %v: must be positive", c.Window))
	}
	if !(c.MinSuccessRate > 0 && c.MinSuccessRate <= 1) {
		errs = append(errs, fmt.Errorf("minSuccessRate %v: want a rate above 0 and at most 1, e.g. 0.99", c.MinSuccessRate))
	}
	if c.Threshold < 1 {
		errs = append(errs, fmt.Errorf("threshold %d: want at least 1 failed check", c.Threshold))
	}
	return errors.Join(errs...)
}

// FixedState is what the fixed-threshold rule remembers between looks.
type FixedState struct {
	// Elapsed and Window are the time and the candidate's counts of the
	// window being filled.
	Elapsed time.Duration `json:"elapsed"`
	Window  Counts        `json:"window"`
	// Checks and FailedChecks count the windows checked so far.
	Checks       int  `json:"checks"`
	FailedChecks int  `json:"failedChecks"`
	Failed       bool `json:"failed,omitempty"`
}

// FixedDecision is the outcome of one look of the fixed-threshold rule.
type FixedDecision struct {
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason"`
	// Checked is set when this look closed a window and checked it.
	Checked      bool    `json:"checked"`
	SuccessRate  float64 `json:"successRate"`
	Requests     uint64  `json:"requests"`
	FailedChecks int     `json:"failedChecks"`
}

// StepFixed adds one look of length d to the fixed-threshold rule. A window
// closes at the first look that brings it to at least cfg.Window, so looks
// that do not divide the window make windows slightly longer. Only the
// candidate's counts matter: the rule ignores the baseline.
//
// The verdict is Fail once FailedChecks reaches the threshold (and from then
// on), Continue after a passed check or between checks once one has passed,
// and InsufficientData before the first check and after a window with too
// few requests.
func StepFixed(s FixedState, in Increment, d time.Duration, cfg FixedConfig) (FixedState, FixedDecision, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return s, FixedDecision{}, fmt.Errorf("analysis: fixed rule config: %w", err)
	}
	if err := in.Validate(); err != nil {
		return s, FixedDecision{}, fmt.Errorf("analysis: increment: %w", err)
	}
	if d <= 0 {
		return s, FixedDecision{}, fmt.Errorf("analysis: fixed rule: look length %v: must be positive", d)
	}
	if s.Failed {
		return s, FixedDecision{Verdict: Fail, Reason: "an earlier check failed the candidate", FailedChecks: s.FailedChecks}, nil
	}
	s.Elapsed += d
	s.Window = s.Window.add(in.Candidate)
	dec := FixedDecision{Verdict: Continue, Reason: "waiting for the window to close", FailedChecks: s.FailedChecks}
	if s.Checks == 0 {
		dec.Verdict, dec.Reason = InsufficientData, "no window checked yet"
	}
	if s.Elapsed < cfg.Window {
		return s, dec, nil
	}
	w := s.Window
	s.Elapsed, s.Window = 0, Counts{}
	dec.Checked, dec.Requests = true, w.Requests
	if w.Requests < cfg.MinRequests {
		dec.Verdict = InsufficientData
		dec.Reason = fmt.Sprintf("%d candidate requests in the window, %d needed for a check", w.Requests, cfg.MinRequests)
		return s, dec, nil
	}
	s.Checks++
	dec.SuccessRate = 1 - w.ErrorRate()
	// Compared as counts so that exactly 99 successes in 100 pass at 0.99.
	if float64(w.Requests-w.Errors) >= cfg.MinSuccessRate*float64(w.Requests) {
		dec.Verdict = Continue
		dec.Reason = fmt.Sprintf("success rate %.4g%% ≥ %.4g%% over %d requests", 100*dec.SuccessRate, 100*cfg.MinSuccessRate, w.Requests)
		return s, dec, nil
	}
	s.FailedChecks++
	dec.FailedChecks = s.FailedChecks
	dec.Verdict = Continue
	dec.Reason = fmt.Sprintf("success rate %.4g%% < %.4g%% over %d requests: failed check %d of %d", 100*dec.SuccessRate, 100*cfg.MinSuccessRate, w.Requests, s.FailedChecks, cfg.Threshold)
	if s.FailedChecks >= cfg.Threshold {
		s.Failed = true
		dec.Verdict = Fail
	}
	return s, dec, nil
}
