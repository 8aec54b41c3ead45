package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/rollout"
)

// consulCatalog reads versions straight from the agent's catalog.
type consulCatalog struct{ c *api.Client }

func (k consulCatalog) Versions(service string) (map[string]int, bool) {
	svcs, _, err := k.c.Catalog().Service(service, "", nil)
	if err != nil {
		return nil, false
	}
	out := map[string]int{}
	for _, s := range svcs {
		out[s.ServiceMeta["version"]]++
	}
	return out, true
}

// traffic stands in for the live graph: every look at it finds perLook
// more requests, spread by the weights last served, with the given error
// rates per version (deterministic: errors are spread evenly).
type traffic struct {
	mu      sync.Mutex
	perLook uint64
	errRate map[string]float64
	weights map[string]uint32
	totals  map[string]Counts
	carry   map[string]float64
}

func newTraffic(perLook uint64, errRate map[string]float64) *traffic {
	return &traffic{perLook: perLook, errRate: errRate, weights: map[string]uint32{}, totals: map[string]Counts{}, carry: map[string]float64{}}
}

func (t *traffic) serve(w map[string]uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.weights = w
}

func (t *traffic) Totals(string) (callers, self map[string]Counts) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for v, w := range t.weights {
		n := t.perLook * uint64(w) / 100
		c := t.totals[v]
		c.Requests += n
		t.carry[v] += float64(n) * t.errRate[v]
		e := uint64(t.carry[v])
		t.carry[v] -= float64(e)
		c.Errors += e
		t.totals[v] = c
	}
	out := make(map[string]Counts, len(t.totals))
	for v, c := range t.totals {
		out[v] = c
	}
	return out, map[string]Counts{}
}

func (t *traffic) P99(string, time.Duration) map[string]WindowP99 { return nil }

// plans records every plan set handed to xds.
type plans struct {
	mu   sync.Mutex
	seen []map[string]uint32 // candidate service's weights, in order
	tr   *traffic
}

func (p *plans) set(all map[string]rollout.Plan) {
	w := map[string]uint32{}
	if pl, ok := all["greeter"]; ok {
		for _, sw := range pl.Normalized().Weights {
			w[sw.Subset] = sw.Weight
		}
	} else {
		w = map[string]uint32{"v1": 50, "v2": 50} // no plan: spread over every instance
	}
	p.mu.Lock()
	p.seen = append(p.seen, w)
	p.mu.Unlock()
	if p.tr != nil {
		p.tr.serve(w)
	}
}

func (p *plans) candidateWeights() []uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []uint32
	for _, w := range p.seen {
		if len(out) == 0 || out[len(out)-1] != w["v2"] {
			out = append(out, w["v2"])
		}
	}
	return out
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func register(t *testing.T, a *consultest.Agent) {
	for _, v := range []string{"v1", "v2"} {
		a.RegisterInstance(t, consultest.Instance{Service: "greeter", ID: "greeter-" + v, Address: "127.0.0.1", Port: 9000, Meta: map[string]string{"version": v}})
	}
}

type rig struct {
	ctl    *Controller
	plans  *plans
	cancel context.CancelFunc
	done   chan error
	reads  atomic.Int64 // OnRead calls
}

func start(t *testing.T, a *consultest.Agent, tr *traffic, id string) *rig {
	t.Helper()
	p := &plans{tr: tr}
	r := &rig{plans: p, done: make(chan error, 1)}
	ctl := New(Options{
		Client: a.Client(), Counts: tr, Catalog: consulCatalog{a.Client()}, Plans: p.set,
		Interval: 20 * time.Millisecond, LockWait: 200 * time.Millisecond, ReplicaID: id,
		Logger: testLogger(t).With("replica", id),
		OnRead: func() { r.reads.Add(1) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.ctl, r.cancel = ctl, cancel
	go func() { r.done <- ctl.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func spec() rollout.Spec {
	return rollout.Spec{Service: "greeter", Baseline: "v1", Candidate: "v2", Steps: []uint32{10, 50},
		StepInterval: rollout.Duration(time.Second), Analysis: rollout.AnalysisSpec{MinRequests: 50}}
}

func waitPhase(t *testing.T, ctl *Controller, id string, within time.Duration, want ...rollout.Phase) rollout.Rollout {
	t.Helper()
	var r rollout.Rollout
	eventually(t, within, fmt.Sprintf("%s reaches %v", id, want), func() bool {
		var err error
		if r, err = ctl.Get(context.Background(), id); err != nil {
			return false
		}
		for _, p := range want {
			if r.Phase == p {
				return true
			}
		}
		return false
	})
	return r
}

func TestCreateRefusesWhatCannotBeReleased(t *testing.T) {
	a := consultest.Start(t)
	register(t, a)
	r := start(t, a, newTraffic(0, nil), "a")
	ctx := context.Background()
	eventually(t, 10*time.Second, "the controller reads KV", func() bool {
		select {
		case <-r.ctl.Loaded():
			return true
		default:
			return false
		}
	})
	cases := []struct {
		name string
		mod  func(*rollout.Spec)
		want error
		says string
	}{
		{"unknown service", func(s *rollout.Spec) { s.Service = "nope" }, rollout.ErrNotFound, `service "nope" is not in Consul`},
		{"unknown version", func(s *rollout.Spec) { s.Candidate = "v9" }, rollout.ErrNotFound, `no instance of version "v9"`},
		{"weights that do not increase", func(s *rollout.Spec) { s.Steps = []uint32{50, 10} }, rollout.ErrInvalid, "weights must increase"},
		{"bad interval", func(s *rollout.Spec) { s.StepInterval = rollout.Duration(time.Millisecond) }, rollout.ErrInvalid, "at least 1s"},
	}
	for _, c := range cases {
		s := spec()
		c.mod(&s)
		_, err := r.ctl.Create(ctx, s, "operator:test")
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: got %v, want %v saying %q", c.name, err, c.want, c.says)
		}
	}
	first, err := r.ctl.Create(ctx, spec(), "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != "greeter.1" || first.Phase != rollout.Progressing {
		t.Errorf("created %s in %s, want greeter.1 progressing", first.ID, first.Phase)
	}
	if _, err := r.ctl.Create(ctx, spec(), "operator:test"); !errors.Is(err, rollout.ErrConflict) || !strings.Contains(err.Error(), "already has an active rollout, greeter.1") {
		t.Errorf("second active rollout: %v, want a conflict naming greeter.1", err)
	}
	// Once it ends, the next one gets the next number and the old one is
	// kept in the archive.
	if _, err := r.ctl.Command(ctx, "greeter.1", rollout.Command{Kind: rollout.CmdAbort, Actor: "operator:test"}); err != nil {
		t.Fatal(err)
	}
	second, err := r.ctl.Create(ctx, spec(), "operator:test")
	if err != nil || second.ID != "greeter.2" {
		t.Fatalf("after abort: %s %v, want greeter.2", second.ID, err)
	}
	old, err := r.ctl.Get(ctx, "greeter.1")
	if err != nil || old.Phase != rollout.Aborted {
		t.Errorf("archived greeter.1: %s %v", old.Phase, err)
	}
	all, err := r.ctl.List(ctx, true)
	if err != nil || len(all) != 2 || all[0].ID != "greeter.2" {
		t.Errorf("list: %d rollouts, err %v; want greeter.2 then greeter.1", len(all), err)
	}
	if _, err := r.ctl.Command(ctx, "greeter.1", rollout.Command{Kind: rollout.CmdPause}); !errors.Is(err, rollout.ErrConflict) {
		t.Errorf("command to a replaced rollout: %v, want a conflict", err)
	}
	if _, err := r.ctl.Get(ctx, "greeter.9"); !errors.Is(err, rollout.ErrNotFound) {
		t.Errorf("unknown id: %v, want not found", err)
	}
}

func TestHealthyCandidateIsPromoted(t *testing.T) {
	a := consultest.Start(t)
	register(t, a)
	tr := newTraffic(200, map[string]float64{"v1": 0.005, "v2": 0.005})
	r := start(t, a, tr, "a")
	eventually(t, 10*time.Second, "leadership", r.ctl.IsLeader)
	ro, err := r.ctl.Create(context.Background(), spec(), "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	done := waitPhase(t, r.ctl, ro.ID, 30*time.Second, rollout.Succeeded, rollout.RolledBack, rollout.Paused)
	if done.Phase != rollout.Succeeded {
		t.Fatalf("phase %s (%s), want Succeeded", done.Phase, done.Reason)
	}
	if got := fmt.Sprint(r.plans.candidateWeights()); got != "[10 50 100]" {
		t.Errorf("candidate weights served %s, want [10 50 100]", got)
	}
	var steps []int
	for _, e := range done.History {
		if e.Kind == "decision" && e.Stats == nil {
			t.Errorf("decision without statistics: %+v", e)
		}
		if e.Kind == "step" {
			steps = append(steps, e.Step)
		}
	}
	if fmt.Sprint(steps) != "[2]" {
		t.Errorf("step events %v, want [2] (step 1 starts with the rollout)", steps)
	}
}

func TestFailingCandidateIsRolledBack(t *testing.T) {
	a := consultest.Start(t)
	register(t, a)
	tr := newTraffic(500, map[string]float64{"v1": 0.005, "v2": 0.10})
	r := start(t, a, tr, "a")
	eventually(t, 10*time.Second, "leadership", r.ctl.IsLeader)
	s := spec()
	s.StepInterval = rollout.Duration(time.Minute) // the analysis, not the hold, must end it
	ro, err := r.ctl.Create(context.Background(), s, "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	done := waitPhase(t, r.ctl, ro.ID, 30*time.Second, rollout.RolledBack)
	var decision *rollout.Event
	for i, e := range done.History {
		if e.Kind == "decision" && e.Stats != nil && e.Stats.Verdict == "fail" {
			decision = &done.History[i]
		}
	}
	if decision == nil {
		t.Fatalf("no failing decision in the history: %+v", done.History)
	}
	if decision.Stats.Stats.Candidate.Errors == 0 || decision.Stats.Stats.Threshold == 0 {
		t.Errorf("the decision's statistics are empty: %+v", decision.Stats)
	}
	if got := fmt.Sprint(r.plans.candidateWeights()); got != "[10 0]" {
		t.Errorf("candidate weights served %s, want [10 0]", got)
	}
}

// Two replicas: one drives; when it stops, the other resumes the release
// from KV where it stood, without repeating a step.
func TestAnotherReplicaTakesOver(t *testing.T) {
	a := consultest.Start(t)
	register(t, a)
	tr := newTraffic(200, map[string]float64{})
	first := start(t, a, tr, "a")
	eventually(t, 10*time.Second, "replica a leads", first.ctl.IsLeader)
	second := start(t, a, tr, "b")
	eventually(t, 10*time.Second, "replica b has read KV", func() bool { return second.reads.Load() > 0 })
	readsBefore := second.reads.Load()
	s := spec()
	s.Steps = []uint32{10, 30, 60}
	s.StepInterval = rollout.Duration(2 * time.Second)
	ro, err := first.ctl.Create(context.Background(), s, "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "replica b serves the plan it read from KV", func() bool {
		w := second.plans.candidateWeights()
		return len(w) > 0 && w[len(w)-1] == 10
	})
	if second.ctl.IsLeader() {
		t.Fatal("both replicas lead")
	}
	if second.reads.Load() <= readsBefore {
		t.Error("replica b read the new rollout from KV without telling OnRead (its gauges would lag)")
	}
	first.stop()
	eventually(t, 10*time.Second, "replica b takes the lock", second.ctl.IsLeader)
	done := waitPhase(t, second.ctl, ro.ID, 30*time.Second, rollout.Succeeded)
	var steps []int
	for _, e := range done.History {
		if e.Kind == "step" {
			steps = append(steps, e.Step)
		}
	}
	if fmt.Sprint(steps) != "[2 3]" {
		t.Errorf("steps %v, want [2 3]: each once, in order", steps)
	}
	ws := second.plans.candidateWeights()
	for i := 1; i < len(ws); i++ {
		if ws[i] < ws[i-1] {
			t.Errorf("weights went back: %v", ws)
		}
	}
}

// A replica that crashed holding the lock gets it back at once on restart
// instead of waiting out the session's TTL.
func TestRestartedReplicaReclaimsItsLock(t *testing.T) {
	a := consultest.Start(t)
	// The crashed life: a session holding the lock with this replica's id,
	// and nobody renewing it.
	se, _, err := a.Client().Session().Create(&api.SessionEntry{Name: "signalbox rollout controller", TTL: "60s", LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok, _, err := a.Client().KV().Acquire(&api.KVPair{Key: "signalbox/rollouts/leader", Value: []byte("a"), Session: se, Flags: api.LockFlagValue}, nil)
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	r := start(t, a, newTraffic(0, nil), "a")
	eventually(t, 10*time.Second, "the restarted replica leads well before the old session's 60s TTL", r.ctl.IsLeader)
	other := start(t, a, newTraffic(0, nil), "b")
	eventually(t, 5*time.Second, "b has read KV", func() bool {
		select {
		case <-other.ctl.Loaded():
			return true
		default:
			return false
		}
	})
	if other.ctl.IsLeader() {
		t.Error("a replica with another id took a held lock")
	}
}
