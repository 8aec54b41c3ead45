// Package controller drives releases: it reads each version's counts from
// the live graph, steps every active rollout (rollout.Step), hands the
// resulting plans to the xDS server, and persists each rollout in Consul KV
// with check-and-set. Every replica serves the plans it reads from KV; only
// the replica that holds the Consul session lock drives, so two replicas
// never both move a release. On start it resumes every rollout where it
// stood in KV.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/signalbox/signalbox/rollout"
)

// Counts are a version's requests and errors.
type Counts struct {
	Requests, Errors uint64
	P99Ms            float64
}

// CountSource is the live graph as the controller sees it (cmd adapts
// topology.Store).
type CountSource interface {
	// Totals are monotonic per-version counts of a service: what its callers
	// saw (sidecars' outbound logs) and what it saw itself (its inbound logs
	// or server spans).
	Totals(service string) (callers, self map[string]Counts)
	// P99 is each version's p99 latency over the recent window, with the
	// number of requests it summarises.
	P99(service string, window time.Duration) map[string]WindowP99
}

// WindowP99 is a version's p99 over a window and the requests behind it.
type WindowP99 struct {
	P99Ms    float64
	Requests uint64
}

// Catalog says how many instances each version of a service has in Consul
// (cmd adapts the discovery watcher). ok is false before the first catalog.
type Catalog interface {
	Versions(service string) (versions map[string]int, ok bool)
}

// Options configure a Controller.
type Options struct {
	Client *api.Client
	// Prefix of the KV keys (default "signalbox/rollouts/").
	Prefix  string
	Counts  CountSource
	Catalog Catalog
	// Plans receives every plan of every rollout, whenever one changes.
	Plans func(map[string]rollout.Plan)
	// Interval between looks at the traffic (default 1s).
	Interval time.Duration
	// LockWait is how long a replica waits before trying again for the lock
	// after losing it or failing to get it (default 5s).
	LockWait time.Duration
	Logger   *slog.Logger
	Now      func() time.Time
	// ReplicaID names this replica in the lock. It must be stable across
	// restarts and unique among replicas (serve uses host name and HTTP
	// address): a restarted replica frees the lock its crashed self held.
	// Default: host name and process id.
	ReplicaID string
	// OnChange, when set, is told of every rollout the controller wrote (for
	// notifications and metrics).
	OnChange func(old, new rollout.Rollout)
	// OnRead, when set, is called after each read of the rollouts from KV
	// (a blocking query: when they changed, or when it timed out), on every
	// replica, for gauges that must follow KV where the change was not
	// written. It must not block.
	OnRead func()
}

// Controller drives the releases. It is safe for concurrent use.
type Controller struct {
	o     Options
	store *kvStore

	mu         sync.Mutex
	current    map[string]stored // by service, as last read or written
	plans      map[string]rollout.Plan
	leader     bool
	loaded     chan struct{}
	loadedOnce sync.Once
	// last are the totals at the previous look, per rollout id, so that a
	// look feeds exact increments; lost on restart (the first look after
	// one only takes a reading).
	last map[string]lastLook
}

type lastLook struct {
	callers, self map[string]Counts
}

// New makes a controller.
func New(o Options) *Controller {
	if o.Prefix == "" {
		o.Prefix = "signalbox/rollouts/"
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.LockWait <= 0 {
		o.LockWait = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReplicaID == "" {
		o.ReplicaID = hostID()
	}
	if o.Plans == nil {
		o.Plans = func(map[string]rollout.Plan) {}
	}
	return &Controller{o: o, store: &kvStore{kv: o.Client.KV(), prefix: o.Prefix}, current: map[string]stored{}, plans: map[string]rollout.Plan{}, last: map[string]lastLook{}, loaded: make(chan struct{})}
}

// Run watches KV (every replica) and drives while it holds the lock, until
// ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- c.watch(ctx) }()
	go func() { errc <- c.lead(ctx) }()
	err := <-errc
	if err2 := <-errc; err == nil {
		err = err2
	}
	return err
}

// Loaded is closed once the rollouts in KV were read and their plans
// handed over: serving xDS before that would spread a canary's traffic over
// every instance for a moment after a restart.
func (c *Controller) Loaded() <-chan struct{} { return c.loaded }

// IsLeader reports whether this replica drives.
func (c *Controller) IsLeader() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// watch follows the KV prefix and serves the plans it holds.
func (c *Controller) watch(ctx context.Context) error {
	var index uint64
	backoff := time.Second
	for ctx.Err() == nil {
		all, next, err := c.store.list(ctx, index)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			c.o.Logger.Warn("reading rollouts from Consul KV", "err", err)
			if all == nil {
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				continue
			}
		}
		restored := next < index
		if restored {
			next = 0 // Consul's index went backwards (a restore): start over
		}
		index = next
		c.mu.Lock()
		for svc, s := range all {
			// A write of ours may be newer than this read; after a restore
			// every index is lower, and KV is the truth again.
			if cur, ok := c.current[svc]; !ok || s.index >= cur.index || restored {
				c.current[svc] = s
			}
		}
		// A partial answer (a key that did not decode) removes nothing: the
		// bad key's plan stays as it was.
		if err == nil {
			for svc := range c.current {
				if _, ok := all[svc]; !ok {
					delete(c.current, svc)
				}
			}
		}
		c.publishLocked()
		c.mu.Unlock()
		// Consul answered: what could be read is loaded. A key that does
		// not decode was logged above and is skipped; it must not hold
		// back every other service's configuration.
		c.loadedOnce.Do(func() { close(c.loaded) })
		if c.o.OnRead != nil {
			c.o.OnRead()
		}
	}
	return nil
}

// publishLocked hands every rollout's plan to xds if one changed.
func (c *Controller) publishLocked() {
	plans := map[string]rollout.Plan{}
	for svc, s := range c.current {
		if p := rollout.PlanOf(s.r); p != nil {
			plans[svc] = *p
		}
	}
	same := len(plans) == len(c.plans)
	for svc, p := range plans {
		if q, ok := c.plans[svc]; !ok || !p.Equal(q) || !same {
			same = false
			break
		}
	}
	if same {
		return
	}
	c.plans = plans
	c.o.Plans(plans)
}

// lead takes the session lock and drives while holding it.
func (c *Controller) lead(ctx context.Context) error {
	c.reclaim(ctx)
	for ctx.Err() == nil {
		lock, err := c.o.Client.LockOpts(&api.LockOptions{
			Key:   c.o.Prefix + leaderKey,
			Value: []byte(c.o.ReplicaID),
			// Next to no lock delay: check-and-set on every write, not the
			// lock, keeps two drivers from both moving a release; the lock
			// only makes one replica do the work. (With a delay, Consul's
			// client retries only after 5s, which would stall releases.)
			SessionName:    "signalbox rollout controller",
			SessionTTL:     "10s",
			LockDelay:      time.Millisecond,
			LockWaitTime:   c.o.LockWait,
			MonitorRetries: 3,
		})
		if err != nil {
			return fmt.Errorf("rollout lock: %w", err)
		}
		stop := make(chan struct{})
		go func() {
			<-ctx.Done()
			close(stop)
		}()
		lost, err := lock.Lock(stop)
		if err != nil || lost == nil {
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				c.o.Logger.Warn("taking the rollout lock", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.o.LockWait):
			}
			continue
		}
		c.o.Logger.Info("driving rollouts: this replica holds the lock", "replica", c.o.ReplicaID)
		c.setLeader(true)
		c.drive(ctx, lost)
		c.setLeader(false)
		_ = lock.Unlock() // also ends the session it made
		if ctx.Err() == nil {
			c.o.Logger.Warn("lost the rollout lock: another replica drives now")
		}
	}
	return nil
}

// reclaim frees the lock when it is held by this replica's previous life (a
// crash leaves the session until its TTL runs out): nobody else can have
// this replica's id, so waiting would only stall every release.
func (c *Controller) reclaim(ctx context.Context) {
	p, _, err := c.o.Client.KV().Get(c.o.Prefix+leaderKey, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil || p == nil || p.Session == "" || string(p.Value) != c.o.ReplicaID {
		return
	}
	if _, err := c.o.Client.Session().Destroy(p.Session, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		c.o.Logger.Warn("freeing the rollout lock of this replica's previous run", "session", p.Session, "err", err)
		return
	}
	c.o.Logger.Info("freed the rollout lock left by this replica's previous run", "session", p.Session)
}

func (c *Controller) setLeader(on bool) {
	c.mu.Lock()
	c.leader = on
	if !on {
		c.last = map[string]lastLook{} // the next leader takes fresh readings
	}
	c.mu.Unlock()
}

// drive looks at every active rollout each interval until the lock is lost.
func (c *Controller) drive(ctx context.Context, lost <-chan struct{}) {
	tick := time.NewTicker(c.o.Interval)
	defer tick.Stop()
	for {
		c.driveOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-lost:
			return
		case <-tick.C:
		}
	}
}

// driveOnce steps every rollout that is not over.
func (c *Controller) driveOnce(ctx context.Context) {
	c.mu.Lock()
	var todo []stored
	for _, s := range c.current {
		if !s.r.Phase.Terminal() {
			todo = append(todo, s)
		} else {
			// Ended: a retry must start from a fresh reading, not count
			// what was served while it was over.
			delete(c.last, s.r.ID)
		}
	}
	c.mu.Unlock()
	for _, s := range todo {
		o, look := c.observe(s.r)
		if _, err := c.advance(ctx, s, o, &look); err != nil && !errors.Is(err, errCASConflict) && ctx.Err() == nil {
			c.o.Logger.Warn("stepping rollout", "rollout", s.r.ID, "err", err)
		}
	}
}

// observe builds a look at the traffic and the catalog for a rollout, and
// the reading it was made from; the reading becomes the base of the next
// look only once the look is written (advance), so that a look whose write
// fails is not lost: the next one covers its traffic too.
func (c *Controller) observe(r rollout.Rollout) (rollout.Observation, lastLook) {
	var o rollout.Observation
	if vs, ok := c.o.Catalog.Versions(r.Spec.Service); ok {
		for _, v := range []string{r.Spec.Baseline, r.Spec.Candidate} {
			if vs[v] == 0 {
				o.Missing = v
			}
		}
	}
	callers, self := c.o.Counts.Totals(r.Spec.Service)
	look := lastLook{callers: callers, self: self}
	c.mu.Lock()
	prev, seen := c.last[r.ID]
	c.mu.Unlock()
	if !seen {
		return o, look // the first reading: nothing to compare it with yet
	}
	// Callers' sidecars count each request once, with connection failures
	// the app never sees; without sidecars (proxyless gRPC) the service's
	// own spans are all there is.
	now, before := callers, prev.callers
	if !hasTraffic(callers, r.Spec) {
		now, before = self, prev.self
	}
	p99 := c.o.Counts.P99(r.Spec.Service, time.Minute)
	o.Sample = &rollout.Sample{
		Baseline:  delta(now[r.Spec.Baseline], before[r.Spec.Baseline], p99[r.Spec.Baseline]),
		Candidate: delta(now[r.Spec.Candidate], before[r.Spec.Candidate], p99[r.Spec.Candidate]),
	}
	return o, look
}

func hasTraffic(m map[string]Counts, s rollout.Spec) bool {
	return m[s.Baseline].Requests+m[s.Candidate].Requests > 0
}

// delta is the increment between two readings; a counter that went back
// (its series expired, or the store restarted) starts from zero.
func delta(now, before Counts, p99 WindowP99) rollout.VersionSample {
	if now.Requests < before.Requests || now.Errors < before.Errors {
		before = Counts{}
	}
	return rollout.VersionSample{Requests: now.Requests - before.Requests, Errors: now.Errors - before.Errors, P99Ms: p99.P99Ms, P99Requests: p99.Requests}
}

// advance steps one rollout and writes it with check-and-set. look, when
// set, is the reading o was made from (see observe): kept once written.
func (c *Controller) advance(ctx context.Context, s stored, o rollout.Observation, look *lastLook) (rollout.Rollout, error) {
	next, _, err := rollout.Step(s.r, o, c.o.Now())
	if err != nil {
		return s.r, err
	}
	idx, err := c.store.put(ctx, next, s.index)
	if errors.Is(err, errWrittenIndexUnknown) && look != nil {
		// Written: its traffic is counted, and must not be again. The
		// watch brings the new index.
		c.mu.Lock()
		c.last[next.ID] = *look
		c.mu.Unlock()
	}
	if err != nil {
		return s.r, err
	}
	c.mu.Lock()
	if look != nil {
		c.last[next.ID] = *look
	}
	if cur, ok := c.current[next.Spec.Service]; !ok || idx > cur.index {
		c.current[next.Spec.Service] = stored{r: next, index: idx}
	}
	c.publishLocked()
	c.mu.Unlock()
	if c.o.OnChange != nil && changed(s.r, next) {
		c.o.OnChange(s.r, next)
	}
	return next, nil
}

func changed(a, b rollout.Rollout) bool {
	return a.Phase != b.Phase || a.Step != b.Step || len(a.History) != len(b.History)
}

// Create starts a rollout. It checks the spec, that the service and both
// versions are in Consul, and that the service has no active rollout.
func (c *Controller) Create(ctx context.Context, spec rollout.Spec, actor string) (rollout.Rollout, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return rollout.Rollout{}, fmt.Errorf("%w: %w", rollout.ErrInvalid, err)
	}
	vs, ok := c.o.Catalog.Versions(spec.Service)
	if !ok {
		return rollout.Rollout{}, fmt.Errorf("%w: signalbox has not read Consul's catalog yet; try again in a moment", rollout.ErrUnavailable)
	}
	if len(vs) == 0 {
		return rollout.Rollout{}, fmt.Errorf("%w: service %q is not in Consul", rollout.ErrNotFound, spec.Service)
	}
	for _, v := range []string{spec.Baseline, spec.Candidate} {
		if vs[v] == 0 {
			return rollout.Rollout{}, fmt.Errorf("%w: service %q has no instance of version %q in Consul (it has %s)", rollout.ErrNotFound, spec.Service, v, versionList(vs))
		}
	}
	for attempt := 0; attempt < 5; attempt++ {
		cur, exists, err := c.store.get(ctx, spec.Service)
		if err != nil {
			return rollout.Rollout{}, err
		}
		seq := 1
		if exists {
			if !cur.r.Phase.Terminal() {
				return rollout.Rollout{}, fmt.Errorf("%w: %s already has an active rollout, %s (%s): abort it or wait for it to end", rollout.ErrConflict, spec.Service, cur.r.ID, cur.r.Phase)
			}
			if _, n, ok := splitID(cur.r.ID); ok {
				seq = n + 1
			}
		}
		now := c.o.Now()
		r := rollout.New(fmt.Sprintf("%s.%d", spec.Service, seq), spec, now)
		r.History = append(r.History, rollout.Event{At: now, Kind: "command", Actor: actor, Reason: "created"})
		if exists {
			if err := c.store.archive(ctx, cur.r); err != nil {
				return rollout.Rollout{}, err
			}
		}
		// Step once at once: the first step's plan is served without waiting
		// for the next look.
		next, _, err := rollout.Step(r, rollout.Observation{}, now)
		if err != nil {
			return rollout.Rollout{}, err
		}
		idx, err := c.store.put(ctx, next, cur.index)
		if errors.Is(err, errCASConflict) {
			continue
		}
		if err != nil {
			return rollout.Rollout{}, err
		}
		c.mu.Lock()
		c.current[spec.Service] = stored{r: next, index: idx}
		delete(c.last, next.ID)
		c.publishLocked()
		c.mu.Unlock()
		if c.o.OnChange != nil {
			c.o.OnChange(rollout.Rollout{}, next) // a new rollout: every event is news
		}
		return next, nil
	}
	return rollout.Rollout{}, fmt.Errorf("%w: %s's rollout kept changing while it was being created; try again", rollout.ErrConflict, spec.Service)
}

func versionList(vs map[string]int) string {
	var names []string
	for v := range vs {
		names = append(names, strconv.Quote(v))
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "none"
	}
	return fmt.Sprint(names)
}

func splitID(id string) (string, int, bool) {
	svc, ok := serviceOfID(id)
	if !ok {
		return "", 0, false
	}
	n, err := strconv.Atoi(id[len(svc)+1:])
	return svc, n, err == nil
}

// Command applies an operator's command to a rollout.
func (c *Controller) Command(ctx context.Context, id string, cmd rollout.Command) (rollout.Rollout, error) {
	svc, _, ok := splitID(id)
	if !ok {
		return rollout.Rollout{}, fmt.Errorf("%w: rollout %q: ids look like <service>.<n>, e.g. greeter.3", rollout.ErrNotFound, id)
	}
	for attempt := 0; attempt < 5; attempt++ {
		cur, exists, err := c.store.get(ctx, svc)
		if err != nil {
			return rollout.Rollout{}, err
		}
		if !exists || cur.r.ID != id {
			if _, err := c.Get(ctx, id); err == nil {
				return rollout.Rollout{}, fmt.Errorf("%w: rollout %s has ended and was replaced by a newer one of %s", rollout.ErrConflict, id, svc)
			}
			return rollout.Rollout{}, fmt.Errorf("%w: no rollout %q", rollout.ErrNotFound, id)
		}
		next, err := c.advance(ctx, cur, rollout.Observation{Command: &cmd}, nil)
		if errors.Is(err, errCASConflict) {
			continue
		}
		if err == nil && cmd.Kind == rollout.CmdRetry {
			c.mu.Lock()
			delete(c.last, id) // step 1 starts from a fresh reading
			c.mu.Unlock()
		}
		return next, err
	}
	return rollout.Rollout{}, fmt.Errorf("%w: rollout %s kept changing; try again", rollout.ErrConflict, id)
}

// List returns the current rollout of every service (active or last
// ended), newest first; with archived, the older ones too.
func (c *Controller) List(ctx context.Context, archived bool) ([]rollout.Rollout, error) {
	all, _, err := c.store.list(ctx, 0)
	if err != nil && all == nil {
		return nil, err
	}
	var out []rollout.Rollout
	for _, s := range all {
		out = append(out, s.r)
	}
	if archived {
		old, err := c.store.archived(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, old...)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.After(out[b].CreatedAt) })
	return out, nil
}

// Get returns one rollout by id.
func (c *Controller) Get(ctx context.Context, id string) (rollout.Rollout, error) {
	svc, _, ok := splitID(id)
	if !ok {
		return rollout.Rollout{}, fmt.Errorf("%w: rollout %q: ids look like <service>.<n>, e.g. greeter.3", rollout.ErrNotFound, id)
	}
	cur, exists, err := c.store.get(ctx, svc)
	if err != nil {
		return rollout.Rollout{}, err
	}
	if exists && cur.r.ID == id {
		return cur.r, nil
	}
	old, err := c.store.archived(ctx)
	if err != nil {
		return rollout.Rollout{}, err
	}
	for _, r := range old {
		if r.ID == id {
			return r, nil
		}
	}
	return rollout.Rollout{}, fmt.Errorf("%w: no rollout %q", rollout.ErrNotFound, id)
}
