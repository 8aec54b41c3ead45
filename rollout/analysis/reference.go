package analysis

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// Reference judges the candidate alone against the baseline's error rate
// from before a blue-green switch, when the baseline serves nothing and the
// two-sample test has nothing to compare.
//
// Rate is an upper confidence bound on the baseline's rate (Clopper–Pearson,
// at level 1−Alpha): the baseline was at most that bad, except with chance
// Alpha. Against it, a one-sample mixture SPRT over the same prior on θ:
// each look's factor is the binomial likelihood ratio of θ·Rate against
// Rate, whose expectation is at most 1 whenever the candidate's true rate is
// at most Rate. By Ville's inequality it reaches 1/Alpha with chance at most
// Alpha; with the bound's own Alpha, a candidate no worse than the baseline
// is switched back with chance at most 2·Alpha over the window.
type Reference struct {
	// Rate is the bound the candidate is held to; Baseline what it was
	// computed from.
	Rate     float64 `json:"rate"`
	Baseline Counts  `json:"baseline"`
	Alpha    float64 `json:"alpha"`
	// Candidate is what the candidate served since the switch.
	Candidate Counts `json:"candidate"`
	// LogLR is, for each prior point, log Π L(θ) since the switch.
	LogLR []float64 `json:"logLR"`
}

// Switch freezes the reference at a blue-green switch, spending budget of
// the false-rollback rate: half on the bound, half on the test. With no
// baseline request before the switch there is nothing to hold the
// candidate to: the state is returned as it was (only the guards judge).
func Switch(s State, budget float64) State {
	if s.Baseline.Requests == 0 || !(budget > 0 && budget < 1) {
		return s
	}
	a := budget / 2
	n := s
	if len(n.Prior) == 0 {
		n.Prior = normalise(DefaultPrior())
		n.LogLR = make([]float64, len(n.Prior))
	}
	n.Reference = &Reference{Rate: upperBound(s.Baseline, a), Baseline: s.Baseline, Alpha: a, LogLR: make([]float64, len(n.Prior))}
	return n
}

// upperBound is the Clopper–Pearson upper bound of a rate at level 1−a.
func upperBound(c Counts, a float64) float64 {
	if c.Errors >= c.Requests {
		return 1
	}
	x, n := float64(c.Errors), float64(c.Requests)
	return distuv.Beta{Alpha: x + 1, Beta: n - x}.Quantile(1 - a)
}

// observeReference feeds a look to the one-sample test; it changes nothing
// unless the candidate alone served the look.
func (n *State) observeReference(in Increment) {
	r := n.Reference
	if r == nil || in.Baseline.Requests > 0 || in.Candidate.Requests == 0 || r.Rate >= 1 {
		return
	}
	nr := *r
	nr.Candidate = nr.Candidate.add(in.Candidate)
	x, m := float64(in.Candidate.Errors), float64(in.Candidate.Requests)
	p0 := r.Rate
	logLR := make([]float64, len(r.LogLR))
	for k, p := range n.Prior {
		p1 := math.Min(p.Theta*p0, 1-1e-12)
		logLR[k] = r.LogLR[k] + x*math.Log(p1/p0) + (m-x)*(math.Log1p(-p1)-math.Log1p(-p0))
	}
	nr.LogLR = logLR
	n.Reference = &nr
}

// ReferenceStats are the one-sample test's figures, for the history.
type ReferenceStats struct {
	Rate      float64 `json:"rate"`
	Baseline  Counts  `json:"baseline"`
	Candidate Counts  `json:"candidate"`
	LogLambda float64 `json:"logLambda"`
	Threshold float64 `json:"threshold"`
	Alpha     float64 `json:"alpha"`
}

func (n State) referenceStats() *ReferenceStats {
	r := n.Reference
	if r == nil {
		return nil
	}
	terms := make([]float64, len(n.Prior))
	for k, p := range n.Prior {
		terms[k] = math.Log(p.Weight) + r.LogLR[k]
	}
	return &ReferenceStats{Rate: r.Rate, Baseline: r.Baseline, Candidate: r.Candidate, LogLambda: logSumExp(terms), Threshold: -math.Log(r.Alpha), Alpha: r.Alpha}
}

func (r *Reference) validate(prior int) error {
	if r == nil {
		return nil
	}
	if !(r.Rate > 0 && r.Rate <= 1) || !(r.Alpha > 0 && r.Alpha < 1) {
		return fmt.Errorf("reference: rate %v, alpha %v: want both in (0, 1]", r.Rate, r.Alpha)
	}
	if len(r.LogLR) != prior {
		return fmt.Errorf("reference: %d log-likelihoods for %d prior points", len(r.LogLR), prior)
	}
	for i, v := range r.LogLR {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("reference: logLR[%d] is %v", i, v)
		}
	}
	return nil
}
