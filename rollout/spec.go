package rollout

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Strategy is how traffic moves to the candidate.
type Strategy string

const (
	// Canary shifts a growing share of user traffic to the candidate, step
	// by step, judging it against the baseline at each step.
	Canary Strategy = "canary"
	// BlueGreen gives the candidate no user traffic until it is promoted:
	// only requests carrying the preview header reach it. Then all traffic
	// switches at once, and a post-promotion window watches for anomalies,
	// switching straight back on one.
	BlueGreen Strategy = "bluegreen"
)

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string like "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "30s", "5m" (and, leniently, whole seconds as a number).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if json.Unmarshal(b, &n) != nil {
			return fmt.Errorf("want a duration like \"30s\" or \"5m\", got %s", b)
		}
		*d = Duration(time.Duration(n * float64(time.Second)))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration like \"30s\" or \"5m\", got %q", s)
	}
	*d = Duration(v)
	return nil
}

// D is the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// AnalysisSpec configures the judgement of the candidate.
type AnalysisSpec struct {
	// Alpha is the false-rollback rate: the chance that a candidate as good
	// as the baseline is rolled back, however often the test looks (default
	// 0.01).
	Alpha float64 `json:"alpha,omitempty"`
	// MinRequests is how many candidate requests a step needs before it can
	// pass (default 100).
	MinRequests uint64 `json:"minRequests,omitempty"`
	// MaxErrorRate, when set, rolls back a candidate whose error rate passes
	// it (0..1), whatever the baseline does.
	MaxErrorRate float64 `json:"maxErrorRate,omitempty"`
	// MaxLatencyRatio, when set, rolls back a candidate whose p99 latency
	// is more than this many times the baseline's.
	MaxLatencyRatio float64 `json:"maxLatencyRatio,omitempty"`
	// NoDataTimeout is how long a step waits for MinRequests before the
	// rollout pauses, saying so (default 10m). Too little data is never a
	// pass nor a failure.
	NoDataTimeout Duration `json:"noDataTimeout,omitempty"`
}

// Spec is what a release engineer asks for.
type Spec struct {
	Service   string   `json:"service"`
	Strategy  Strategy `json:"strategy"`
	Baseline  string   `json:"baseline"`
	Candidate string   `json:"candidate"`
	// Steps are the candidate's weights in percent, increasing, each below
	// 100; promotion to 100 follows the last (canary only; default 5, 10,
	// 25, 50). A trailing 100 is accepted and means the same.
	Steps []uint32 `json:"steps,omitempty"`
	// StepInterval is the hold of each step (for blue-green, of the preview
	// analysis before the switch); default 1m.
	StepInterval Duration `json:"stepInterval,omitempty"`
	// Gates are the step numbers (1-based; len(Steps)+1 is the promotion)
	// that wait for a manual promote before they start.
	Gates []int `json:"gates,omitempty"`
	// Matches send requests that carry a header to the candidate, whatever
	// the weights (canary).
	Matches []HeaderRoute `json:"matches,omitempty"`
	// PreviewHeader is the "name: value" that reaches the candidate during
	// a blue-green preview (default "x-signalbox-preview: 1").
	PreviewHeader string `json:"previewHeader,omitempty"`
	// PostPromotionWindow is how long, after a blue-green switch, an anomaly
	// switches straight back (default 5m).
	PostPromotionWindow Duration `json:"postPromotionWindow,omitempty"`
	// MirrorPercent, when set, mirrors this share of the baseline's traffic
	// to the candidate for one step interval before the first step, with
	// responses discarded (Envoy sidecars only).
	MirrorPercent float64      `json:"mirrorPercent,omitempty"`
	Analysis      AnalysisSpec `json:"analysis"`
}

// DefaultPreviewHeader reaches a blue-green candidate before the switch.
const DefaultPreviewHeader = "x-signalbox-preview: 1"

// WithDefaults fills what the request left out.
func (s Spec) WithDefaults() Spec {
	if s.Strategy == "" {
		s.Strategy = Canary
	}
	if s.Strategy == Canary && len(s.Steps) == 0 {
		s.Steps = []uint32{5, 10, 25, 50}
	}
	if n := len(s.Steps); n > 0 && s.Steps[n-1] == 100 {
		s.Steps = append([]uint32(nil), s.Steps[:n-1]...)
	}
	if s.StepInterval == 0 {
		s.StepInterval = Duration(time.Minute)
	}
	if s.Strategy == BlueGreen {
		if s.PreviewHeader == "" {
			s.PreviewHeader = DefaultPreviewHeader
		}
		if s.PostPromotionWindow == 0 {
			s.PostPromotionWindow = Duration(5 * time.Minute)
		}
	}
	if s.Analysis.Alpha == 0 {
		s.Analysis.Alpha = 0.01
	}
	if s.Analysis.MinRequests == 0 {
		s.Analysis.MinRequests = 100
	}
	if s.Analysis.NoDataTimeout == 0 {
		s.Analysis.NoDataTimeout = Duration(10 * time.Minute)
	}
	return s
}

// Validate says everything that is wrong with a spec (after WithDefaults),
// each in words that say what to fix.
func (s Spec) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.Service == "" {
		bad("service: required: the Consul service to release")
	}
	if s.Baseline == "" {
		bad("baseline: required: the version subset serving now (the instances' version meta)")
	}
	if s.Candidate == "" {
		bad("candidate: required: the version subset to release")
	}
	if s.Baseline != "" && s.Baseline == s.Candidate {
		bad("candidate %q is the baseline: name two different versions", s.Candidate)
	}
	switch s.Strategy {
	case Canary:
		if len(s.Steps) == 0 {
			bad("steps: a canary needs at least one step below 100, e.g. [5, 25, 50]")
		}
		prev := uint32(0)
		for i, w := range s.Steps {
			if w == 0 || w >= 100 {
				bad("steps[%d] = %d: each step is a candidate weight from 1 to 99 (100 is the promotion)", i, w)
			} else if w <= prev {
				bad("steps[%d] = %d: weights must increase (after %d)", i, w, prev)
			}
			prev = max(prev, w)
		}
		if s.PreviewHeader != "" {
			bad("previewHeader: only for strategy bluegreen; a canary routes chosen requests with matches")
		}
		if s.PostPromotionWindow != 0 {
			bad("postPromotionWindow: only for strategy bluegreen; a canary is judged at every step up to 100%%")
		}
	case BlueGreen:
		if len(s.Steps) > 0 {
			bad("steps: a blue-green release has no steps: it previews, then switches at once")
		}
		if name, value, err := ParseHeader(s.PreviewHeader); err != nil {
			bad("previewHeader: %v", err)
		} else if err := (HeaderRoute{Header: name, Value: value, Subset: s.Candidate}).Validate(); err != nil {
			bad("previewHeader: %v", err)
		}
		if s.PostPromotionWindow.D() < 0 {
			bad("postPromotionWindow %v: must not be negative", s.PostPromotionWindow.D())
		}
		if len(s.Matches) > 0 {
			bad("matches: only for strategy canary; a blue-green release reaches the candidate with previewHeader")
		}
	default:
		bad("strategy %q: want canary or bluegreen", s.Strategy)
	}
	if s.StepInterval.D() < time.Second {
		bad("stepInterval %v: at least 1s", s.StepInterval.D())
	}
	last := s.lastStep()
	for _, g := range s.Gates {
		if g < 1 || g > last {
			bad("gates: %d is not a step: steps are numbered 1 to %d (the last is the promotion)", g, last)
		}
	}
	for i, m := range s.Matches {
		if m.Subset != "" && m.Subset != s.Candidate {
			bad("matches[%d].subset %q: matches route to the candidate %q; leave subset out", i, m.Subset, s.Candidate)
			continue
		}
		// The plan's own check: what the routes will carry.
		if err := (HeaderRoute{Header: m.Header, Value: m.Value, Subset: s.Candidate}).Validate(); err != nil {
			bad("matches[%d]: %v", i, err)
		}
	}
	if !(s.MirrorPercent == 0 || s.MirrorPercent >= MinMirrorPercent && s.MirrorPercent <= 100) {
		bad("mirrorPercent %v: want 0 (off), or %v (Envoy's resolution) to 100", s.MirrorPercent, MinMirrorPercent)
	} else if s.MirrorPercent > 0 && s.Strategy == BlueGreen {
		bad("mirrorPercent: only for strategy canary; a blue-green preview already exercises the candidate")
	}
	a := s.Analysis
	if a.Alpha <= 0 || a.Alpha >= 0.5 {
		bad("analysis.alpha %v: the false-rollback rate, between 0 and 0.5 (e.g. 0.01)", a.Alpha)
	}
	if a.MaxErrorRate < 0 || a.MaxErrorRate > 1 {
		bad("analysis.maxErrorRate %v: a rate from 0 to 1 (0 turns it off)", a.MaxErrorRate)
	}
	if a.MaxLatencyRatio != 0 && a.MaxLatencyRatio <= 1 {
		bad("analysis.maxLatencyRatio %v: more than 1 (e.g. 1.5), or 0 to turn it off", a.MaxLatencyRatio)
	}
	if a.NoDataTimeout.D() < 0 {
		bad("analysis.noDataTimeout %v: must not be negative", a.NoDataTimeout.D())
	}
	return errors.Join(errs...)
}

// lastStep is the number of the promotion step: canary steps are 1..n,
// then n+1 promotes; blue-green previews (1) then switches (2).
func (s Spec) lastStep() int {
	if s.Strategy == BlueGreen {
		return 2
	}
	return len(s.Steps) + 1
}

// ParseHeader reads "name: value".
func ParseHeader(h string) (name, value string, err error) {
	name, value, ok := strings.Cut(h, ":")
	name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
	if !ok || value == "" {
		return "", "", fmt.Errorf("%q: want \"name: value\", e.g. %q", h, DefaultPreviewHeader)
	}
	if err := validHeaderName(name); err != nil {
		return "", "", err
	}
	return name, value, nil
}

func validHeaderName(h string) error {
	if h == "" {
		return errors.New("empty header name")
	}
	if h != strings.ToLower(h) {
		return fmt.Errorf("header %q: write it in lower case (HTTP/2 and gRPC metadata are lower case)", h)
	}
	if strings.HasPrefix(h, ":") || strings.HasPrefix(h, "grpc-") {
		return fmt.Errorf("header %q: pseudo-headers and grpc- headers cannot route", h)
	}
	if http.CanonicalHeaderKey(h) == "" || strings.ContainsAny(h, " \t\r\n:") {
		return fmt.Errorf("header %q: not a valid header name", h)
	}
	return nil
}
