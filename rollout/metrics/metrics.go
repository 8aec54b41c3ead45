// Package metrics exports Prometheus metrics of rollouts: how many stand in
// each phase, each active rollout's candidate weight, and counters of the
// analysis' decisions, of rollbacks and of phase transitions.
//
// Set takes the rollouts as they stand on start; Observe follows every
// write after that (controller.Options.OnChange); Refresh keeps the gauges
// in step with what other replicas write. The counters count the history
// events a Metrics has not seen yet, so a write observed twice, or a
// history Set already showed, is not counted again.
package metrics

import (
	"maps"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalbox/signalbox/rollout"
)

// Verdict label values of signalbox_rollout_decisions_total.
const (
	// VerdictPass: a step's hold passed with enough requests and no anomaly.
	VerdictPass = "pass"
	// VerdictFail: the analysis found the candidate worse than the
	// baseline, or past a guard, and rolled it back.
	VerdictFail = "fail"
)

// Metrics are the rollout metrics. It is safe for concurrent use.
type Metrics struct {
	rollouts    *prometheus.GaugeVec
	weight      *prometheus.GaugeVec
	decisions   *prometheus.CounterVec
	rollbacks   *prometheus.CounterVec
	transitions *prometheus.CounterVec

	mu sync.Mutex
	// current is each service's rollout as the gauges show it.
	current map[string]rollout.Rollout
	// counted is each service's rollout as far as the counters counted it
	// (Set and Observe; not Refresh, which may read a write before the
	// Observe of it, which must still count its events).
	counted map[string]rollout.Rollout
}

// phases are every phase of the state machine, so that each has a series
// from the start.
func phases() []rollout.Phase {
	seen := map[rollout.Phase]bool{}
	var out []rollout.Phase
	for _, t := range rollout.Transitions() {
		for _, p := range []rollout.Phase{t.From, t.To} {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// New makes the metrics and registers them with reg (none when reg is
// nil). It panics if reg already holds them: one Metrics per registry.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rollouts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signalbox_rollouts",
			Help: "Rollouts by phase: each service's current rollout (active, or the last one ended).",
		}, []string{"phase"}),
		weight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "signalbox_rollout_candidate_weight",
			Help: "Percent of a service's user traffic the candidate of its active rollout gets; no series once the rollout ends.",
		}, []string{"service", "rollout"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalbox_rollout_decisions_total",
			Help: "Decisions of the analysis: pass (a step's hold passed) or fail (the candidate was rolled back).",
		}, []string{"service", "verdict"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalbox_rollout_rollbacks_total",
			Help: "Rollbacks started (moves to RollingBack): the analysis found the candidate worse, or past a guard.",
		}, []string{"service"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signalbox_rollout_phase_transitions_total",
			Help: "Phase changes of rollouts.",
		}, []string{"from", "to"}),
		current: map[string]rollout.Rollout{},
		counted: map[string]rollout.Rollout{},
	}
	for _, p := range phases() {
		m.rollouts.WithLabelValues(string(p))
	}
	for _, t := range rollout.Transitions() {
		m.transitions.WithLabelValues(string(t.From), string(t.To))
	}
	if reg != nil {
		reg.MustRegister(m.rollouts, m.weight, m.decisions, m.rollbacks, m.transitions)
	}
	return m
}

// Set takes the rollouts as they stand, e.g. on start: for each service its
// newest rollout by CreatedAt (older ones, archived, may be passed too).
// It sets the gauges from them alone and counts nothing: their history
// happened before.
func (m *Metrics) Set(all []rollout.Rollout) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setGauges(all)
	m.counted = maps.Clone(m.current)
}

// Refresh sets the gauges from the rollouts as they stand (as Set does),
// for a replica that did not write them, and leaves the counters alone.
func (m *Metrics) Refresh(all []rollout.Rollout) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setGauges(all)
}

// setGauges shows each service's newest rollout of all.
func (m *Metrics) setGauges(all []rollout.Rollout) {
	m.current = map[string]rollout.Rollout{}
	for _, r := range all {
		if cur, ok := m.current[r.Spec.Service]; !ok || newer(r, cur) {
			m.current[r.Spec.Service] = r
		}
	}
	m.weight.Reset()
	for _, r := range m.current {
		m.setWeight(r)
	}
	m.setPhases()
}

// Observe follows one write of a rollout: it counts the history events new
// has beyond both old's and what this Metrics saw of it last, and updates
// the gauges. A write older than the last one seen of its service (a
// shorter history, or an older rollout) changes nothing.
func (m *Metrics) Observe(old, new rollout.Rollout) {
	m.mu.Lock()
	defer m.mu.Unlock()
	svc := new.Spec.Service
	from := 0
	if old.ID == new.ID {
		from = len(old.History)
	}
	prev, known := m.counted[svc]
	switch {
	case known && prev.ID == new.ID:
		if len(new.History) < len(prev.History) {
			return // stale
		}
		from = max(from, len(prev.History))
	case known && newer(prev, new):
		return // an older rollout of the service
	}
	for _, e := range new.History[min(from, len(new.History)):] {
		switch e.Kind {
		case "phase":
			m.transitions.WithLabelValues(string(e.From), string(e.To)).Inc()
			if e.To == rollout.RollingBack {
				m.rollbacks.WithLabelValues(svc).Inc()
			}
		case "decision":
			m.decisions.WithLabelValues(svc, verdict(e)).Inc()
		}
	}
	m.counted[svc] = new
	// The gauges, unless a refresh already shows something newer.
	if cur, ok := m.current[svc]; ok && (newer(cur, new) || cur.ID == new.ID && len(cur.History) > len(new.History)) {
		return
	}
	if cur, ok := m.current[svc]; ok && cur.ID != new.ID {
		m.weight.DeleteLabelValues(svc, cur.ID) // replaced
	}
	m.current[svc] = new
	m.setWeight(new)
	m.setPhases()
}

// verdict labels a decision event. The history records two kinds: the
// analysis failing the candidate (Stats.Verdict fail), and a step's hold
// passing. The latter's Stats are a summary whose own Verdict is not a
// pass (a look with no new requests says insufficientData), so only fail
// is read from Stats.
func verdict(e rollout.Event) string {
	if e.Stats != nil && e.Stats.Verdict == rollout.VerdictFail {
		return VerdictFail
	}
	return VerdictPass
}

// newer reports whether a is a later rollout than b.
func newer(a, b rollout.Rollout) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return a.CreatedAt.After(b.CreatedAt)
	}
	return a.UpdatedAt.After(b.UpdatedAt)
}

// setWeight sets an active rollout's weight series, or removes an ended
// one's.
func (m *Metrics) setWeight(r rollout.Rollout) {
	if r.Phase.Terminal() {
		m.weight.DeleteLabelValues(r.Spec.Service, r.ID)
		return
	}
	m.weight.WithLabelValues(r.Spec.Service, r.ID).Set(float64(r.CandidateWeight()))
}

// setPhases counts the current rollouts by phase.
func (m *Metrics) setPhases() {
	n := map[rollout.Phase]int{}
	for _, p := range phases() {
		n[p] = 0
	}
	for _, r := range m.current {
		n[r.Phase]++
	}
	for p, c := range n {
		m.rollouts.WithLabelValues(string(p)).Set(float64(c))
	}
}
