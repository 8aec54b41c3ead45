// Package consul watches the Consul catalog and publishes it as immutable
// discovery.Catalog values. It is signalbox's only reader of the catalog.
//
// A Watcher keeps one blocking query on /v1/catalog/services for the list of
// service names and one blocking query on /v1/health/service/<name> per
// service, shared by every consumer. All queries allow stale reads and wait at
// most Options.WaitTime. The usual blocking-query hygiene applies: an index
// below 1 is read as 1; when the index goes backwards the answer is not
// applied, the index resets to 0 and the next query reads through the leader
// (a stale read from a lagging server must not remove services); failed
// queries retry after a jittered exponential backoff; an answer that returns
// at once without a newer index is rate limited, so a watch never busy-loops.
// An answer whose converted instances hash the same as the previous one
// (discovery.Service.Hash) publishes nothing.
//
// The catalog holds every listed service, Consul's own "consul" service
// included, and a listed service whose health answer has no instances is kept
// with none. Nothing is published until every listed service has answered
// once (Synced).
//
// When Consul is unreachable the last catalog stays: a failed query never
// publishes anything, and a service only leaves the catalog when a
// successful service-list answer no longer names it. Status().StaleSince and
// the signalbox_consul_stale_seconds metric say how long that has lasted.
//
// Each watch holds an HTTP connection open for up to WaitTime, so the
// api.Client must pool at least one connection per service: build it with
// NewClient, or give it a transport with a large MaxIdleConnsPerHost. Consul
// limits connections per client address (limits.http_max_conns_per_client,
// default 200), which must be raised above the number of services.
package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalbox/signalbox/discovery"
)

// Watch names, used in metrics labels and logs.
const (
	watchServices = "services"
	watchService  = "service"
)

// Defaults for the zero Options fields.
const (
	DefaultWaitTime   = 60 * time.Second
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	// maxWaitTime is the longest wait Consul accepts.
	maxWaitTime = 10 * time.Minute
)

// Options configure a Watcher. The zero value is usable.
type Options struct {
	// Datacenter to read; empty means the agent's own.
	Datacenter string
	// WaitTime bounds each blocking query (default 60s, at most 10m).
	WaitTime time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after a failed query
	// (defaults 100ms and 10s).
	MinBackoff, MaxBackoff time.Duration
	// Logger receives the watcher's logs (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, receives the signalbox_consul_* metrics.
	Registerer prometheus.Registerer
	// Now is the clock for Catalog.SeenAt and Status times (default time.Now).
	Now func() time.Time
}

// Status is the watcher's health, for the debug view.
type Status struct {
	// Synced is true once the first complete catalog was published.
	Synced bool `json:"synced"`
	// Services is the number of services in the last published catalog.
	Services int `json:"services"`
	// LastSuccess is when the last successful Consul answer arrived.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// LastError and LastErrorAt describe the last failed query.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	// StaleSince is when the oldest watch that is still failing started to
	// fail; zero while every watch's last query succeeded.
	StaleSince time.Time `json:"staleSince,omitzero"`
	// WatchErrors counts failed queries since the watcher was created.
	WatchErrors uint64 `json:"watchErrors"`
	// LastContact is the answering server's time since it last heard from
	// the leader, from the last successful query (0 when it is the leader).
	LastContact time.Duration `json:"lastContact"`
}

// Watcher publishes the Consul catalog. Create it with New, start it with
// Run, and read Updates.
type Watcher struct {
	client       *api.Client
	opts         Options
	log          *slog.Logger
	queryTimeout time.Duration
	metrics      *metrics

	updates chan *discovery.Catalog
	synced  chan struct{}
	latest  atomic.Pointer[discovery.Catalog]
	running atomic.Bool
	answers atomic.Uint64 // successful queries, for tests

	mu      sync.Mutex
	status  Status
	failing int // watches whose last query failed
}

// New returns a watcher that reads Consul through client. It registers its
// metrics with opts.Registerer (if any); it does not talk to Consul until Run.
func New(client *api.Client, opts Options) *Watcher {
	if opts.WaitTime <= 0 {
		opts.WaitTime = DefaultWaitTime
	}
	opts.WaitTime = min(opts.WaitTime, maxWaitTime)
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	w := &Watcher{
		client: client,
		opts:   opts,
		log:    opts.Logger.With("component", "consul-watcher"),
		// Consul adds up to WaitTime/16 of jitter; the rest is slack for a
		// slow answer. The timeout only catches a connection that died
		// silently.
		queryTimeout: opts.WaitTime + opts.WaitTime/16 + 10*time.Second,
		updates:      make(chan *discovery.Catalog, 1),
		synced:       make(chan struct{}),
	}
	w.metrics = newMetrics(opts.Registerer, w.log, w.staleSeconds)
	return w
}

// Updates delivers each new catalog. The channel holds one value and a newer
// catalog replaces an unread one, so a slow reader only sees the latest. The
// first value is the first complete catalog. The channel is never closed.
func (w *Watcher) Updates() <-chan *discovery.Catalog { return w.updates }

// Synced is closed once the first complete catalog, with every listed
// service's first answer, has been published.
func (w *Watcher) Synced() <-chan struct{} { return w.synced }

// Catalog returns the last published catalog, or nil before Synced.
func (w *Watcher) Catalog() *discovery.Catalog { return w.latest.Load() }

// Status returns a snapshot of the watcher's health.
func (w *Watcher) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

func (w *Watcher) staleSeconds() float64 {
	st := w.Status()
	if st.StaleSince.IsZero() {
		return 0
	}
	return max(0, w.opts.Now().Sub(st.StaleSince).Seconds())
}

// event is what the watch goroutines send to Run's loop: a service list
// (list) or one service's new content (name, gen, svc).
type event struct {
	list   map[string]struct{}
	isList bool
	name   string
	gen    uint64
	svc    *discovery.Service
	seenAt time.Time
}

// serviceWatch is one running per-service watch; gen tells its events from
// those of an earlier watch of the same name.
type serviceWatch struct {
	gen    uint64
	cancel context.CancelFunc
}

// Run watches Consul until ctx is cancelled, then stops every watch and
// returns nil. Consul errors are retried, never returned. Run may be called
// once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("consul watcher: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()

	events := make(chan event)
	wg.Go(func() { w.watchList(ctx, events) })

	var (
		cat     = discovery.NewCatalog(time.Time{})
		watches = map[string]*serviceWatch{}
		pending = map[string]struct{}{} // listed, first answer not yet in
		listed  bool
		synced  bool
		gen     uint64
	)
	// apply folds one event into changes (nil: remove), starts and stops
	// service watches, and reports whether the catalog changes.
	apply := func(ev event, changes map[string]*discovery.Service) bool {
		if ev.isList {
			listed = true
			changed := false
			for name := range ev.list {
				if _, ok := watches[name]; ok {
					continue
				}
				gen++
				wctx, wcancel := context.WithCancel(ctx)
				watches[name] = &serviceWatch{gen: gen, cancel: wcancel}
				pending[name] = struct{}{}
				g := gen
				wg.Go(func() { w.watchService(wctx, events, name, g) })
			}
			for name, sw := range watches {
				if _, ok := ev.list[name]; ok {
					continue
				}
				sw.cancel()
				delete(watches, name)
				delete(pending, name)
				_, inCat := cat.Service(name)
				_, inChanges := changes[name]
				if inCat || inChanges {
					changes[name] = nil
					changed = true
				}
			}
			return changed
		}
		sw, ok := watches[ev.name]
		if !ok || sw.gen != ev.gen {
			return false // from a watch that was stopped
		}
		delete(pending, ev.name)
		changes[ev.name] = ev.svc
		return true
	}

	for {
		var ev event
		select {
		case <-ctx.Done():
			return nil
		case ev = <-events:
		}
		// Fold in whatever else is ready, so a burst publishes once.
		changes := map[string]*discovery.Service{}
		var seenAt time.Time
		for more := true; more; {
			if apply(ev, changes) && (seenAt.IsZero() || ev.seenAt.Before(seenAt)) {
				seenAt = ev.seenAt
			}
			select {
			case ev = <-events:
			default:
				more = false
			}
		}
		if len(changes) > 0 {
			cat = rebuild(cat, seenAt, changes)
		}
		switch {
		case !synced && listed && len(pending) == 0:
			synced = true
			if cat.SeenAt.IsZero() {
				// Nothing changed in the last batch (e.g. an empty list).
				cat = rebuild(cat, ev.seenAt, nil)
			}
			w.publish(cat)
			w.mu.Lock()
			w.status.Synced = true
			w.mu.Unlock()
			close(w.synced)
			w.log.Info("consul catalog synced", "services", cat.Len())
		case synced && len(changes) > 0:
			w.publish(cat)
		}
	}
}

// rebuild returns cat with changes applied (nil value: remove), sharing the
// unchanged services.
func rebuild(cat *discovery.Catalog, seenAt time.Time, changes map[string]*discovery.Service) *discovery.Catalog {
	if len(changes) == 1 {
		for name, svc := range changes {
			return cat.With(seenAt, name, svc)
		}
	}
	svcs := make([]*discovery.Service, 0, cat.Len()+len(changes))
	for _, name := range cat.Names() {
		if _, changed := changes[name]; !changed {
			s, _ := cat.Service(name)
			svcs = append(svcs, s)
		}
	}
	for _, s := range changes {
		if s != nil {
			svcs = append(svcs, s)
		}
	}
	return discovery.NewCatalog(seenAt, svcs...)
}

// publish makes c the latest value on Updates. Only Run's loop calls it, so
// the send after the drain cannot block.
func (w *Watcher) publish(c *discovery.Catalog) {
	w.latest.Store(c)
	w.mu.Lock()
	w.status.Services = c.Len()
	w.mu.Unlock()
	// Count before sending, so that whoever receives c sees it counted.
	if w.metrics != nil {
		w.metrics.updates.Inc()
		w.metrics.services.Set(float64(c.Len()))
	}
	select {
	case <-w.updates:
	default:
	}
	w.updates <- c
}

// watchList follows the service list and sends it whenever the set of names
// changes.
func (w *Watcher) watchList(ctx context.Context, events chan<- event) {
	var (
		names map[string][]string
		prev  map[string]struct{}
	)
	query := func(q *api.QueryOptions) (*api.QueryMeta, error) {
		var (
			meta *api.QueryMeta
			err  error
		)
		names, meta, err = w.client.Catalog().Services(q)
		if err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		return meta, nil
	}
	answer := func(seenAt time.Time) bool {
		set := make(map[string]struct{}, len(names))
		for n := range names {
			set[n] = struct{}{}
		}
		if prev != nil && maps.Equal(set, prev) {
			return true
		}
		prev = set
		return send(ctx, events, event{isList: true, list: set, seenAt: seenAt})
	}
	w.poll(ctx, watchServices, "", query, answer)
}

// watchService follows one service's health and sends its content whenever
// the hash changes (always for the first answer).
func (w *Watcher) watchService(ctx context.Context, events chan<- event, name string, gen uint64) {
	var (
		entries []*api.ServiceEntry
		prev    *discovery.Service
	)
	query := func(q *api.QueryOptions) (*api.QueryMeta, error) {
		var (
			meta *api.QueryMeta
			err  error
		)
		entries, meta, err = w.client.Health().Service(name, "", false, q)
		if err != nil {
			return nil, fmt.Errorf("health of service %q: %w", name, err)
		}
		return meta, nil
	}
	answer := func(seenAt time.Time) bool {
		svc := toService(name, entries)
		if prev != nil && svc.Hash == prev.Hash {
			return true
		}
		prev = svc
		return send(ctx, events, event{name: name, gen: gen, svc: svc, seenAt: seenAt})
	}
	w.poll(ctx, watchService, name, query, answer)
}

func send(ctx context.Context, events chan<- event, ev event) bool {
	select {
	case events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// poll runs one blocking-query loop until ctx ends. query runs the request
// and keeps its result for answer, which is called after every successful
// query with the time the answer arrived and returns false to stop.
//
// Queries are stale reads, answered by whichever server the agent asks. An
// answer whose index went backwards comes from a server that is behind (or
// from a cluster that lost its state): it is not applied, and the next query
// is a read through the leader, whose answer is taken as the truth whatever
// its index. That keeps a lagging server from removing services that exist.
func (w *Watcher) poll(ctx context.Context, watch, name string,
	query func(*api.QueryOptions) (*api.QueryMeta, error), answer func(seenAt time.Time) bool) {
	var (
		index   uint64
		attempt int
		failing bool
		confirm bool // the next query reads through the leader
	)
	defer func() {
		if failing {
			w.forget()
		}
	}()
	for {
		q := &api.QueryOptions{
			Datacenter: w.opts.Datacenter,
			AllowStale: !confirm,
			WaitIndex:  index,
			WaitTime:   spreadWait(w.opts.WaitTime, rand.Int64N),
		}
		qctx, cancel := context.WithTimeout(ctx, w.queryTimeout)
		start := time.Now()
		meta, err := query(q.WithContext(qctx))
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = checkMeta(meta)
		}
		if err != nil {
			attempt++
			retry := backoff(attempt, w.opts.MinBackoff, w.opts.MaxBackoff, rand.Int64N)
			w.failed(watch, name, err, &failing, attempt, retry)
			if !sleep(ctx, retry) {
				return
			}
			continue
		}
		attempt = 0
		w.answers.Add(1)
		seenAt := w.opts.Now()
		w.succeeded(watch, name, meta, &failing, seenAt)
		prev := index
		next, backwards := nextIndex(index, meta.LastIndex)
		if backwards && !confirm {
			w.log.Info("consul index went backwards, confirming through the leader",
				"watch", watch, "service", name, "was", prev, "got", meta.LastIndex)
			index, confirm = 0, true
		} else {
			index, confirm = next, false
			if !answer(seenAt) {
				return
			}
		}
		// An answer that came back at once without a newer index would make
		// the next query return at once too: slow down.
		if index <= prev && time.Since(start) < w.opts.MinBackoff {
			if !sleep(ctx, w.opts.MinBackoff) {
				return
			}
		}
	}
}

// checkMeta rejects answers that cannot be trusted to describe the catalog.
func checkMeta(meta *api.QueryMeta) error {
	if meta == nil {
		return errors.New("consul answer without query metadata")
	}
	return nil
}

func (w *Watcher) failed(watch, name string, err error, failing *bool, attempt int, retry time.Duration) {
	now := w.opts.Now()
	first := !*failing
	w.mu.Lock()
	w.status.WatchErrors++
	w.status.LastError = err.Error()
	w.status.LastErrorAt = now
	stale := false
	if first {
		*failing = true
		w.failing++
		if w.failing == 1 {
			w.status.StaleSince = now
			stale = true
		}
	}
	w.mu.Unlock()
	if w.metrics != nil {
		w.metrics.watchErrors.WithLabelValues(watch).Inc()
	}
	// One warning when the data starts going stale and one per failing
	// service list, not one per service: an outage fails every watch.
	level := slog.LevelDebug
	if stale || (first && watch == watchServices) {
		level = slog.LevelWarn
	}
	w.log.Log(context.Background(), level, "consul query failed, keeping the last known data",
		"watch", watch, "service", name, "attempt", attempt, "retry_in", retry, "err", err)
}

func (w *Watcher) succeeded(watch, name string, meta *api.QueryMeta, failing *bool, now time.Time) {
	recovered := *failing
	fresh := false
	w.mu.Lock()
	w.status.LastSuccess = now
	w.status.LastContact = meta.LastContact
	if recovered {
		*failing = false
		w.failing--
		if w.failing == 0 {
			fresh = !w.status.StaleSince.IsZero()
			w.status.StaleSince = time.Time{}
		}
	}
	w.mu.Unlock()
	if w.metrics != nil {
		w.metrics.lastContact.Set(meta.LastContact.Seconds())
	}
	switch {
	case fresh:
		w.log.Info("consul queries recovered, every watch is current")
	case recovered:
		w.log.Debug("consul query recovered", "watch", watch, "service", name)
	}
}

// forget drops a stopped watch from the failing count.
func (w *Watcher) forget() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failing--
	if w.failing == 0 {
		w.status.StaleSince = time.Time{}
	}
}

// sleep waits for d or until ctx ends, and reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
