package analysis

import (
	"fmt"
	"math"
)

// PriorPoint is one θ of the mixture, the candidate's error rate as a
// multiple of the baseline's, with its weight. Weights are relative.
type PriorPoint struct {
	Theta  float64 `json:"theta"`
	Weight float64 `json:"weight"`
}

// Bounds of a prior point: θ > 1 because the test is one-sided (only a worse
// candidate is rolled back), and a θ beyond maxTheta adds nothing a large
// grid point does not already detect.
const (
	maxTheta       = 1e6
	maxPriorPoints = 1000
)

// The default prior: log-spaced θ over [1.5, 10], weighted by a log-normal
// density. See DefaultPrior for why.
const (
	defaultPriorLow    = 1.5
	defaultPriorHigh   = 10
	defaultPriorPoints = 10
	defaultPriorMedian = 4
	defaultPriorSigma  = 1
)

// DefaultPrior is the mixture the analysis uses unless told otherwise:
// GridPrior(1.5, 10, 10, 4, 1), 10 log-spaced values of θ from 1.5 to 10
// with weights from a log-normal density around 4×.
//
// Why: the mixture pays, in evidence, about log(1/w) for the weight w near
// the true θ, so weight spread over regressions that need no help delays the
// ones that do. Regressions of 2× to 5× are the ones a release must catch
// and the slow ones to catch, so the weight sits there. Regressions beyond
// 10× need no point of their own: every error is strong evidence, and the
// θ = 10 point detects a 20× regression as fast as a grid up to 50 does.
// Regressions under 1.5× get little power in a release's lifetime whatever
// the prior. cmd/rolloutsim measures the choice: at 200 requests/s and a 5%
// share, a 5× regression is detected in a median 26 s (p90 59 s), where a
// test told the true θ in advance needs 23 s (p90 58 s), and a flat grid
// over (1.1, 50] 29 s (p90 67 s).
func DefaultPrior() []PriorPoint {
	return GridPrior(defaultPriorLow, defaultPriorHigh, defaultPriorPoints, defaultPriorMedian, defaultPriorSigma)
}

// GridPrior is n values of θ evenly spaced in log θ from low to high, each
// weighted by a normal density in log θ centred on log(median) with standard
// deviation sigma (math.Inf(1) for equal weights). It returns nil when the
// arguments cannot make a valid prior (see Config.Validate).
func GridPrior(low, high float64, n int, median, sigma float64) []PriorPoint {
	if n < 1 || n > maxPriorPoints || !(low > 1) || !(high >= low) || high > maxTheta || !(median > 0) || !(sigma > 0) {
		return nil
	}
	out := make([]PriorPoint, n)
	for i := range out {
		t := low
		if n > 1 {
			t = math.Exp(math.Log(low) + float64(i)*(math.Log(high)-math.Log(low))/float64(n-1))
		}
		z := (math.Log(t) - math.Log(median)) / sigma
		out[i] = PriorPoint{Theta: t, Weight: math.Exp(-z * z / 2)}
	}
	if validatePrior(out) != nil { // weights underflowed to 0 far from the median
		return nil
	}
	return normalise(out)
}

// validatePrior says what is wrong with a prior, if anything.
func validatePrior(p []PriorPoint) error {
	if len(p) == 0 {
		return fmt.Errorf("no points: want at least one θ above 1")
	}
	if len(p) > maxPriorPoints {
		return fmt.Errorf("%d points: at most %d", len(p), maxPriorPoints)
	}
	for i, pt := range p {
		if !(pt.Theta > 1 && pt.Theta <= maxTheta) {
			return fmt.Errorf("point %d: theta %v: want a rate multiple above 1 and at most %g", i, pt.Theta, float64(maxTheta))
		}
		if !(pt.Weight > 0) || math.IsInf(pt.Weight, 0) {
			return fmt.Errorf("point %d: weight %v: want a finite weight above 0", i, pt.Weight)
		}
	}
	m, sum := weightScale(p)
	for i, pt := range p {
		if pt.Weight/m/sum == 0 {
			return fmt.Errorf("point %d: weight %v is too small next to the largest to be represented", i, pt.Weight)
		}
	}
	return nil
}

// normalise returns a copy of a valid prior whose weights sum to 1.
func normalise(p []PriorPoint) []PriorPoint {
	m, sum := weightScale(p)
	out := make([]PriorPoint, len(p))
	for i, pt := range p {
		out[i] = PriorPoint{Theta: pt.Theta, Weight: pt.Weight / m / sum}
	}
	return out
}

// weightScale is the largest weight m and the sum of the weights divided by
// m: scaled so that huge weights cannot overflow the sum.
func weightScale(p []PriorPoint) (m, sum float64) {
	for _, pt := range p {
		m = max(m, pt.Weight)
	}
	for _, pt := range p {
		sum += pt.Weight / m
	}
	return m, sum
}
