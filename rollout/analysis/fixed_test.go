package analysis

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestFixedRule(t *testing.T) {
	// Looks of 20 s, so a 1-minute window closes every third look.
	type look struct {
		req, err uint64
		verdict  Verdict
		checked  bool
	}
	cases := []struct {
		name  string
		cfg   FixedConfig
		looks []look
	}{
		{"exactly 99% passes", FixedConfig{}, []look{
			{40, 0, InsufficientData, false}, {40, 0, InsufficientData, false}, {20, 1, Continue, true},
		}},
		{"below 99% fails at the window's end", FixedConfig{}, []look{
			{40, 1, InsufficientData, false}, {40, 0, InsufficientData, false}, {19, 0, Fail, true},
		}},
		{"threshold 2 counts failed checks, not in a row", FixedConfig{Threshold: 2}, []look{
			{30, 1, InsufficientData, false}, {0, 0, InsufficientData, false}, {0, 0, Continue, true},
			{100, 0, Continue, false}, {0, 0, Continue, false}, {0, 0, Continue, true},
			{30, 1, Continue, false}, {0, 0, Continue, false}, {0, 0, Fail, true},
		}},
		{"a window without enough requests is not checked", FixedConfig{MinRequests: 10}, []look{
			{3, 3, InsufficientData, false}, {0, 0, InsufficientData, false}, {0, 0, InsufficientData, true},
		}},
		{"the baseline does not matter", FixedConfig{}, []look{
			{20, 0, InsufficientData, false}, {20, 0, InsufficientData, false}, {20, 0, Continue, true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var s FixedState
			for i, l := range c.looks {
				var d FixedDecision
				var err error
				in := inc(1000, 1000, l.req, l.err) // a baseline failing every request
				s, d, err = StepFixed(s, in, 20*time.Second, c.cfg)
				if err != nil {
					t.Fatalf("look %d: %v", i, err)
				}
				if d.Verdict != l.verdict || d.Checked != l.checked {
					t.Fatalf("look %d: %s checked=%v (%s), want %s checked=%v", i, d.Verdict, d.Checked, d.Reason, l.verdict, l.checked)
				}
			}
		})
	}
}

func TestFixedRuleFailIsFinal(t *testing.T) {
	s, d, err := StepFixed(FixedState{}, inc(0, 0, 10, 5), time.Minute, FixedConfig{})
	if err != nil || d.Verdict != Fail {
		t.Fatalf("setup: %s, %v", d.Verdict, err)
	}
	if _, d, _ = StepFixed(s, inc(0, 0, 1000, 0), time.Minute, FixedConfig{}); d.Verdict != Fail {
		t.Errorf("after a fail, a clean window says %s", d.Verdict)
	}
}

func TestFixedRuleInvalid(t *testing.T) {
	for _, c := range []struct {
		name string
		in   Increment
		d    time.Duration
		cfg  FixedConfig
		want string
	}{
		{"zero look", Increment{}, 0, FixedConfig{}, "look length 0s"},
		{"rate", Increment{}, time.Second, FixedConfig{MinSuccessRate: 1.5}, "minSuccessRate 1.5"},
		{"threshold", Increment{}, time.Second, FixedConfig{Threshold: -1}, "threshold -1"},
		{"counts", inc(0, 0, 1, 2), time.Second, FixedConfig{}, "2 errors out of 1"},
	} {
		if _, _, err := StepFixed(FixedState{}, c.in, c.d, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

func TestGridPrior(t *testing.T) {
	p := DefaultPrior()
	if len(p) != 10 || !near(p[0].Theta, 1.5) || !near(p[9].Theta, 10) {
		t.Fatalf("default prior %+v: want 10 points from 1.5 to 10", p)
	}
	var sum float64
	heaviest := 0
	for i, pt := range p {
		sum += pt.Weight
		if pt.Weight > p[heaviest].Weight {
			heaviest = i
		}
	}
	if !near(sum, 1) {
		t.Errorf("weights sum to %v, want 1", sum)
	}
	if th := p[heaviest].Theta; th < 3 || th > 5 {
		t.Errorf("heaviest point θ = %v, want near the median 4", th)
	}
	for _, bad := range [][5]float64{{1, 50, 10, 4, 1}, {2, 1.5, 10, 4, 1}, {1.5, 10, 0, 4, 1}, {1.5, 10, 10, 0, 1}, {1.5, 1e7, 10, 4, 1}, {1.5, 1e6, 1000, 2, 0.001}} {
		if p := GridPrior(bad[0], bad[1], int(bad[2]), bad[3], bad[4]); p != nil {
			t.Errorf("GridPrior%v = %d points, want nil", bad, len(p))
		}
	}
	if p := GridPrior(3, 3, 1, 3, math.Inf(1)); len(p) != 1 || p[0].Weight != 1 {
		t.Errorf("one-point prior %+v, want θ 3 with all the weight", p)
	}
}
