// Package rollout decides how traffic moves between the versions of a service
// during a canary or blue-green release. This file holds the Plan, the value
// the rollout side hands to xds: it is pure data with no behaviour of its own.
package rollout

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// SubsetWeight is the share of a service's traffic that one version subset gets.
type SubsetWeight struct {
	Subset string `json:"subset"`
	Weight uint32 `json:"weight"`
}

// HeaderRoute sends every request whose Header equals Value exactly to one
// subset, whatever the weights. For proxyless gRPC clients the header is
// request metadata.
type HeaderRoute struct {
	// Header is the lower-case header (metadata key) name.
	Header string `json:"header"`
	Value  string `json:"value"`
	Subset string `json:"subset"`
}

// Mirror copies a share of the requests that take the weighted route to a
// subset as well; the copies' responses are discarded. Only Envoy sidecars
// mirror: gRPC-Go does not implement request mirroring, so proxyless clients
// are not sent it.
type Mirror struct {
	Subset string `json:"subset"`
	// Percent of requests mirrored, in (0, 100], to a millionth of the
	// requests (0.0001%).
	Percent float64 `json:"percent"`
}

// Plan is the routing decision for one service. Weights are relative; subsets
// with weight 0 get no traffic from the weighted route, but can still be
// reached through Matches and Mirror.
type Plan struct {
	Service string         `json:"service"`
	Weights []SubsetWeight `json:"weights"`
	// Matches are tried before the weighted route. Their order carries no
	// meaning: a request that matches more than one takes the first by
	// (header, value), the order of Normalized.
	Matches []HeaderRoute `json:"matches,omitempty"`
	// Mirror, when set, shadows the weighted route's requests.
	Mirror *Mirror `json:"mirror,omitempty"`
}

// Validate reports what is wrong with a plan, if anything.
func (p Plan) Validate() error {
	if p.Service == "" {
		return fmt.Errorf("plan: service is empty")
	}
	var total uint64
	weight := map[string]uint32{}
	for _, w := range p.Weights {
		if w.Subset == "" {
			return fmt.Errorf("plan %s: a weight has an empty subset", p.Service)
		}
		if _, ok := weight[w.Subset]; ok {
			return fmt.Errorf("plan %s: subset %q is listed twice", p.Service, w.Subset)
		}
		weight[w.Subset] = w.Weight
		total += uint64(w.Weight)
	}
	if total == 0 {
		return fmt.Errorf("plan %s: the weights add up to 0; at least one subset needs traffic", p.Service)
	}
	type key struct{ header, value string }
	seen := map[key]bool{}
	for i, m := range p.Matches {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("plan %s: matches[%d]: %w", p.Service, i, err)
		}
		k := key{m.Header, m.Value}
		if seen[k] {
			return fmt.Errorf("plan %s: matches[%d]: %s: %q is matched twice; keep one", p.Service, i, m.Header, m.Value)
		}
		seen[k] = true
	}
	if m := p.Mirror; m != nil {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("plan %s: mirror: %w", p.Service, err)
		}
		// The mirror copies the weighted route's requests: a subset that
		// serves some of them would get those requests twice, side effects
		// included.
		if weight[m.Subset] > 0 {
			return fmt.Errorf("plan %s: mirror: subset %q already has weight %d; mirror to a subset that gets no weighted traffic", p.Service, m.Subset, weight[m.Subset])
		}
	}
	return nil
}

// Validate reports what is wrong with a header route. The header name must
// be usable both as an HTTP/2 header and as gRPC metadata: lower case,
// [0-9a-z-_.], not reserved by gRPC ("grpc-") and not binary ("-bin", whose
// values are base64 on the wire and which gRPC-Go never matches).
func (m HeaderRoute) Validate() error {
	if err := checkHeaderName(m.Header); err != nil {
		return err
	}
	if m.Value == "" {
		return fmt.Errorf("header %s: value is empty; give the exact value to match", m.Header)
	}
	for _, c := range []byte(m.Value) {
		// Printable ASCII is what both HTTP/2 and gRPC metadata carry
		// verbatim.
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("header %s: value %q: only printable ASCII can be matched", m.Header, m.Value)
		}
	}
	if strings.TrimSpace(m.Value) != m.Value {
		// HTTP strips the spaces around a header value, so it would never match.
		return fmt.Errorf("header %s: value %q: leading or trailing spaces never match", m.Header, m.Value)
	}
	if m.Subset == "" {
		return fmt.Errorf("header %s: subset is empty; name the version subset that matching requests go to", m.Header)
	}
	return nil
}

// checkHeaderName says what is wrong with a header name, if anything.
func checkHeaderName(h string) error {
	if h == "" {
		return fmt.Errorf("header name is empty")
	}
	if h != strings.ToLower(h) {
		return fmt.Errorf("header %q: write it in lower case, as HTTP/2 and gRPC metadata do", h)
	}
	for _, c := range []byte(h) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("header %q: only a-z, 0-9, '-', '_' and '.' are allowed (gRPC metadata keys)", h)
		}
	}
	if strings.HasPrefix(h, "grpc-") {
		return fmt.Errorf("header %q: grpc- headers are reserved by gRPC", h)
	}
	if strings.HasSuffix(h, "-bin") {
		return fmt.Errorf("header %q: binary (-bin) metadata cannot be matched", h)
	}
	return nil
}

// MinMirrorPercent is the smallest share a mirror can copy: Envoy's
// fractions go down to a millionth.
const MinMirrorPercent = 0.0001

// Validate reports what is wrong with a mirror.
func (m Mirror) Validate() error {
	if m.Subset == "" {
		return fmt.Errorf("subset is empty; name the version subset to mirror to")
	}
	// Written so that NaN fails too.
	if !(m.Percent >= MinMirrorPercent && m.Percent <= 100) {
		return fmt.Errorf("percent %v: want more than 0 (at least %v) and at most 100", m.Percent, MinMirrorPercent)
	}
	return nil
}

// Normalized returns the plan with zero weights and a 0% mirror dropped,
// subsets and matches sorted and header names in lower case, so that plans
// that route identically compare equal. It shares no memory with p.
func (p Plan) Normalized() Plan {
	out := Plan{Service: p.Service}
	for _, w := range p.Weights {
		if w.Weight > 0 {
			out.Weights = append(out.Weights, w)
		}
	}
	slices.SortFunc(out.Weights, func(a, b SubsetWeight) int { return cmp.Compare(a.Subset, b.Subset) })
	for _, m := range p.Matches {
		m.Header = strings.ToLower(m.Header)
		out.Matches = append(out.Matches, m)
	}
	slices.SortFunc(out.Matches, func(a, b HeaderRoute) int {
		return cmp.Or(cmp.Compare(a.Header, b.Header), cmp.Compare(a.Value, b.Value), cmp.Compare(a.Subset, b.Subset))
	})
	out.Matches = slices.Compact(out.Matches)
	// A 0% mirror copies nothing (and NaN > 0 is false: dropped too).
	if m := p.Mirror; m != nil && m.Percent > 0 {
		c := *m
		out.Mirror = &c
	}
	return out
}

// Equal reports whether two plans route identically.
func (p Plan) Equal(q Plan) bool {
	a, b := p.Normalized(), q.Normalized()
	if a.Service != b.Service || !slices.Equal(a.Weights, b.Weights) || !slices.Equal(a.Matches, b.Matches) {
		return false
	}
	if a.Mirror == nil || b.Mirror == nil {
		return a.Mirror == b.Mirror
	}
	return *a.Mirror == *b.Mirror
}
