// Package notify posts release notifications to webhooks: one per entry the
// controller adds to a rollout's history (a phase change, a step, an
// operator's command, a decision of the analysis), as JSON or as a Slack
// message.
//
// Events turns a change of a rollout into notifications and does no I/O.
// A Notifier queues them per webhook without ever blocking its caller
// (a full queue drops, counting and logging it) and its Run delivers them in
// order, retrying network errors, 5xx and 429 with backoff.
package notify

import (
	"fmt"
	"strings"
	"time"

	"github.com/signalbox/signalbox/rollout"
)

// Event kinds, as rollout.Event.Kind spells them.
const (
	KindPhase    = "phase"
	KindStep     = "step"
	KindCommand  = "command"
	KindDecision = "decision"
)

// Notification is one history event of a rollout, with what a reader needs
// to place it. It is the body of a json webhook (with Text added).
type Notification struct {
	RolloutID string           `json:"rolloutId"`
	Service   string           `json:"service"`
	Strategy  rollout.Strategy `json:"strategy"`
	Baseline  string           `json:"baseline"`
	Candidate string           `json:"candidate"`
	// Kind is phase, step, command or decision.
	Kind string `json:"kind"`
	// From and To are the phase change (kind phase only).
	From rollout.Phase `json:"from,omitempty"`
	To   rollout.Phase `json:"to,omitempty"`
	// Phase is the rollout's phase once the event happened: To for a phase
	// change; for the others the phase they happened in (a command that
	// changes the phase is followed by its own phase event).
	Phase rollout.Phase `json:"phase"`
	Step  int           `json:"step"`
	// CandidateWeight is the candidate's share of user traffic, in percent,
	// once the event happened.
	CandidateWeight uint32 `json:"candidateWeight"`
	Reason          string `json:"reason"`
	// Actor is the operator behind a command, or behind a change a command
	// caused; empty for the controller's own moves.
	Actor string `json:"actor,omitempty"`
	// Stats are the analysis' figures behind a decision.
	Stats *rollout.Decision `json:"stats,omitempty"`
	At    time.Time         `json:"at"`
}

// Events are the notifications of a change of a rollout: one per history
// event new has beyond old's, in order. When old is another rollout (or
// the zero Rollout) every event of new is one. When new's history is
// shorter than old's (a stale write), there are none.
func Events(old, new rollout.Rollout) []Notification {
	from := 0
	if old.ID == new.ID {
		from = len(old.History)
	}
	if from >= len(new.History) {
		return nil
	}
	out := make([]Notification, 0, len(new.History)-from)
	// The phase an event happened in is the last phase change before it;
	// every rollout starts Pending.
	phase := rollout.Pending
	for i, e := range new.History {
		if e.Kind == KindPhase {
			phase = e.To
		}
		if i < from {
			continue
		}
		n := Notification{
			RolloutID: new.ID, Service: new.Spec.Service, Strategy: new.Spec.Strategy,
			Baseline: new.Spec.Baseline, Candidate: new.Spec.Candidate,
			Kind: e.Kind, From: e.From, To: e.To, Phase: phase, Step: e.Step, CandidateWeight: e.Weight,
			Reason: e.Reason, Actor: e.Actor, At: e.At,
		}
		if e.Stats != nil {
			d := *e.Stats
			n.Stats = &d
		}
		out = append(out, n)
	}
	return out
}

// Text is the notification as a one-line message, e.g.
//
//	:rewind: greeter.3 (v1 → v2) RollingBack at step 2 (0%): rollback: the candidate's errors are anomalous …
//	:warning: greeter.3 (v1 → v2) Progressing at step 2 (10%): the candidate's errors are anomalous …; candidate error rate 5.1% (51 of 1000) vs baseline 0.4% (4 of 1000)
//
// The leading emoji are Slack short names.
func (n Notification) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", n.emoji(), n.RolloutID)
	if n.Baseline != "" || n.Candidate != "" {
		fmt.Fprintf(&b, " (%s → %s)", n.Baseline, n.Candidate)
	}
	if n.Step == 0 {
		fmt.Fprintf(&b, " %s before step 1 (%d%%): ", n.Phase, n.CandidateWeight)
	} else {
		fmt.Fprintf(&b, " %s at step %d (%d%%): ", n.Phase, n.Step, n.CandidateWeight)
	}
	switch {
	case n.Kind == KindCommand && n.Actor != "":
		fmt.Fprintf(&b, "%s: %s", n.Actor, n.Reason)
	case n.Actor != "" && !strings.Contains(n.Reason, n.Actor):
		fmt.Fprintf(&b, "%s (by %s)", n.Reason, n.Actor)
	default:
		b.WriteString(n.Reason)
	}
	if n.Kind == KindDecision && n.Stats != nil {
		s := n.Stats.Stats
		fmt.Fprintf(&b, "; candidate error rate %s (%d of %d) vs baseline %s (%d of %d)",
			percent(s.CandidateErrorRate), s.Candidate.Errors, s.Candidate.Requests,
			percent(s.BaselineErrorRate), s.Baseline.Errors, s.Baseline.Requests)
	}
	return b.String()
}

func percent(rate float64) string { return fmt.Sprintf("%.3g%%", 100*rate) }

func (n Notification) emoji() string {
	switch n.Kind {
	case KindStep:
		return ":arrow_right:"
	case KindCommand:
		return ":bust_in_silhouette:"
	case KindDecision:
		if n.Stats != nil && n.Stats.Verdict == rollout.VerdictFail {
			return ":warning:"
		}
		return ":heavy_check_mark:"
	}
	switch n.To {
	case rollout.Progressing:
		switch n.From {
		case rollout.Pending:
			return ":rocket:"
		case rollout.RolledBack, rollout.Aborted, rollout.Failed:
			return ":repeat:"
		}
		return ":arrow_forward:"
	case rollout.Paused:
		return ":double_vertical_bar:"
	case rollout.Promoting:
		return ":arrow_double_up:"
	case rollout.Succeeded:
		return ":white_check_mark:"
	case rollout.RollingBack:
		return ":rewind:"
	case rollout.RolledBack:
		return ":leftwards_arrow_with_hook:"
	case rollout.Aborted:
		return ":octagonal_sign:"
	case rollout.Failed:
		return ":x:"
	}
	return ":information_source:"
}
