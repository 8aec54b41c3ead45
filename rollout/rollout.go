package rollout

import (
	"errors"
	"fmt"
	"time"
)

// Phase is where a rollout stands.
type Phase string

const (
	Pending     Phase = "Pending"
	Progressing Phase = "Progressing"
	Paused      Phase = "Paused"
	Promoting   Phase = "Promoting"
	Succeeded   Phase = "Succeeded"
	RollingBack Phase = "RollingBack"
	RolledBack  Phase = "RolledBack"
	Aborted     Phase = "Aborted"
	Failed      Phase = "Failed"
)

// Terminal reports whether a rollout in this phase is over: it no longer
// moves by itself, and a new rollout of the service may start.
func (p Phase) Terminal() bool {
	switch p {
	case Succeeded, RolledBack, Aborted, Failed:
		return true
	}
	return false
}

// Transition is one allowed phase change and what causes it.
type Transition struct {
	From, To Phase
	Why      string
}

// Transitions is the whole state machine, the table the docs show. Step
// never moves between phases along a pair missing from it (tested).
func Transitions() []Transition {
	return []Transition{
		{Pending, Progressing, "the rollout starts: the first step (or the mirror) begins"},
		{Progressing, Progressing, "a step's hold passed with enough requests and no anomaly: the next step"},
		{Progressing, Paused, "an operator paused; a manual gate before the next step; too little traffic for noDataTimeout"},
		{Paused, Progressing, "an operator resumed, or promoted past a gate"},
		{Progressing, Promoting, "the last step passed (blue-green: the preview passed); or an operator promoted"},
		{Paused, Promoting, "an operator promoted"},
		{Promoting, Succeeded, "the traffic is on the candidate (blue-green: the post-promotion window ended clean, or an operator promoted)"},
		{Progressing, RollingBack, "the analysis found the candidate worse than the baseline, or past a guard"},
		{Paused, RollingBack, "the analysis found the candidate worse while paused (it still takes traffic)"},
		{Promoting, RollingBack, "an anomaly in the post-promotion window (blue-green): switch straight back"},
		{RollingBack, RolledBack, "the traffic is back on the baseline"},
		{Pending, Aborted, "an operator aborted"},
		{Progressing, Aborted, "an operator aborted"},
		{Paused, Aborted, "an operator aborted"},
		{Promoting, Aborted, "an operator aborted"},
		{RollingBack, Aborted, "an operator aborted"},
		{Pending, Failed, "the baseline or the candidate has no instances in Consul"},
		{Progressing, Failed, "the baseline or the candidate has no instances in Consul"},
		{Paused, Failed, "the baseline or the candidate has no instances in Consul"},
		{Promoting, Failed, "the baseline or the candidate has no instances in Consul"},
		{RolledBack, Progressing, "an operator retried"},
		{Aborted, Progressing, "an operator retried"},
		{Failed, Progressing, "an operator retried"},
	}
}

// Rollout is a release and everything that happened to it. It is the
// value persisted in Consul KV; Step derives the next one.
type Rollout struct {
	ID    string `json:"id"`
	Spec  Spec   `json:"spec"`
	Phase Phase  `json:"phase"`
	// Step is 0 before the first step (or while mirroring), 1..n for the
	// canary steps, n+1 for the promotion; blue-green: 1 preview, 2 switched.
	Step int `json:"step"`
	// Mirroring is true during the mirror hold before step 1.
	Mirroring bool `json:"mirroring,omitempty"`
	// AtGate is true while paused before a gated step: only promote passes.
	AtGate        bool      `json:"atGate,omitempty"`
	StepStartedAt time.Time `json:"stepStartedAt"`
	// StepRequests are the candidate's requests seen in this step.
	StepRequests uint64 `json:"stepRequests"`
	Reason       string `json:"reason,omitempty"`
	// Analysis is the sequential test's state, carried across looks and
	// restarts.
	Analysis AnalysisState `json:"analysis"`
	History  []Event       `json:"history"`
	// HistoryDropped counts the oldest events left out of History to keep
	// it within MaxHistory (the first two, creation and start, stay).
	HistoryDropped int       `json:"historyDropped,omitempty"`
	CreatedAt      time.Time `json:"createdAt"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// Event is one entry of a rollout's history: a phase change, a step, a
// command, or a decision of the analysis.
type Event struct {
	At     time.Time `json:"at"`
	Kind   string    `json:"kind"` // phase, step, command, decision
	From   Phase     `json:"from,omitempty"`
	To     Phase     `json:"to,omitempty"`
	Step   int       `json:"step"`
	Weight uint32    `json:"candidateWeight"`
	Actor  string    `json:"actor,omitempty"`
	Reason string    `json:"reason"`
	// Stats are the analysis' figures behind a decision.
	Stats *Decision `json:"stats,omitempty"`
}

// VersionSample is one version's requests since the previous look.
type VersionSample struct {
	Requests uint64  `json:"requests"`
	Errors   uint64  `json:"errors"`
	P99Ms    float64 `json:"p99Ms,omitempty"`
	// P99Requests is how many requests P99Ms summarises (its window's, not
	// this look's): the latency guard judges only well-founded p99s.
	P99Requests uint64 `json:"p99Requests,omitempty"`
}

// Sample is what the controller saw since its previous look.
type Sample struct {
	Baseline  VersionSample `json:"baseline"`
	Candidate VersionSample `json:"candidate"`
}

// Command is an operator's request.
type Command struct {
	Kind   string `json:"kind"` // pause, resume, promote, abort, retry
	Actor  string `json:"actor"`
	Reason string `json:"reason,omitempty"`
}

// Command kinds.
const (
	CmdPause   = "pause"
	CmdResume  = "resume"
	CmdPromote = "promote"
	CmdAbort   = "abort"
	CmdRetry   = "retry"
)

// Observation is the input of one Step: a look at the traffic, an
// operator's command, or what Consul says is missing. Any may be empty.
type Observation struct {
	Sample  *Sample
	Command *Command
	// Missing names a version with no instances in Consul ("" when both
	// are there).
	Missing string
}

// Errors that callers (the API) map to answers: wrapped, they say what to
// fix.
var (
	// ErrNotFound: no such rollout, service or version (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request clashes with the rollout's state, e.g. a
	// second active rollout of a service, or resume while progressing (409).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the spec or command is malformed (400).
	ErrInvalid = errors.New("invalid")
	// ErrUnavailable: signalbox cannot answer yet (it has not read Consul's
	// catalog) (503).
	ErrUnavailable = errors.New("unavailable")
)

// ConflictError is a command the rollout's phase does not allow.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// Unwrap makes a ConflictError an ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// New makes a pending rollout from a spec, with defaults filled in. It does
// not validate: call Spec.Validate first.
func New(id string, spec Spec, now time.Time) Rollout {
	return Rollout{ID: id, Spec: spec.WithDefaults(), Phase: Pending, CreatedAt: now, UpdatedAt: now, History: []Event{}}
}

// Step moves a rollout on: it applies the command, then the look at the
// traffic, then the clock. It does no I/O and reads no clock; the plan it
// returns is PlanOf the new state (nil: no plan, traffic spreads over every
// instance). A command the phase does not allow returns a *ConflictError
// and the rollout unchanged.
func Step(r Rollout, o Observation, now time.Time) (next Rollout, plan *Plan, err error) {
	r.History = append([]Event(nil), r.History...)
	defer func() { next.trimHistory() }()
	if o.Command != nil {
		if r, err = r.command(*o.Command, now); err != nil {
			return r, PlanOf(r), err
		}
	}
	if o.Missing != "" && !r.Phase.Terminal() {
		r.moveTo(Failed, now, "", fmt.Sprintf("version %q of %s has no instances in Consul: traffic spreads over every instance until it is back and the rollout retried", o.Missing, r.Spec.Service))
		return r, PlanOf(r), nil
	}
	switch r.Phase {
	case Pending:
		r.start(now, "")
	case RollingBack:
		r.moveTo(RolledBack, now, "", "traffic is back on "+r.Spec.Baseline)
	case Promoting:
		if r.Spec.Strategy == Canary {
			r.moveTo(Succeeded, now, "", "traffic is on "+r.Spec.Candidate)
		}
	}
	if o.Sample != nil && r.judging() {
		r.look(*o.Sample, now)
	}
	r.tick(now)
	r.UpdatedAt = now
	return r, PlanOf(r), nil
}

// Limits that keep a stored rollout far below Consul's 512 KiB value limit,
// however many commands it takes: past it, no write (not even a rollback)
// would fit.
const (
	// MaxHistory is how many events a rollout keeps.
	MaxHistory = 100
	// MaxReasonBytes is the longest reason a command may give.
	MaxReasonBytes = 256
)

// trimHistory drops the oldest events past MaxHistory, keeping the first
// two (creation and start), and counts them.
func (r *Rollout) trimHistory() {
	const keep = 2
	if len(r.History) <= MaxHistory {
		return
	}
	drop := len(r.History) - MaxHistory
	r.HistoryDropped += drop
	r.History = append(r.History[:keep:keep], r.History[keep+drop:]...)
}

// judging: the candidate takes traffic the analysis can compare.
func (r *Rollout) judging() bool {
	switch r.Phase {
	case Progressing, Paused:
		return !r.Mirroring && r.Step >= 1
	case Promoting:
		return r.Spec.Strategy == BlueGreen
	}
	return false
}

func (r *Rollout) start(now time.Time, actor string) {
	r.Analysis = AnalysisState{}
	r.StepRequests, r.AtGate = 0, false
	r.Mirroring = r.Spec.Strategy == Canary && r.Spec.MirrorPercent > 0
	r.Step = 1
	why := "step 1 starts"
	if r.Mirroring {
		r.Step = 0
		why = fmt.Sprintf("mirroring %.3g%% of the traffic to %s for %v before step 1", r.Spec.MirrorPercent, r.Spec.Candidate, r.Spec.StepInterval.D())
	} else if r.Spec.Strategy == BlueGreen {
		why = fmt.Sprintf("preview: only requests with %q reach %s", r.Spec.PreviewHeader, r.Spec.Candidate)
	}
	gateFirst := r.Spec.Strategy == Canary && !r.Mirroring && r.gated(1)
	if gateFirst {
		r.Step = 0
		why = fmt.Sprintf("started: %s takes no traffic before the gate", r.Spec.Candidate)
	}
	r.StepStartedAt = now
	r.moveTo(Progressing, now, actor, why)
	if gateFirst {
		// A gate before step 1 holds even the first weight (advance checks
		// the others, and this one after mirroring).
		r.AtGate = true
		r.moveTo(Paused, now, "", "manual gate before step 1: promote to continue")
	}
}

// command applies an operator's request.
func (r Rollout) command(c Command, now time.Time) (Rollout, error) {
	conflict := func(format string, a ...any) (Rollout, error) {
		return r, &ConflictError{Msg: fmt.Sprintf("rollout %s is %s: ", r.ID, r.Phase) + fmt.Sprintf(format, a...)}
	}
	if len(c.Reason) > MaxReasonBytes {
		return r, fmt.Errorf("%w: the reason is %d bytes long: give at most %d", ErrInvalid, len(c.Reason), MaxReasonBytes)
	}
	r.History = append(r.History, Event{At: now, Kind: "command", Step: r.Step, Weight: r.candidateWeight(), Actor: c.Actor, Reason: c.Kind + reasonSuffix(c.Reason)})
	switch c.Kind {
	case CmdPause:
		if r.Phase != Progressing {
			return conflict("only a progressing rollout can be paused")
		}
		r.moveTo(Paused, now, c.Actor, "paused by "+c.Actor+reasonSuffix(c.Reason))
	case CmdResume:
		if r.Phase != Paused {
			return conflict("only a paused rollout can be resumed")
		}
		if r.AtGate {
			return conflict("it waits at the gate before step %d: promote to pass it", r.Step+1)
		}
		r.StepStartedAt, r.StepRequests = now, 0
		r.moveTo(Progressing, now, c.Actor, fmt.Sprintf("resumed by %s: step %d's hold starts again", c.Actor, r.Step))
	case CmdPromote:
		switch {
		case r.Phase == Paused && r.AtGate:
			r.AtGate = false
			r.advance(now, c.Actor, true)
		case r.Phase == Progressing || r.Phase == Paused:
			r.promote(now, c.Actor, "promoted by "+c.Actor+reasonSuffix(c.Reason))
		case r.Phase == Promoting && r.Spec.Strategy == BlueGreen:
			r.moveTo(Succeeded, now, c.Actor, "post-promotion window ended early by "+c.Actor)
		default:
			return conflict("only a progressing or paused rollout can be promoted")
		}
	case CmdAbort:
		if r.Phase.Terminal() {
			return conflict("it is over already")
		}
		r.moveTo(Aborted, now, c.Actor, "aborted by "+c.Actor+reasonSuffix(c.Reason)+": traffic back on "+r.Spec.Baseline)
	case CmdRetry:
		if r.Phase != RolledBack && r.Phase != Aborted && r.Phase != Failed {
			return conflict("only a rolled back, aborted or failed rollout can be retried")
		}
		r.start(now, c.Actor)
	default:
		r.History = r.History[:len(r.History)-1]
		return r, fmt.Errorf("%w: unknown command %q: want pause, resume, promote, abort or retry", ErrInvalid, c.Kind)
	}
	return r, nil
}

func reasonSuffix(why string) string {
	if why == "" {
		return ""
	}
	return " (" + why + ")"
}

// look feeds the traffic since the previous look to the analysis.
func (r *Rollout) look(s Sample, now time.Time) {
	r.StepRequests += s.Candidate.Requests
	d := r.Analysis.Observe(s, r.Spec.judged())
	if d.Verdict != VerdictFail {
		return
	}
	r.History = append(r.History, Event{At: now, Kind: "decision", Step: r.Step, Weight: r.candidateWeight(), Reason: d.Reason, Stats: &d})
	why := "rollback: " + d.Reason
	if r.Phase == Promoting {
		why = "switched back to " + r.Spec.Baseline + ": " + d.Reason
	}
	r.moveTo(RollingBack, now, "", why)
}

// tick moves on what the clock decides: a step's hold, the no-data
// timeout, the end of the post-promotion window.
func (r *Rollout) tick(now time.Time) {
	held := now.Sub(r.StepStartedAt)
	switch r.Phase {
	case Progressing:
		if r.Mirroring {
			if held >= r.Spec.StepInterval.D() {
				r.advance(now, "", false)
			}
			return
		}
		enough := r.StepRequests >= r.Spec.Analysis.MinRequests
		switch {
		case held >= r.Spec.StepInterval.D() && enough:
			d := r.Analysis.Summary(r.Spec.judged())
			r.History = append(r.History, Event{At: now, Kind: "decision", Step: r.Step, Weight: r.candidateWeight(),
				Reason: fmt.Sprintf("step %d passed: %d candidate requests in %v, no anomaly", r.Step, r.StepRequests, held.Round(time.Second)), Stats: &d})
			r.advance(now, "", false)
		case held >= r.Spec.StepInterval.D() && held >= r.Spec.Analysis.NoDataTimeout.D():
			r.moveTo(Paused, now, "", fmt.Sprintf("too little traffic to judge: %d of %d candidate requests in %v; resume to wait again, promote or abort",
				r.StepRequests, r.Spec.Analysis.MinRequests, held.Round(time.Second)))
		}
	case Promoting:
		if r.Spec.Strategy == BlueGreen && held >= r.Spec.PostPromotionWindow.D() {
			r.moveTo(Succeeded, now, "", fmt.Sprintf("post-promotion window of %v ended with no anomaly", r.Spec.PostPromotionWindow.D()))
		}
	}
}

// advance starts the next step, or stops at its gate. passGate is true
// when an operator promoted past the gate.
func (r *Rollout) advance(now time.Time, actor string, passGate bool) {
	next := r.Step + 1
	if r.Mirroring {
		next = 1
	}
	if !passGate && r.gated(next) {
		r.AtGate = true
		r.moveTo(Paused, now, "", fmt.Sprintf("manual gate before step %d: promote to continue", next))
		return
	}
	r.AtGate, r.Mirroring = false, false
	if next >= r.Spec.lastStep() {
		r.promote(now, actor, "")
		return
	}
	r.Step, r.StepStartedAt, r.StepRequests = next, now, 0
	why := fmt.Sprintf("step %d: %d%% of the traffic to %s", next, r.candidateWeight(), r.Spec.Candidate)
	r.History = append(r.History, Event{At: now, Kind: "step", Step: next, Weight: r.candidateWeight(), Actor: actor, Reason: why})
	if r.Phase != Progressing {
		r.moveTo(Progressing, now, actor, why)
	}
	r.Reason = why
}

func (r *Rollout) gated(step int) bool {
	for _, g := range r.Spec.Gates {
		if g == step {
			return true
		}
	}
	return false
}

func (r *Rollout) promote(now time.Time, actor, why string) {
	r.Step, r.StepStartedAt, r.StepRequests, r.AtGate, r.Mirroring = r.Spec.lastStep(), now, 0, false, false
	if why == "" {
		why = "all steps passed: 100% of the traffic to " + r.Spec.Candidate
	}
	if r.Spec.Strategy == BlueGreen {
		why += fmt.Sprintf("; switched to %s, watching for %v", r.Spec.Candidate, r.Spec.PostPromotionWindow.D())
		// The post-promotion judgement compares the candidate with what
		// the baseline did before the switch.
		r.Analysis.Switched(r.Spec.Analysis.Alpha / 2)
	}
	r.moveTo(Promoting, now, actor, why)
}

func (r *Rollout) moveTo(to Phase, now time.Time, actor, why string) {
	r.History = append(r.History, Event{At: now, Kind: "phase", From: r.Phase, To: to, Step: r.Step, Weight: r.candidateWeightIn(to), Actor: actor, Reason: why})
	r.Phase, r.Reason = to, why
}

func (r *Rollout) candidateWeight() uint32 { return r.candidateWeightIn(r.Phase) }

// CandidateWeight is the candidate's share of user traffic, in percent, in
// the plan the rollout serves (header matches and a mirror aside).
func (r Rollout) CandidateWeight() uint32 { return r.candidateWeightIn(r.Phase) }

// candidateWeightIn is the candidate's share of user traffic in a phase.
func (r *Rollout) candidateWeightIn(p Phase) uint32 {
	switch p {
	case Pending, RollingBack, RolledBack, Aborted, Failed:
		return 0
	case Promoting, Succeeded:
		return 100
	}
	if r.Spec.Strategy == BlueGreen || r.Step < 1 || r.Mirroring {
		return 0
	}
	if r.Step > len(r.Spec.Steps) {
		return 100
	}
	return r.Spec.Steps[r.Step-1]
}

// PlanOf is the routing a rollout asks for; nil means no plan (the service's
// traffic spreads over every instance).
func PlanOf(r Rollout) *Plan {
	s := r.Spec
	if r.Phase == Failed {
		return nil
	}
	w := r.candidateWeight()
	p := &Plan{Service: s.Service, Weights: []SubsetWeight{{Subset: s.Baseline, Weight: 100 - w}, {Subset: s.Candidate, Weight: w}}}
	switch {
	case r.Phase == Pending || r.Phase.Terminal() && r.Phase != Succeeded:
		p.Weights = []SubsetWeight{{Subset: s.Baseline, Weight: 100}}
	case r.Phase == Succeeded:
		p.Weights = []SubsetWeight{{Subset: s.Candidate, Weight: 100}}
	case r.Phase == RollingBack:
		p.Weights = []SubsetWeight{{Subset: s.Baseline, Weight: 100}, {Subset: s.Candidate, Weight: 0}}
	case s.Strategy == BlueGreen && r.Phase == Promoting:
		// The old version stays routable (its cluster warm) until the
		// window ends, so switching back is instant.
		p.Weights = []SubsetWeight{{Subset: s.Baseline, Weight: 0}, {Subset: s.Candidate, Weight: 100}}
	case s.Strategy == BlueGreen:
		name, value, _ := ParseHeader(s.PreviewHeader)
		p.Matches = []HeaderRoute{{Header: name, Value: value, Subset: s.Candidate}}
	default:
		for _, m := range s.Matches {
			p.Matches = append(p.Matches, HeaderRoute{Header: m.Header, Value: m.Value, Subset: s.Candidate})
		}
		if r.Mirroring {
			p.Mirror = &Mirror{Subset: s.Candidate, Percent: s.MirrorPercent}
		}
	}
	return p
}
