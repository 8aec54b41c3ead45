package controller

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/rollout"
)

// manual is a controller that does not drive by itself: the test takes its
// looks, with a clock it moves.
type manual struct {
	*Controller
	mu  sync.Mutex
	now time.Time
}

func newManual(t *testing.T, a *consultest.Agent, tr *traffic) *manual {
	m := &manual{now: time.Unix(1_700_000_000, 0)}
	m.Controller = New(Options{Client: a.Client(), Counts: tr, Catalog: consulCatalog{a.Client()}, Logger: testLogger(t),
		Now: func() time.Time { m.mu.Lock(); defer m.mu.Unlock(); return m.now }})
	return m
}

func (m *manual) add(d time.Duration) { m.mu.Lock(); m.now = m.now.Add(d); m.mu.Unlock() }

func (m *manual) cur(svc string) stored {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Controller.mu.Lock()
	defer m.Controller.mu.Unlock()
	return m.current[svc]
}

// look is one look of the driver at a rollout: observe, step, write.
func (m *manual) look(ctx context.Context, svc string) (rollout.Rollout, error) {
	st := m.cur(svc)
	o, l := m.observe(st.r)
	return m.advance(ctx, st, o, &l)
}

func (tr *traffic) add(v string, req, errs uint64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	c := tr.totals[v]
	c.Requests += req
	c.Errors += errs
	tr.totals[v] = c
}

// TestLookWithFailedWriteIsNotLost: a look whose write loses to another
// writer (an operator's command landing meanwhile) is not thrown away: the
// next look counts its traffic, so the analysis sees every error.
func TestLookWithFailedWriteIsNotLost(t *testing.T) {
	a := consultest.Start(t)
	register(t, a)
	tr := newTraffic(0, nil)
	m := newManual(t, a, tr)
	ctx := context.Background()
	s := spec()
	s.StepInterval = rollout.Duration(time.Hour)
	ro, err := m.Create(ctx, s, "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.look(ctx, "greeter"); err != nil { // the first reading
		t.Fatal(err)
	}
	tr.add("v1", 900, 1)
	tr.add("v2", 100, 40)
	st := m.cur("greeter")
	o, l := m.observe(st.r)
	if _, err := m.Command(ctx, ro.ID, rollout.Command{Kind: rollout.CmdPause, Actor: "operator:x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.advance(ctx, st, o, &l); err == nil {
		t.Fatal("the look's write succeeded over the operator's command")
	}
	if _, err := m.look(ctx, "greeter"); err != nil {
		t.Fatal(err)
	}
	got, err := m.Get(ctx, ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c := got.Analysis.Test.Candidate; c.Errors != 40 || c.Requests != 100 {
		t.Fatalf("the analysis saw the candidate's %d errors in %d requests; want 40 in 100", c.Errors, c.Requests)
	}
}

// TestRetryStartsFromAFreshReading: what a rollout served while it was over
// does not count for step 1 after a retry.
func TestRetryStartsFromAFreshReading(t *testing.T) {
	a := consultest.Start(t)
	register(t, a)
	tr := newTraffic(0, nil)
	m := newManual(t, a, tr)
	ctx := context.Background()
	s := spec()
	s.Analysis.MinRequests = 1000
	ro, err := m.Create(ctx, s, "operator:test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.look(ctx, "greeter"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Command(ctx, ro.ID, rollout.Command{Kind: rollout.CmdAbort, Actor: "operator:x"}); err != nil {
		t.Fatal(err)
	}
	// While it is over, the candidate serves a lot (no plan: traffic
	// spreads over every instance).
	tr.add("v1", 50000, 0)
	tr.add("v2", 50000, 0)
	if _, err := m.Command(ctx, ro.ID, rollout.Command{Kind: rollout.CmdRetry, Actor: "operator:x"}); err != nil {
		t.Fatal(err)
	}
	m.add(2 * time.Second) // past step 1's hold
	for i := 0; i < 2; i++ {
		got, err := m.look(ctx, "greeter")
		if err != nil {
			t.Fatal(err)
		}
		if got.Step != 1 || got.StepRequests != 0 {
			t.Fatalf("look %d after the retry (the candidate served nothing since): step %d, %d step requests, %s; want step 1 held", i+1, got.Step, got.StepRequests, got.Reason)
		}
	}
}

// TestUndecodableKeyDoesNotHoldBackLoading: a key under current/ that does
// not decode (or a folder made in Consul's UI) is skipped: the controller
// still says it has loaded, with the good rollouts' plans, since serve
// waits for that before it serves any configuration.
func TestUndecodableKeyDoesNotHoldBackLoading(t *testing.T) {
	for _, key := range []string{"signalbox/rollouts/current/", "signalbox/rollouts/current/billing"} {
		t.Run(key, func(t *testing.T) {
			a := consultest.Start(t)
			register(t, a)
			m := newManual(t, a, newTraffic(0, nil))
			if _, err := m.Create(context.Background(), spec(), "operator:test"); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Client().KV().Put(&api.KVPair{Key: key, Value: nil}, nil); err != nil {
				t.Fatal(err)
			}
			r := start(t, a, newTraffic(0, nil), "a")
			select {
			case <-r.ctl.Loaded():
			case <-time.After(10 * time.Second):
				t.Fatal("Loaded() not closed after 10s with one bad key: serve would never forward a catalog to xDS")
			}
			r.ctl.mu.Lock()
			_, ok := r.ctl.plans["greeter"]
			r.ctl.mu.Unlock()
			if !ok {
				t.Errorf("the good rollout's plan was not loaded")
			}
		})
	}
}
