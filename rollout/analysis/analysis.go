// Package analysis judges a release candidate against its baseline from the
// requests and errors each version served, and says whether the rollout may
// go on, must roll back, or has too little data to tell.
//
// It is pure: no I/O and no clock. The controller feeds it, at each look, the
// increments since the previous look (from monotonic counters) and persists
// the State it gets back (JSON, in Consul KV) for the next look.
//
// # The sequential test
//
// Conditional on an error having happened in a look's increment, the chance
// that the candidate served it is, when both versions fail at the same rate,
// the candidate's share s of that increment's requests; when the candidate
// fails θ times as often as the baseline it is θs/(θs+1−s). With x candidate
// errors out of E errors the likelihood ratio of θ against 1 is
//
//	L(θ) = θ^x / (1 + s(θ−1))^E.
//
// The statistic is a mixture over a prior on θ > 1 (a weighted grid, see
// DefaultPrior): Λ = Σ_k w_k Π_looks L(θ_k). Under H0 (the candidate fails
// no more often than the baseline, θ ≤ 1) each look's factor has conditional
// expectation at most 1 whatever s is: x is binomial(E, s) when requests are
// Poisson, hypergeometric when they are a fixed number of independent trials,
// and L is convex in x, so by Hoeffding's convex-order bound the
// hypergeometric expectation is at most the binomial one, which is exactly 1.
// The share may change at every look (new weights, blue-green preview
// traffic) and the error rate of both versions may drift together (an
// incident downstream): each look is conditioned on its own share and its own
// total. Λ is therefore a nonnegative supermartingale under H0 and, by Ville's
// inequality, P(Λ ever reaches 1/α) ≤ α however often and whenever the
// controller looks. The test rejects, and the rollout rolls back, at the first
// look where log Λ ≥ log(1/α).
//
// What the guarantee does not cover: errors that are not independent given
// the version (one client retrying into one version), and a baseline that is
// not serving the same kind of traffic as the candidate (header-routed
// requests): the share is then not the chance an error lands on the candidate.
package analysis

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Verdict is what one look decides.
type Verdict string

const (
	// Continue: no evidence against the candidate, with enough data to say so.
	Continue Verdict = "continue"
	// Fail: roll back. A Fail is final: every later look repeats it.
	Fail Verdict = "fail"
	// InsufficientData: hold the step; it is neither a pass nor a failure.
	InsufficientData Verdict = "insufficientData"
)

// Check names what produced a Fail.
type Check string

const (
	// CheckSequential is the sequential test of the candidate's error rate
	// against the baseline's.
	CheckSequential Check = "sequential"
	// CheckErrorRate is the MaxErrorRate guard.
	CheckErrorRate Check = "maxErrorRate"
	// CheckLatency is the MaxLatencyRatio guard.
	CheckLatency Check = "maxLatencyRatio"
)

// Defaults for a zero Config field.
const (
	DefaultAlpha              = 0.01
	DefaultMinRequests        = 100
	DefaultMinLatencyRequests = 100
)

// Counts are requests and errors of one version.
type Counts struct {
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
}

// ErrorRate is Errors/Requests, 0 without requests.
func (c Counts) ErrorRate() float64 {
	if c.Requests == 0 {
		return 0
	}
	return float64(c.Errors) / float64(c.Requests)
}

// add sums counts, saturating: an absurd counter must not wrap to a small one.
func (c Counts) add(d Counts) Counts {
	return Counts{Requests: satAdd(c.Requests, d.Requests), Errors: satAdd(c.Errors, d.Errors)}
}

func satAdd(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}

// Latency is each version's p99 latency over the recent window, with the
// number of requests that p99 summarises. The window is the controller's
// choice and may be longer than a look.
type Latency struct {
	BaselineP99Ms     float64 `json:"baselineP99Ms"`
	CandidateP99Ms    float64 `json:"candidateP99Ms"`
	BaselineRequests  uint64  `json:"baselineRequests"`
	CandidateRequests uint64  `json:"candidateRequests"`
}

// Increment is what each version served since the previous look.
type Increment struct {
	Baseline  Counts `json:"baseline"`
	Candidate Counts `json:"candidate"`
	// Latency is optional; without it the latency guard is not evaluated.
	Latency *Latency `json:"latency,omitempty"`
}

// Validate says what is wrong with an increment, if anything.
func (in Increment) Validate() error {
	if in.Baseline.Errors > in.Baseline.Requests {
		return fmt.Errorf("baseline: %d errors out of %d requests: errors are a subset of requests", in.Baseline.Errors, in.Baseline.Requests)
	}
	if in.Candidate.Errors > in.Candidate.Requests {
		return fmt.Errorf("candidate: %d errors out of %d requests: errors are a subset of requests", in.Candidate.Errors, in.Candidate.Requests)
	}
	if l := in.Latency; l != nil {
		for _, v := range []struct {
			name string
			ms   float64
		}{{"baseline", l.BaselineP99Ms}, {"candidate", l.CandidateP99Ms}} {
			if math.IsNaN(v.ms) || math.IsInf(v.ms, 0) || v.ms < 0 {
				return fmt.Errorf("latency: %s p99 %v ms: want a finite number ≥ 0", v.name, v.ms)
			}
		}
	}
	return nil
}

// Config tunes the analysis. Zero fields take the defaults.
type Config struct {
	// Alpha is the false-rollback rate: the chance that a candidate no worse
	// than the baseline is rolled back by the sequential test, over the whole
	// analysis however many looks it takes (default 0.01).
	Alpha float64 `json:"alpha,omitempty"`
	// MinRequests is how many candidate requests, since the analysis began,
	// a look needs before it can say Continue, and before MaxErrorRate
	// applies (default 100).
	MinRequests uint64 `json:"minRequests,omitempty"`
	// MaxErrorRate, when set (0..1), fails a candidate whose error rate since
	// the analysis began is above it, whatever the baseline does.
	MaxErrorRate float64 `json:"maxErrorRate,omitempty"`
	// MaxLatencyRatio, when set (> 1), fails a candidate whose p99 latency is
	// more than this many times the baseline's.
	MaxLatencyRatio float64 `json:"maxLatencyRatio,omitempty"`
	// MinLatencyRequests is how many requests each version's p99 must
	// summarise before MaxLatencyRatio applies (default 100: below that a
	// p99 is little more than the maximum).
	MinLatencyRequests uint64 `json:"minLatencyRequests,omitempty"`
	// Prior is the mixture over θ, the candidate's error rate as a multiple
	// of the baseline's (empty means DefaultPrior()). It is copied into the State
	// at the first look and the State's copy is used from then on: a prior
	// changed after seeing data would void the false-rollback bound.
	Prior []PriorPoint `json:"prior,omitempty"`
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Alpha == 0 {
		c.Alpha = DefaultAlpha
	}
	if c.MinRequests == 0 {
		c.MinRequests = DefaultMinRequests
	}
	if c.MinLatencyRequests == 0 {
		c.MinLatencyRequests = DefaultMinLatencyRequests
	}
	return c
}

// Validate says everything that is wrong with a config after WithDefaults.
func (c Config) Validate() error {
	var errs []error
	if !(c.Alpha > 0 && c.Alpha < 1) {
		errs = append(errs, fmt.Errorf("alpha %v: want a false-rollback rate between 0 and 1, e.g. 0.01", c.Alpha))
	}
	if !(c.MaxErrorRate >= 0 && c.MaxErrorRate <= 1) {
		errs = append(errs, fmt.Errorf("maxErrorRate %v: want an error rate from 0 to 1 (0 turns the guard off)", c.MaxErrorRate))
	}
	if !(c.MaxLatencyRatio == 0 || (c.MaxLatencyRatio > 1 && !math.IsInf(c.MaxLatencyRatio, 0))) {
		errs = append(errs, fmt.Errorf("maxLatencyRatio %v: want a finite ratio above 1 (0 turns the guard off)", c.MaxLatencyRatio))
	}
	if len(c.Prior) > 0 {
		if err := validatePrior(c.Prior); err != nil {
			errs = append(errs, fmt.Errorf("prior: %w", err))
		}
	}
	return errors.Join(errs...)
}

// State is everything the analysis remembers between looks. Persist it as
// JSON and hand it back unchanged; the zero State starts an analysis. Treat
// it as a value: Step never modifies the State it is given, and its slices
// may be shared between successive States.
type State struct {
	// Looks is how many increments have been analysed.
	Looks uint64 `json:"looks"`
	// Baseline and Candidate are everything served since the analysis began.
	Baseline  Counts `json:"baseline"`
	Candidate Counts `json:"candidate"`
	// ComparedBaseline and ComparedCandidate are the counts of the looks
	// where both versions had requests: the looks the test could use.
	ComparedBaseline  Counts `json:"comparedBaseline"`
	ComparedCandidate Counts `json:"comparedCandidate"`
	// ExpectedCandidateErrors is Σ E·s over those looks: how many of their
	// errors the candidate would have served at the baseline's error rate.
	ExpectedCandidateErrors float64 `json:"expectedCandidateErrors"`
	// Prior is the mixture fixed at the first look, normalised.
	Prior []PriorPoint `json:"prior,omitempty"`
	// LogLR is, for each prior point, log Π L(θ) over the looks so far.
	LogLR []float64 `json:"logLR,omitempty"`
	// Failed holds the Fail, once there is one, so later looks repeat it.
	Failed *Failure `json:"failed,omitempty"`
	// Reference, after a blue-green switch (see Switch), holds the
	// candidate to the baseline's rate from before it.
	Reference *Reference `json:"reference,omitempty"`
}

// Failure is the look that failed the candidate.
type Failure struct {
	Look   uint64 `json:"look"`
	Check  Check  `json:"check"`
	Reason string `json:"reason"`
}

// Validate says what is wrong with a State read back from storage.
func (s State) Validate() error {
	if len(s.Prior) == 0 {
		if len(s.LogLR) != 0 {
			return fmt.Errorf("state: %d log-likelihoods without a prior", len(s.LogLR))
		}
		return nil
	}
	if err := validatePrior(s.Prior); err != nil {
		return fmt.Errorf("state: prior: %w", err)
	}
	if len(s.LogLR) != len(s.Prior) {
		return fmt.Errorf("state: %d log-likelihoods for %d prior points", len(s.LogLR), len(s.Prior))
	}
	for i, v := range s.LogLR {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("state: logLR[%d] is %v", i, v)
		}
	}
	if e := s.ExpectedCandidateErrors; math.IsNaN(e) || math.IsInf(e, 0) || e < 0 {
		return fmt.Errorf("state: expectedCandidateErrors is %v", e)
	}
	if err := s.Reference.validate(len(s.Prior)); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// Stats are the numbers behind a decision, for the rollout history.
type Stats struct {
	Looks     uint64 `json:"looks"`
	Baseline  Counts `json:"baseline"`
	Candidate Counts `json:"candidate"`
	// BaselineErrorRate and CandidateErrorRate are over everything served
	// since the analysis began.
	BaselineErrorRate  float64 `json:"baselineErrorRate"`
	CandidateErrorRate float64 `json:"candidateErrorRate"`
	// Share is the candidate's share of this look's requests (0 without any).
	Share float64 `json:"share"`
	// ComparedCandidateErrors and ExpectedCandidateErrors: what the candidate
	// served in the looks the test used, and what it would have served at
	// the baseline's error rate.
	ComparedCandidateErrors uint64  `json:"comparedCandidateErrors"`
	ExpectedCandidateErrors float64 `json:"expectedCandidateErrors"`
	// RateRatio is the candidate's error rate over the baseline's in the
	// looks the test used; absent while the baseline has no error there.
	RateRatio *float64 `json:"rateRatio,omitempty"`
	// ThetaHat is the most likely θ among 1 and the prior's points.
	ThetaHat float64 `json:"thetaHat"`
	// LogLambda is log Λ; the test fails the candidate when it reaches
	// Threshold = log(1/α).
	LogLambda float64 `json:"logLambda"`
	Threshold float64 `json:"threshold"`
	Alpha     float64 `json:"alpha"`
	// LatencyRatio is candidate p99 / baseline p99, when it was evaluated.
	LatencyRatio *float64 `json:"latencyRatio,omitempty"`
	// Reference is the one-sample test after a blue-green switch.
	Reference *ReferenceStats `json:"reference,omitempty"`
}

// Decision is the outcome of one look.
type Decision struct {
	Verdict Verdict `json:"verdict"`
	// Check is what failed the candidate (only with Fail).
	Check  Check  `json:"check,omitempty"`
	Reason string `json:"reason"`
	Stats  Stats  `json:"stats"`
}

// Step analyses one look: the increment since the previous look, on top of
// the state the previous look returned. It returns the next state and the
// decision. Invalid input returns an error and the state unchanged.
//
// The verdict, in this order:
//   - Fail if an earlier look failed, or if the sequential test rejects now.
//     The test may reject before MinRequests: it holds its α at every look,
//     so an early rejection is as trustworthy as a late one. (A handful of
//     errors on a small share cannot reach 1/α anyway.)
//   - Fail if a guard trips: MaxErrorRate once the candidate has MinRequests,
//     MaxLatencyRatio once both p99s summarise MinLatencyRequests and the
//     baseline's is above 0.
//   - InsufficientData while the candidate has fewer than MinRequests
//     requests since the analysis began, or none in this increment.
//   - Continue otherwise.
func Step(s State, in Increment, cfg Config) (State, Decision, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return s, Decision{}, fmt.Errorf("analysis: config: %w", err)
	}
	if err := in.Validate(); err != nil {
		return s, Decision{}, fmt.Errorf("analysis: increment: %w", err)
	}
	if err := s.Validate(); err != nil {
		return s, Decision{}, fmt.Errorf("analysis: %w", err)
	}
	if s.Failed != nil {
		return s, Decision{Verdict: Fail, Check: s.Failed.Check, Reason: s.Failed.Reason, Stats: s.stats(in, cfg)}, nil
	}

	n := s
	if len(n.Prior) == 0 {
		p := cfg.Prior
		if len(p) == 0 {
			p = DefaultPrior()
		}
		n.Prior = normalise(p)
		n.LogLR = make([]float64, len(n.Prior))
	}
	n.Looks++
	n.Baseline = n.Baseline.add(in.Baseline)
	n.Candidate = n.Candidate.add(in.Candidate)
	if in.Baseline.Requests > 0 && in.Candidate.Requests > 0 {
		// A look where one side had no requests says nothing about which
		// version errors come from: L(θ) is 1 there.
		n.ComparedBaseline = n.ComparedBaseline.add(in.Baseline)
		n.ComparedCandidate = n.ComparedCandidate.add(in.Candidate)
		if e := float64(in.Baseline.Errors) + float64(in.Candidate.Errors); e > 0 {
			share := shareOf(in)
			x := float64(in.Candidate.Errors)
			logLR := make([]float64, len(n.LogLR)) // copy on write: s is the caller's
			for k, p := range n.Prior {
				logLR[k] = n.LogLR[k] + x*math.Log(p.Theta) - e*math.Log1p(share*(p.Theta-1))
			}
			n.LogLR = logLR
			n.ExpectedCandidateErrors += e * share
		}
	}

	n.observeReference(in)

	st := n.stats(in, cfg)
	threshold := st.Threshold
	d := Decision{Stats: st}
	ref := st.Reference
	switch {
	case ref != nil && ref.LogLambda >= ref.Threshold:
		d.Verdict, d.Check = Fail, CheckSequential
		d.Reason = fmt.Sprintf("since the switch the candidate's error rate is %.3g%% (%d of %d requests), anomalous against the baseline's before it (at most %.3g%% with %g%% confidence, from %d of %d); log Λ %.2f ≥ %.2f",
			100*ref.Candidate.ErrorRate(), ref.Candidate.Errors, ref.Candidate.Requests, 100*ref.Rate, 100*(1-ref.Alpha), ref.Baseline.Errors, ref.Baseline.Requests, ref.LogLambda, ref.Threshold)
	case st.LogLambda >= threshold:
		d.Verdict, d.Check = Fail, CheckSequential
		d.Reason = fmt.Sprintf("the candidate's errors are anomalous against the baseline's: %d errors where %.1f were expected at the baseline's rate (most likely %s the baseline's rate); log Λ %.2f ≥ %.2f (α %g)",
			st.ComparedCandidateErrors, st.ExpectedCandidateErrors, times(st.ThetaHat), st.LogLambda, threshold, cfg.Alpha)
	case cfg.MaxErrorRate > 0 && n.Candidate.Requests >= cfg.MinRequests && st.CandidateErrorRate > cfg.MaxErrorRate:
		d.Verdict, d.Check = Fail, CheckErrorRate
		d.Reason = fmt.Sprintf("the candidate's error rate %.3g%% (%d of %d requests) is above maxErrorRate %.3g%%",
			100*st.CandidateErrorRate, n.Candidate.Errors, n.Candidate.Requests, 100*cfg.MaxErrorRate)
	case st.LatencyRatio != nil && cfg.MaxLatencyRatio > 0 && *st.LatencyRatio > cfg.MaxLatencyRatio:
		d.Verdict, d.Check = Fail, CheckLatency
		d.Reason = fmt.Sprintf("the candidate's p99 %.4g ms is %.3g× the baseline's %.4g ms, above maxLatencyRatio %g",
			in.Latency.CandidateP99Ms, *st.LatencyRatio, in.Latency.BaselineP99Ms, cfg.MaxLatencyRatio)
	case n.Candidate.Requests < cfg.MinRequests:
		d.Verdict = InsufficientData
		d.Reason = fmt.Sprintf("%d of the %d candidate requests needed so far", n.Candidate.Requests, cfg.MinRequests)
	case in.Candidate.Requests == 0:
		d.Verdict = InsufficientData
		d.Reason = "no candidate requests since the previous look"
	default:
		d.Verdict = Continue
		d.Reason = fmt.Sprintf("no evidence against the candidate: %d errors where %.1f were expected at the baseline's rate; log Λ %.2f < %.2f",
			st.ComparedCandidateErrors, st.ExpectedCandidateErrors, st.LogLambda, threshold)
		switch {
		case in.Baseline.Requests == 0 && ref != nil:
			d.Reason = fmt.Sprintf("no evidence against the candidate since the switch: %d errors in %d requests against the baseline's rate before it (at most %.3g%%); log Λ %.2f < %.2f",
				ref.Candidate.Errors, ref.Candidate.Requests, 100*ref.Rate, ref.LogLambda, ref.Threshold)
		case in.Baseline.Requests == 0:
			d.Reason += "; the baseline had no requests in this look, so only the guards judged it"
		}
	}
	if d.Verdict == Fail {
		n.Failed = &Failure{Look: n.Looks, Check: d.Check, Reason: d.Reason}
	}
	return n, d, nil
}

// shareOf is the candidate's share of an increment's requests, in float64
// because the sum of two counters may not fit in a uint64.
func shareOf(in Increment) float64 {
	total := float64(in.Baseline.Requests) + float64(in.Candidate.Requests)
	if total == 0 {
		return 0
	}
	return float64(in.Candidate.Requests) / total
}

// stats are the numbers of a state after a look with increment in.
func (s State) stats(in Increment, cfg Config) Stats {
	st := Stats{
		Looks:                   s.Looks,
		Baseline:                s.Baseline,
		Candidate:               s.Candidate,
		BaselineErrorRate:       s.Baseline.ErrorRate(),
		CandidateErrorRate:      s.Candidate.ErrorRate(),
		Share:                   shareOf(in),
		ComparedCandidateErrors: s.ComparedCandidate.Errors,
		ExpectedCandidateErrors: s.ExpectedCandidateErrors,
		ThetaHat:                1,
		Threshold:               -math.Log(cfg.Alpha),
		Alpha:                   cfg.Alpha,
	}
	if b := s.ComparedBaseline.ErrorRate(); b > 0 {
		r := s.ComparedCandidate.ErrorRate() / b
		st.RateRatio = &r
	}
	best := 0.0 // log L(1)
	terms := make([]float64, len(s.Prior))
	for k, p := range s.Prior {
		terms[k] = math.Log(p.Weight) + s.LogLR[k]
		if s.LogLR[k] > best {
			best, st.ThetaHat = s.LogLR[k], p.Theta
		}
	}
	st.LogLambda = logSumExp(terms)
	st.Reference = s.referenceStats()
	if l := in.Latency; l != nil && l.BaselineP99Ms > 0 && min(l.BaselineRequests, l.CandidateRequests) >= cfg.MinLatencyRequests {
		r := l.CandidateP99Ms / l.BaselineP99Ms
		if !math.IsInf(r, 0) { // a p99 near the float64 maximum over a tiny one
			st.LatencyRatio = &r
		}
	}
	return st
}

// logSumExp is log Σ exp(v), computed around the largest term so that
// neither the huge nor the tiny likelihoods of long analyses overflow. It is
// 0 (Λ = 1: no evidence) for no terms. gonum's floats.LogSumExp does the same.
func logSumExp(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	if math.IsInf(m, -1) {
		return m
	}
	var sum float64
	for _, x := range v {
		sum += math.Exp(x - m)
	}
	return m + math.Log(sum)
}

// times writes a rate multiple for a reason text.
func times(theta float64) string {
	if theta <= 1 {
		return "about"
	}
	return fmt.Sprintf("%.3g×", theta)
}
