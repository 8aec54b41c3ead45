// Package rollout decides how traffic moves between the versions of a service
// during a canary or blue-green release. This file holds the Plan, the value
// the rollout side hands to xds: it is pure data with no behaviour of its own.
package rollout

import (
	"fmt"
	"slices"
	"sort"
)

// SubsetWeight is the share of a service's traffic that one version subset gets.
type SubsetWeight struct {
	Subset string `json:"subset"`
	Weight uint32 `json:"weight"`
}

// Plan is the routing decision for one service. Weights are relative; subsets
// with weight 0 get no traffic.
type Plan struct {
	Service string         `json:"service"`
	Weights []SubsetWeight `json:"weights"`
}

// Validate reports what is wrong with a plan, if anything.
func (p Plan) Validate() error {
	if p.Service == "" {
		return fmt.Errorf("plan: service is empty")
	}
	var total uint64
	seen := map[string]bool{}
	for _, w := range p.Weights {
		if w.Subset == "" {
			return fmt.Errorf("plan %s: a weight has an empty subset", p.Service)
		}
		if seen[w.Subset] {
			return fmt.Errorf("plan %s: subset %q is listed twice", p.Service, w.Subset)
		}
		seen[w.Subset] = true
		total += uint64(w.Weight)
	}
	if total == 0 {
		return fmt.Errorf("plan %s: the weights add up to 0; at least one subset needs traffic", p.Service)
	}
	return nil
}

// Normalized returns the plan with zero weights dropped and subsets sorted,
// so that equal plans compare equal.
func (p Plan) Normalized() Plan {
	out := Plan{Service: p.Service}
	for _, w := range p.Weights {
		if w.Weight > 0 {
			out.Weights = append(out.Weights, w)
		}
	}
	sort.Slice(out.Weights, func(a, b int) bool { return out.Weights[a].Subset < out.Weights[b].Subset })
	return out
}

// Equal reports whether two plans route identically.
func (p Plan) Equal(q Plan) bool {
	a, b := p.Normalized(), q.Normalized()
	return a.Service == b.Service && slices.Equal(a.Weights, b.Weights)
}
