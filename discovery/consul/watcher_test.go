package consul

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/discovery/consul/consultest"
)

// quiet is how long a test waits to be sure that nothing is published.
const quiet = 500 * time.Millisecond

// startWatcher runs a watcher against the agent until the test ends.
func startWatcher(t *testing.T, agent *consultest.Agent, opts Options) *Watcher {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	w := New(agent.Client(), opts)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return w
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitSynced waits for Synced and returns the first catalog.
func waitSynced(t *testing.T, w *Watcher) *discovery.Catalog {
	t.Helper()
	select {
	case <-w.Synced():
	case <-time.After(20 * time.Second):
		t.Fatalf("watcher not synced after 20s; status %+v", w.Status())
	}
	if !w.Status().Synced {
		t.Errorf("Status().Synced is false after Synced closed")
	}
	select {
	case c := <-w.Updates():
		return c
	default:
		t.Fatalf("Synced closed but no catalog on Updates")
		return nil
	}
}

// waitCatalog returns the next published catalog that satisfies ok, failing
// the test after timeout. Every catalog seen on the way goes to each (if set).
func waitCatalog(t *testing.T, w *Watcher, what string, ok func(*discovery.Catalog) bool, each func(*discovery.Catalog)) *discovery.Catalog {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	var last *discovery.Catalog
	for {
		select {
		case c := <-w.Updates():
			if each != nil {
				each(c)
			}
			if ok(c) {
				return c
			}
			last = c
		case <-deadline.C:
			t.Fatalf("no catalog with %s within 15s; last published: %s; status %+v", what, describe(last), w.Status())
			return nil
		}
	}
}

// expectNothing fails if a catalog is published within d.
func expectNothing(t *testing.T, w *Watcher, d time.Duration, why string) {
	t.Helper()
	select {
	case c := <-w.Updates():
		t.Fatalf("%s: unexpected catalog published: %s", why, describe(c))
	case <-time.After(d):
	}
}

func describe(c *discovery.Catalog) string {
	if c == nil {
		return "none"
	}
	var b strings.Builder
	for _, n := range c.Names() {
		s, _ := c.Service(n)
		fmt.Fprintf(&b, "%s[", n)
		for i, in := range s.Instances {
			if i > 0 {
				b.WriteString(" ")
			}
			fmt.Fprintf(&b, "%s@%s:%s", in.ID, in.Node, in.Health)
		}
		b.WriteString("] ")
	}
	return b.String()
}

func instance(c *discovery.Catalog, service, id string) (discovery.Instance, bool) {
	s, ok := c.Service(service)
	if !ok {
		return discovery.Instance{}, false
	}
	i := slices.IndexFunc(s.Instances, func(in discovery.Instance) bool { return in.ID == id })
	if i < 0 {
		return discovery.Instance{}, false
	}
	return s.Instances[i], true
}

func hasHealth(service, id string, h discovery.Health) func(*discovery.Catalog) bool {
	return func(c *discovery.Catalog) bool {
		in, ok := instance(c, service, id)
		return ok && in.Health == h
	}
}

func TestWatcherFollowsCatalog(t *testing.T) {
	agent := consultest.Start(t)
	web1 := agent.RegisterInstance(t, consultest.Instance{
		Service: "web", ID: "web-1", NodeAddress: "10.0.0.1", Address: "10.1.0.1", Port: 8080,
		Tags: []string{"version=v1"}, Meta: map[string]string{"zone": "z-a"},
		NodeMeta: map[string]string{"zone": "z-node"},
	})
	web2 := agent.RegisterInstance(t, consultest.Instance{
		Service: "web", ID: "web-2", NodeAddress: "10.0.0.2", Port: 8080,
		Meta: map[string]string{"version": "v2"}, NodeMeta: map[string]string{"zone": "z-b"}, Check: "warning",
	})
	agent.RegisterInstance(t, consultest.Instance{Service: "db", ID: "db-1", NodeAddress: "10.0.0.3", Port: 5432})

	reg := prometheus.NewRegistry()
	w := startWatcher(t, agent, Options{WaitTime: 10 * time.Second, Registerer: reg})

	// The first catalog is complete: every service with its instances.
	cat := waitSynced(t, w)
	if w.Catalog() != cat {
		t.Errorf("Catalog() is not the published catalog")
	}
	if cat.SeenAt.IsZero() {
		t.Errorf("first catalog has no SeenAt")
	}
	for _, name := range []string{"consul", "db", "web"} {
		if _, ok := cat.Service(name); !ok {
			t.Errorf("first catalog lacks %q: %s", name, describe(cat))
		}
	}
	web, _ := cat.Service("web")
	want := []discovery.Instance{
		{ID: "web-1", Node: web1.Node, Address: "10.1.0.1", Port: 8080, Health: discovery.Passing, Version: "v1",
			Tags: []string{"version=v1"}, Meta: map[string]string{"zone": "z-a"}, Datacenter: "dc1", Zone: "z-a"},
		{ID: "web-2", Node: web2.Node, Address: "10.0.0.2", Port: 8080, Health: discovery.Warning, Version: "v2",
			Meta: map[string]string{"version": "v2"}, Datacenter: "dc1", Zone: "z-b"},
	}
	if diff := cmp.Diff(want, web.Instances); diff != "" {
		t.Fatalf("web instances (-want +got):\n%s", diff)
	}
	expectNothing(t, w, quiet/2, "nothing changed after sync")

	t.Run("new instance appears", func(t *testing.T) {
		before := time.Now()
		agent.RegisterInstance(t, consultest.Instance{Service: "web", ID: "web-3", NodeAddress: "10.0.0.4", Port: 9090})
		c := waitCatalog(t, w, "web-3", func(c *discovery.Catalog) bool { _, ok := instance(c, "web", "web-3"); return ok }, nil)
		if c.SeenAt.Before(before) {
			t.Errorf("SeenAt %v is before the change was made (%v)", c.SeenAt, before)
		}
		// Unchanged services are shared, not copied.
		oldDB, _ := cat.Service("db")
		newDB, _ := c.Service("db")
		if oldDB != newDB {
			t.Errorf("unchanged service db was not shared between catalogs")
		}
	})

	t.Run("health flips to critical and back", func(t *testing.T) {
		agent.SetHealth(t, web1.Node, "web-1", "critical")
		waitCatalog(t, w, "web-1 critical", hasHealth("web", "web-1", discovery.Critical), nil)
		agent.SetHealth(t, web1.Node, "web-1", "passing")
		waitCatalog(t, w, "web-1 passing", hasHealth("web", "web-1", discovery.Passing), nil)
	})

	t.Run("maintenance", func(t *testing.T) {
		agent.SetMaintenance(t, web1.Node, "web-1", true)
		waitCatalog(t, w, "web-1 in maintenance", hasHealth("web", "web-1", discovery.Maintenance), nil)
		agent.SetMaintenance(t, web1.Node, "web-1", false)
		waitCatalog(t, w, "web-1 out of maintenance", hasHealth("web", "web-1", discovery.Passing), nil)
		agent.SetNodeMaintenance(t, web2.Node, true)
		waitCatalog(t, w, "web-2 node in maintenance", hasHealth("web", "web-2", discovery.Maintenance), nil)
		agent.SetNodeMaintenance(t, web2.Node, false)
		waitCatalog(t, w, "web-2 warning again", hasHealth("web", "web-2", discovery.Warning), nil)
	})

	t.Run("unchanged answer publishes nothing", func(t *testing.T) {
		expectNothing(t, w, 0, "before the no-op change")
		updates := counterValue(t, reg, "signalbox_consul_updates_total")
		// A new check output wakes the blocking query with a new index, but
		// nothing signalbox keeps changed.
		answers := w.answers.Load()
		agent.SetCheckOutput(t, web1.Node, "web-1", "passing", "HTTP GET /health: 200 OK at "+time.Now().String())
		waitUntil(t, "the watch to get the no-op answer", func() bool { return w.answers.Load() > answers })
		expectNothing(t, w, quiet, "only the check output changed")
		// Re-registering identical data publishes nothing either.
		agent.RegisterInstance(t, consultest.Instance{Service: "db", ID: "db-1", NodeAddress: "10.0.0.3", Port: 5432})
		expectNothing(t, w, quiet, "identical re-registration")
		if got := counterValue(t, reg, "signalbox_consul_updates_total"); got != updates {
			t.Errorf("updates_total went from %v to %v without a change", updates, got)
		}
		// A real change still arrives.
		agent.SetHealth(t, web1.Node, "web-1", "warning")
		waitCatalog(t, w, "web-1 warning", hasHealth("web", "web-1", discovery.Warning), nil)
	})

	t.Run("deregistered instance disappears", func(t *testing.T) {
		agent.Deregister(t, web2.Node, "web-2")
		waitCatalog(t, w, "web without web-2", func(c *discovery.Catalog) bool {
			_, ok := instance(c, "web", "web-2")
			_, stillWeb := c.Service("web")
			return !ok && stillWeb
		}, nil)
	})

	t.Run("last instance gone removes the service", func(t *testing.T) {
		agent.Deregister(t, "node-db-1", "db-1")
		c := waitCatalog(t, w, "no db service", func(c *discovery.Catalog) bool { _, ok := c.Service("db"); return !ok }, nil)
		if _, ok := c.Service("web"); !ok {
			t.Errorf("web vanished with db: %s", describe(c))
		}
		// A service that comes back is watched again.
		agent.RegisterInstance(t, consultest.Instance{Service: "db", ID: "db-2", NodeAddress: "10.0.0.5", Port: 5432})
		waitCatalog(t, w, "db-2", func(c *discovery.Catalog) bool { _, ok := instance(c, "db", "db-2"); return ok }, nil)
	})

	t.Run("metrics and status", func(t *testing.T) {
		st := w.Status()
		if st.LastSuccess.IsZero() || !st.StaleSince.IsZero() || st.WatchErrors != 0 {
			t.Errorf("status of a healthy watcher: %+v", st)
		}
		if got, want := gaugeValue(t, reg, "signalbox_consul_services"), float64(w.Catalog().Len()); got != want {
			t.Errorf("signalbox_consul_services = %v, want %v", got, want)
		}
		if got := gaugeValue(t, reg, "signalbox_consul_stale_seconds"); got != 0 {
			t.Errorf("signalbox_consul_stale_seconds = %v while healthy", got)
		}
		if got := counterValue(t, reg, "signalbox_consul_updates_total"); got < 8 {
			t.Errorf("signalbox_consul_updates_total = %v, want at least 8", got)
		}
	})
}

// TestWatcherManyServices holds more long polls than Consul's default
// per-client connection limit (200) allows.
func TestWatcherManyServices(t *testing.T) {
	const n = 250
	agent := consultest.Start(t)
	for i := range n {
		agent.RegisterInstance(t, consultest.Instance{
			Service: fmt.Sprintf("svc-%03d", i), Node: fmt.Sprintf("node-%d", i%10), Port: 1000 + i,
		})
	}
	w := startWatcher(t, agent, Options{WaitTime: 20 * time.Second})
	cat := waitSynced(t, w)
	if got := cat.Len(); got != n+1 { // and "consul"
		t.Fatalf("first catalog has %d services, want %d", got, n+1)
	}
	// Every watch is parked in a long poll now; a change to the last one
	// still gets through.
	agent.SetHealth(t, "node-9", fmt.Sprintf("svc-%03d", n-1), "critical")
	waitCatalog(t, w, "last service critical", hasHealth(fmt.Sprintf("svc-%03d", n-1), fmt.Sprintf("svc-%03d", n-1), discovery.Critical), nil)
	if st := w.Status(); st.WatchErrors != 0 {
		t.Errorf("watch errors with %d services: %+v", n, st)
	}
}

// TestWatcherOutage stops Consul under a running watcher and starts it again.
func TestWatcherOutage(t *testing.T) {
	agent := consultest.Start(t, consultest.Persistent())
	agent.RegisterInstance(t, consultest.Instance{Service: "web", ID: "web-1", NodeAddress: "10.0.0.1", Port: 80})
	agent.RegisterInstance(t, consultest.Instance{Service: "api", ID: "api-1", NodeAddress: "10.0.0.2", Port: 81})

	reg := prometheus.NewRegistry()
	w := startWatcher(t, agent, Options{
		WaitTime: 5 * time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Registerer: reg,
	})
	first := waitSynced(t, w)
	for _, name := range []string{"web", "api"} {
		if _, ok := first.Service(name); !ok {
			t.Fatalf("first catalog lacks %s: %s", name, describe(first))
		}
	}

	agent.Stop()
	waitUntil(t, "StaleSince to be set", func() bool {
		st := w.Status()
		return !st.StaleSince.IsZero() && st.WatchErrors > 0 && st.LastError != ""
	})
	expectNothing(t, w, quiet, "Consul is down")
	if w.Catalog() != first {
		t.Errorf("the latest catalog changed during the outage")
	}
	if got := gaugeValue(t, reg, "signalbox_consul_stale_seconds"); got <= 0 {
		t.Errorf("signalbox_consul_stale_seconds = %v during the outage", got)
	}
	if got := labelledCounter(t, reg, "signalbox_consul_watch_errors_total", "watch", "services"); got == 0 {
		t.Errorf("no services watch errors counted during the outage")
	}
	if got := labelledCounter(t, reg, "signalbox_consul_watch_errors_total", "watch", "service"); got == 0 {
		t.Errorf("no service watch errors counted during the outage")
	}

	agent.Restart(t)
	agent.RegisterInstance(t, consultest.Instance{Service: "web", ID: "web-2", NodeAddress: "10.0.0.3", Port: 80})
	// Every catalog published on the way must still hold what Consul had
	// before the outage: a restart never empties the catalog.
	intact := func(c *discovery.Catalog) {
		_, web1 := instance(c, "web", "web-1")
		_, api1 := instance(c, "api", "api-1")
		if !web1 || !api1 {
			t.Errorf("catalog published after the restart lost data: %s", describe(c))
		}
	}
	waitCatalog(t, w, "web-2 after the restart", func(c *discovery.Catalog) bool {
		_, ok := instance(c, "web", "web-2")
		return ok
	}, intact)
	waitUntil(t, "StaleSince to clear", func() bool { return w.Status().StaleSince.IsZero() })
	if got := gaugeValue(t, reg, "signalbox_consul_stale_seconds"); got != 0 {
		t.Errorf("signalbox_consul_stale_seconds = %v after recovery", got)
	}
}

// TestWatcherConsulDownAtStart: nothing is published and Synced stays open
// until Consul answers.
func TestWatcherConsulDownAtStart(t *testing.T) {
	agent := consultest.Start(t, consultest.Persistent())
	agent.RegisterInstance(t, consultest.Instance{Service: "web", ID: "web-1", Port: 80})
	agent.Stop()

	w := startWatcher(t, agent, Options{WaitTime: 5 * time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	waitUntil(t, "a watch error", func() bool { return w.Status().WatchErrors > 0 })
	select {
	case <-w.Synced():
		t.Fatalf("synced while Consul is down")
	case c := <-w.Updates():
		t.Fatalf("published while Consul is down: %s", describe(c))
	case <-time.After(quiet):
	}
	if st := w.Status(); st.StaleSince.IsZero() {
		t.Errorf("StaleSince not set while Consul was never reached: %+v", st)
	}

	agent.Restart(t)
	cat := waitSynced(t, w)
	if _, ok := instance(cat, "web", "web-1"); !ok {
		t.Errorf("first catalog after Consul came up lacks web-1: %s", describe(cat))
	}
	waitUntil(t, "StaleSince to clear", func() bool { return w.Status().StaleSince.IsZero() })
}

func TestRunTwice(t *testing.T) {
	w := New(nil, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	w.running.Store(true)
	if err := w.Run(context.Background()); err == nil {
		t.Fatal("second Run returned nil")
	}
}

// waitUntil polls cond until it holds, for at most 15 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func metricFamily(t *testing.T, reg *prometheus.Registry, name string) []*dto {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			out := make([]*dto, 0, len(mf.GetMetric()))
			for _, m := range mf.GetMetric() {
				d := &dto{labels: map[string]string{}}
				for _, l := range m.GetLabel() {
					d.labels[l.GetName()] = l.GetValue()
				}
				switch {
				case m.GetCounter() != nil:
					d.value = m.GetCounter().GetValue()
				case m.GetGauge() != nil:
					d.value = m.GetGauge().GetValue()
				}
				out = append(out, d)
			}
			return out
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}

type dto struct {
	labels map[string]string
	value  float64
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return metricFamily(t, reg, name)[0].value
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return metricFamily(t, reg, name)[0].value
}

func labelledCounter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	for _, m := range metricFamily(t, reg, name) {
		if m.labels[label] == value {
			return m.value
		}
	}
	return 0
}

// TestWatcherIndexGoesBackwards restarts a dev agent, which loses its state
// and starts its indexes from scratch: the watcher must notice the lower
// index instead of waiting for the old one to be passed.
func TestWatcherIndexGoesBackwards(t *testing.T) {
	agent := consultest.Start(t)
	// Push the index well above what a fresh agent will have.
	for i := range 20 {
		agent.RegisterInstance(t, consultest.Instance{Service: "old", ID: fmt.Sprintf("old-%d", i), Port: 80})
	}
	agent.RegisterInstance(t, consultest.Instance{Service: "web", ID: "web-1", Port: 80})
	w := startWatcher(t, agent, Options{
		WaitTime: 2 * time.Second, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	waitSynced(t, w)

	agent.Restart(t) // dev mode: empty catalog, indexes start again
	agent.RegisterInstance(t, consultest.Instance{Service: "web", ID: "web-9", Port: 81})
	waitCatalog(t, w, "only the new agent's catalog", func(c *discovery.Catalog) bool {
		_, web9 := instance(c, "web", "web-9")
		_, web1 := instance(c, "web", "web-1")
		_, old := c.Service("old")
		return web9 && !web1 && !old
	}, nil)
}
