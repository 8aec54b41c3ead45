package topology

import (
	"fmt"
	"time"
)

// Counts are a version's requests over a window.
type Counts struct {
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
	// P99Ms is the 99th percentile latency, 0 without requests.
	P99Ms float64 `json:"p99Ms"`
}

// ErrorRate is Errors/Requests, 0 without requests.
func (c Counts) ErrorRate() float64 {
	if c.Requests == 0 {
		return 0
	}
	return float64(c.Errors) / float64(c.Requests)
}

// VersionCounts are a service's requests per version subset over a window,
// from both sides. A version the callers reached without a subset (the
// route had no plan) counts under "".
type VersionCounts struct {
	Service string `json:"service"`
	Window  string `json:"window"`
	// Callers: what the callers saw, from the edges into the service (each
	// request once, mostly from the callers' sidecars).
	Callers map[string]Counts `json:"callers"`
	// Self: what the service's own sidecars (inbound logs) or server spans
	// saw arriving.
	Self map[string]Counts `json:"self"`
}

// VersionCounts answers the release analysis: a service's requests and
// errors per version over the window ending at now.
func (s *Store) VersionCounts(service string, now time.Time, window time.Duration) (VersionCounts, error) {
	if service == "" {
		return VersionCounts{}, fmt.Errorf("topology: version counts: no service named")
	}
	if window <= 0 {
		return VersionCounts{}, fmt.Errorf("topology: version counts: window %v: must be positive", window)
	}
	first, last, n := s.span(now, window)
	vc := VersionCounts{
		Service: service,
		Window:  (time.Duration(n) * s.opts.Bucket).String(),
		Callers: s.countInto(&s.edges, service, first, last, n),
		Self:    s.countInto(&s.served, service, first, last, n),
	}
	return vc, nil
}

// countInto sums the series into service over the window of n buckets
// [first, last], by target version.
func (s *Store) countInto(r *rings, service string, first, last, n int64) map[string]Counts {
	by := map[string]*sums{}
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for k, se := range sh.series {
			if k.Target.Service != service || se.lastSeen < first {
				continue
			}
			closed, open := se.closed(n, last), se.at(last)
			if (closed == nil || closed.requests() == 0) && open == nil {
				continue
			}
			a := by[k.Target.Version]
			if a == nil {
				a = &sums{}
				by[k.Target.Version] = a
			}
			if closed != nil {
				a.addSums(closed)
			}
			if open != nil {
				a.addBucket(open)
			}
		}
		sh.mu.Unlock()
	}
	out := make(map[string]Counts, len(by))
	var p99 [1]float64
	for v, a := range by {
		c := Counts{Requests: a.requests(), Errors: a.errors}
		if c.Requests > 0 {
			s.lm.quantiles(p99[:], []float64{0.99}, c.Requests, &a.lat, nil)
			c.P99Ms = p99[0]
		}
		out[v] = c
	}
	return out
}

// VersionTotals are a service's requests and errors per version since the
// store first saw them, from both sides: monotonic, so that the release
// controller can take exact increments between looks whatever the bucket
// boundaries. (P99Ms is not set: latency comes from VersionCounts.) A
// series that expired and came back starts again from zero.
func (s *Store) VersionTotals(service string) (callers, self map[string]Counts) {
	sum := func(r *rings) map[string]Counts {
		out := map[string]Counts{}
		for i := range r.shards {
			sh := &r.shards[i]
			sh.mu.Lock()
			for k, se := range sh.series {
				if k.Target.Service != service {
					continue
				}
				c := out[k.Target.Version]
				c.Requests += se.totals.Requests
				c.Errors += se.totals.Errors
				out[k.Target.Version] = c
			}
			sh.mu.Unlock()
		}
		return out
	}
	return sum(&s.edges), sum(&s.served)
}
