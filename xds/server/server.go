// Package server serves the xDS IR to Envoy sidecars and proxyless gRPC
// clients over ADS (SotW and delta) on one gRPC port.
//
// Resources are shared, not per node: every resource type lives in one
// go-control-plane LinearCache, so a resource is marshalled once however many
// clients subscribe to it, and a change wakes only the watches of the names it
// touches. The server loop rebuilds only the services whose inputs changed,
// diffs the IR, and applies:
//   - endpoint changes at once (the fast path: an EDS update never waits), and
//   - cluster, listener and route changes after a debounce (a quiet period,
//     bounded by a maximum delay), in make-before-break order: clusters,
//     endpoints, listeners, routes; clusters and endpoints nothing refers to
//     any more are removed only after a grace period.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryservice "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/build"
	"github.com/signalbox/signalbox/xds/ir"
	"github.com/signalbox/signalbox/xds/translate"
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	// NodeCheck, when set, decides whether a stream may speak as the node
	// its requests name (under mutual TLS: xds/nodeauth). Its error, a
	// gRPC status, ends the stream and reaches the client. With it, a node
	// id in use by a connected client of one service is refused to a client
	// of another: a sidecar's snapshot is keyed by node id.
	NodeCheck func(ctx context.Context, node *corev3.Node) error
	// Quiet is how long the inputs must stay unchanged before cluster,
	// listener and route changes are pushed (default 10ms).
	Quiet time.Duration
	// MaxDelay bounds how long a change waits for the inputs to settle
	// (default 100ms).
	MaxDelay time.Duration
	// RemovalGrace is how long a cluster nothing refers to stays served, so
	// clients still on an older route never lose it (default 5s).
	RemovalGrace time.Duration
	// Policy is passed to xds/build.
	Policy build.Policy
	// VersionPrefix starts every version this process serves; the default is
	// unique per start, so versions never repeat across restarts.
	VersionPrefix string
	Logger        *slog.Logger
	Registerer    prometheus.Registerer
}

const (
	defaultQuiet        = 10 * time.Millisecond
	defaultMaxDelay     = 100 * time.Millisecond
	defaultRemovalGrace = 5 * time.Second
)

// Server owns the caches and the loop that fills them.
type Server struct {
	opts    Options
	log     *slog.Logger
	m       *metrics
	caches  map[string]*typeCache
	cache   cache.Cache
	tracker *tracker

	inMu    sync.Mutex
	catalog *discovery.Catalog
	plans   map[string]rollout.Plan
	plansAt time.Time
	wake    chan struct{}

	ready     chan struct{}
	readyOnce sync.Once

	statusMu    sync.Mutex
	status      Status
	sidecarView []SidecarStatus

	// Sidecars: per-node snapshots of listeners, routes and clusters.
	sidecars      cache.SnapshotCache
	sidecarEvents sidecarEvents
	snapVersion   uint64 // owned by the Run goroutine
	snapMu        sync.Mutex
	snapSeen      map[string]time.Time
	snapOrder     []string
}

// Status is the server's own view for the debug page.
type Status struct {
	Services     int                 `json:"services"`
	Resources    map[string]int      `json:"resources"`
	LastApply    time.Time           `json:"lastApply,omitzero"`
	Warnings     map[string][]string `json:"warnings,omitempty"`
	PendingSince time.Time           `json:"pendingSince,omitzero"`
}

// New makes a server. Call Register to expose it and Run to feed it.
func New(opts Options) *Server {
	if opts.Quiet <= 0 {
		opts.Quiet = defaultQuiet
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = defaultMaxDelay
	}
	if opts.MaxDelay < opts.Quiet {
		opts.MaxDelay = opts.Quiet
	}
	if opts.RemovalGrace <= 0 {
		opts.RemovalGrace = defaultRemovalGrace
	}
	if opts.VersionPrefix == "" {
		opts.VersionPrefix = strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:   opts,
		log:    opts.Logger,
		m:      newMetrics(opts.Registerer),
		caches: map[string]*typeCache{},
		wake:   make(chan struct{}, 1),
		ready:  make(chan struct{}),
		status: Status{Resources: map[string]int{}},
	}
	s.snapSeen = map[string]time.Time{}
	s.sidecars = cache.NewSnapshotCache(false, cache.IDHash{}, cpLogger{opts.Logger})
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return classify(r.GetNode(), r.GetTypeUrl()) },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return classify(r.GetNode(), r.GetTypeUrl()) },
		Caches:        map[string]cache.Cache{sidecarKey: s.sidecars},
	}
	for _, t := range servedTypes {
		tc := newTypeCache(t, opts.VersionPrefix, opts.Logger)
		s.caches[t] = tc
		mux.Caches[t] = tc.lc
	}
	for _, t := range []string{resourcev3.SecretType, resourcev3.RuntimeType, resourcev3.ScopedRouteType, resourcev3.VirtualHostType, resourcev3.ExtensionConfigType} {
		mux.Caches[t] = idleCache{}
	}
	s.tracker = newTracker(opts.Logger, s.m, func(typeURL, version string) (time.Time, bool) {
		if c, ok := s.caches[typeURL]; ok {
			if t, ok := c.changeSeen(version); ok {
				return t, true
			}
		}
		return s.snapshotSeen(version)
	})
	// Every stream of a sidecar is reported, not only a node's first: a
	// reconnect may carry a changed bootstrap, or race the loop's handling
	// of the old stream's departure.
	s.tracker.arrived = func(n *corev3.Node) {
		if isSidecar(n) {
			s.sidecarEvents.add(n)
			s.poke()
		}
	}
	s.tracker.check = opts.NodeCheck
	s.tracker.gone = func(nodeID string) {
		s.sidecarEvents.remove(nodeID)
		s.poke()
	}
	s.cache = nackGuard{Cache: mux, prefix: opts.VersionPrefix, lastSent: s.tracker.lastSent}
	return s
}

// Register adds the ADS service (SotW and delta) and the per-type discovery
// services to g. ctx bounds go-control-plane's stream handling.
func (s *Server) Register(ctx context.Context, g *grpc.Server) {
	xs := serverv3.NewServer(ctx, s.cache, s.tracker)
	discoveryservice.RegisterAggregatedDiscoveryServiceServer(g, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(g, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(g, xs)
}

// Ready is closed once the first catalog has been applied: a client that
// connected earlier would be told its resources do not exist.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// SetCatalog hands the server a new catalog; the latest one wins.
func (s *Server) SetCatalog(c *discovery.Catalog) {
	s.inMu.Lock()
	s.catalog = c
	s.inMu.Unlock()
	s.poke()
}

// SetPlans replaces every plan; a service without a plan spreads its traffic
// over all its instances.
func (s *Server) SetPlans(plans map[string]rollout.Plan) {
	cp := make(map[string]rollout.Plan, len(plans))
	for k, v := range plans {
		cp[k] = v.Normalized()
	}
	s.inMu.Lock()
	s.plans = cp
	s.plansAt = time.Now()
	s.inMu.Unlock()
	s.poke()
}

func (s *Server) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Clients is the debug view of every connected stream.
func (s *Server) Clients() []ClientStatus { return s.tracker.Clients() }

// Sidecars is the debug view of the connected Envoy sidecars.
func (s *Server) Sidecars() []SidecarStatus {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	out := append([]SidecarStatus(nil), s.sidecarView...)
	sort.Slice(out, func(a, b int) bool { return out[a].Node < out[b].Node })
	return out
}

// Status is the debug view of what the server serves.
func (s *Server) Status() Status {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	st := s.status
	st.Resources = make(map[string]int, len(s.status.Resources))
	for k, v := range s.status.Resources {
		st.Resources[k] = v
	}
	return st
}

// Run applies inputs until ctx ends. It never returns an error of its own
// making: a failed apply is logged and retried with the next input.
func (s *Server) Run(ctx context.Context) error {
	st := newLoopState()
	var timer *time.Timer
	var timerC <-chan time.Time
	stopTimer := func() {
		if timer != nil {
			timer.Stop()
		}
		timer, timerC = nil, nil
	}
	defer stopTimer()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
			s.inMu.Lock()
			cat, plans, plansAt := s.catalog, s.plans, s.plansAt
			s.inMu.Unlock()
			fresh := s.admitSidecars(st)
			if cat == nil {
				continue
			}
			now := time.Now()
			st.ingest(cat, plans, plansAt, s.opts.Policy)
			// Fast path: endpoint changes of served clusters go out now,
			// and a sidecar that just connected gets its config.
			if st.primed {
				if err := s.apply(st, now, false); err != nil {
					s.log.Error("xds: apply endpoints", "error", err)
				}
				if len(fresh) > 0 {
					if err := s.syncSidecars(ctx, st, cat, plans, fresh); err != nil {
						s.log.Error("xds: sidecars", "error", err)
					}
				}
			}
			if st.settle() {
				if st.firstPending.IsZero() {
					st.firstPending = now
				}
				st.lastInput = now
			}
		case <-timerC:
			timer, timerC = nil, nil
			if err := s.apply(st, time.Now(), true); err != nil {
				s.log.Error("xds: apply", "error", err)
			}
			// Sidecars follow every structural change; unchanged ones are
			// not touched (their build is compared before a snapshot is set).
			if st.sidecarsDirty {
				if err := s.syncSidecars(ctx, st, st.lastCatalog, st.lastPlans, nil); err != nil {
					s.log.Error("xds: sidecars", "error", err)
				}
				st.sidecarsDirty = false
			}
		}
		stopTimer()
		if d, ok := st.nextFlush(s.opts, time.Now()); ok {
			timer = time.NewTimer(d)
			timerC = timer.C
		}
	}
}

// loopState is owned by the Run goroutine.
type loopState struct {
	built   map[string]builtService
	desired map[string]map[string]any // type URL → name → IR value
	applied map[string]map[string]any
	// dirty names differ (or may differ) between desired and applied, so an
	// apply never scans every resource.
	dirty map[string]map[string]struct{}
	// orphaned is when an applied cluster or endpoint stopped being desired.
	orphaned    map[string]map[string]time.Time
	seenAt      time.Time // when the newest ingested change was seen
	lastCatalog *discovery.Catalog
	lastPlans   map[string]rollout.Plan
	lastPlansAt time.Time
	proxies     *build.Proxies
	// sidecars are the connected Envoy sidecars; sidecarsDirty means an
	// input of theirs changed since their snapshots were built.
	sidecars      map[string]*sidecarState
	sidecarsDirty bool
	firstPending  time.Time
	lastInput     time.Time
	primed        bool // a full apply has happened
}

type builtService struct {
	svc  *discovery.Service
	plan *rollout.Plan
	cfg  build.ServiceConfig
}

func newLoopState() *loopState {
	st := &loopState{
		built:    map[string]builtService{},
		desired:  map[string]map[string]any{},
		applied:  map[string]map[string]any{},
		dirty:    map[string]map[string]struct{}{},
		orphaned: map[string]map[string]time.Time{},
		sidecars: map[string]*sidecarState{},
		proxies:  build.NewProxies(),
	}
	for _, t := range servedTypes {
		st.desired[t] = map[string]any{}
		st.applied[t] = map[string]any{}
		st.dirty[t] = map[string]struct{}{}
		st.orphaned[t] = map[string]time.Time{}
	}
	return st
}

// ingest rebuilds the services whose catalog entry or plan changed and
// updates the desired resources. plansAt is when the plans were last set.
func (st *loopState) ingest(cat *discovery.Catalog, plans map[string]rollout.Plan, plansAt time.Time, pol build.Policy) {
	if cat != st.lastCatalog && cat.SeenAt.After(st.seenAt) {
		st.seenAt = cat.SeenAt
	}
	if plansAt.After(st.lastPlansAt) && plansAt.After(st.seenAt) {
		st.seenAt = plansAt
	}
	// Keep the sidecar index in step, one changed service at a time; the
	// services whose sidecars changed are rebuilt even if they did not.
	var fronted map[string]bool
	if cat != st.lastCatalog {
		for _, name := range cat.Names() {
			svc, _ := cat.Service(name)
			for _, d := range st.proxies.Update(name, svc) {
				if fronted == nil {
					fronted = map[string]bool{}
				}
				fronted[d] = true
			}
		}
		if st.proxies.Len() > cat.Len() {
			for _, name := range st.proxies.Gone(cat) {
				for _, d := range st.proxies.Update(name, nil) {
					if fronted == nil {
						fronted = map[string]bool{}
					}
					fronted[d] = true
				}
			}
		}
	}
	st.lastCatalog, st.lastPlans, st.lastPlansAt = cat, plans, plansAt
	routable := 0 // the names of cat that belong in st.built
	for _, name := range cat.Names() {
		svc, _ := cat.Service(name)
		if st.proxies.IsProxyService(name) {
			// A service of sidecar registrations is no routing target.
			if prev, ok := st.built[name]; ok {
				st.forget(prev.cfg)
				delete(st.built, name)
				st.sidecarsDirty = true
			}
			continue
		}
		routable++
		var plan *rollout.Plan
		if p, ok := plans[name]; ok {
			plan = &p
		}
		prev, ok := st.built[name]
		if ok && prev.svc == svc && samePlan(prev.plan, plan) && !fronted[name] {
			continue
		}
		cfg := build.Service(svc, plan, pol, st.proxies)
		if ok {
			st.forget(prev.cfg)
		}
		st.remember(cfg)
		st.built[name] = builtService{svc: svc, plan: plan, cfg: cfg}
		st.sidecarsDirty = true
	}
	// Every routable service of cat is in st.built now, so anything more is
	// a service that left the catalog. Comparing with cat.Len() instead
	// would count proxy-only services, which are never built, and miss a
	// removal whenever the two numbers happen to match.
	if len(st.built) > routable {
		for name, b := range st.built {
			if _, ok := cat.Service(name); !ok {
				st.forget(b.cfg)
				delete(st.built, name)
				st.sidecarsDirty = true
			}
		}
	}
}

func samePlan(a, b *rollout.Plan) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func (st *loopState) set(t, name string, v any) {
	st.desired[t][name] = v
	st.dirty[t][name] = struct{}{}
}

func (st *loopState) unset(t, name string) {
	delete(st.desired[t], name)
	st.dirty[t][name] = struct{}{}
}

// remember makes a service's resources desired. The listener and route
// values hold only what their translation reads, so that a change the
// proxyless resources do not show (the listener never shows routing; the
// route never shows the sidecars-only mirror) pushes nothing to proxyless
// clients.
func (st *loopState) remember(cfg build.ServiceConfig) {
	st.set(resourcev3.ListenerType, cfg.Service.Name, ir.Service{Name: cfg.Service.Name})
	route := cfg.Service
	route.Mirror = nil
	st.set(resourcev3.RouteType, cfg.Service.Name, route)
	for _, c := range cfg.Clusters {
		st.set(resourcev3.ClusterType, c.Name, c)
	}
	for _, e := range cfg.Endpoints {
		st.set(resourcev3.EndpointType, e.Cluster, e)
	}
}

func (st *loopState) forget(cfg build.ServiceConfig) {
	st.unset(resourcev3.ListenerType, cfg.Service.Name)
	st.unset(resourcev3.RouteType, cfg.Service.Name)
	for _, c := range cfg.Clusters {
		st.unset(resourcev3.ClusterType, c.Name)
	}
	for _, e := range cfg.Endpoints {
		st.unset(resourcev3.EndpointType, e.Cluster)
	}
}

// settle drops dirty marks whose desired and applied values are equal (a
// service rebuilt to the same result), and reports whether anything but
// endpoint updates of served clusters is left for a full apply.
func (st *loopState) settle() (pendingFull bool) {
	for _, t := range servedTypes {
		for name := range st.dirty[t] {
			want, wanted := st.desired[t][name]
			got, served := st.applied[t][name]
			switch {
			case wanted && served && reflect.DeepEqual(got, want):
				delete(st.dirty[t], name)
			case t == resourcev3.EndpointType && wanted && served:
				// left for the fast path
			default:
				pendingFull = true
			}
		}
	}
	return pendingFull || !st.primed || (st.sidecarsDirty && len(st.sidecars) > 0)
}

// nextFlush is how long until the next full apply, if one is due.
func (st *loopState) nextFlush(o Options, now time.Time) (time.Duration, bool) {
	var due time.Time
	if !st.firstPending.IsZero() {
		due = st.lastInput.Add(o.Quiet)
		if limit := st.firstPending.Add(o.MaxDelay); limit.Before(due) {
			due = limit
		}
	}
	for _, t := range []string{resourcev3.ClusterType, resourcev3.EndpointType} {
		for _, since := range st.orphaned[t] {
			if d := since.Add(o.RemovalGrace); due.IsZero() || d.Before(due) {
				due = d
			}
		}
	}
	if due.IsZero() {
		return 0, false
	}
	return max(due.Sub(now), 0), true
}

// apply pushes dirty resources into the caches. With full false only
// endpoints of clusters already served are updated (the fast path).
func (s *Server) apply(st *loopState, now time.Time, full bool) error {
	if full {
		st.firstPending, st.lastInput = time.Time{}, time.Time{}
	}
	for _, t := range servedTypes {
		if !full && t != resourcev3.EndpointType {
			continue
		}
		set := map[string]types.Resource{}
		for name := range st.dirty[t] {
			want, wanted := st.desired[t][name]
			if !wanted {
				continue // removals come last
			}
			got, served := st.applied[t][name]
			if !served && !full {
				continue // a new cluster's endpoints go out with the cluster
			}
			if served && reflect.DeepEqual(got, want) {
				delete(st.dirty[t], name)
				continue
			}
			res, err := translateOne(t, want)
			if err != nil {
				return fmt.Errorf("translate %s %s: %w", shortType(t), name, err)
			}
			set[name] = res
		}
		if err := s.caches[t].update(set, nil, st.seenAt); err != nil {
			return fmt.Errorf("update %s cache: %w", shortType(t), err)
		}
		for name := range set {
			st.applied[t][name] = st.desired[t][name]
			delete(st.dirty[t], name)
			delete(st.orphaned[t], name)
		}
	}
	if full {
		if err := s.removeUndesired(st, now); err != nil {
			return err
		}
		st.primed = true
		s.m.applies.WithLabelValues("full").Inc()
	} else {
		s.m.applies.WithLabelValues("fast").Inc()
	}
	s.publishStatus(st, now, full)
	if full {
		s.readyOnce.Do(func() { close(s.ready) })
	}
	return nil
}

// removeUndesired removes what is no longer desired, routes and listeners
// first; clusters and endpoints only after the grace period, so that a client
// still on an older route never loses the cluster it points at.
func (s *Server) removeUndesired(st *loopState, now time.Time) error {
	for _, t := range []string{resourcev3.RouteType, resourcev3.ListenerType, resourcev3.ClusterType, resourcev3.EndpointType} {
		var del []string
		for name := range st.dirty[t] {
			if _, wanted := st.desired[t][name]; wanted {
				continue
			}
			if _, served := st.applied[t][name]; !served {
				delete(st.dirty[t], name)
				continue
			}
			if t == resourcev3.RouteType || t == resourcev3.ListenerType {
				del = append(del, name)
				continue
			}
			since, ok := st.orphaned[t][name]
			if !ok {
				st.orphaned[t][name] = now
				continue
			}
			if now.Sub(since) >= s.opts.RemovalGrace {
				del = append(del, name)
			}
		}
		if err := s.caches[t].update(nil, del, st.seenAt); err != nil {
			return fmt.Errorf("remove from %s cache: %w", shortType(t), err)
		}
		for _, name := range del {
			delete(st.applied[t], name)
			delete(st.orphaned[t], name)
			delete(st.dirty[t], name)
		}
	}
	// A resource desired again before its grace ran out is no orphan.
	for _, t := range []string{resourcev3.ClusterType, resourcev3.EndpointType} {
		for name := range st.orphaned[t] {
			if _, wanted := st.desired[t][name]; wanted {
				delete(st.orphaned[t], name)
			}
		}
	}
	return nil
}

func (s *Server) publishStatus(st *loopState, now time.Time, full bool) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	s.status.Services = len(st.built)
	s.status.LastApply = now
	s.status.PendingSince = st.firstPending
	for _, t := range servedTypes {
		s.status.Resources[shortType(t)] = len(st.applied[t])
		s.m.resources.WithLabelValues(shortType(t)).Set(float64(len(st.applied[t])))
	}
	if !full {
		return
	}
	warnings := map[string][]string{}
	n := 0
	for name, b := range st.built {
		if len(b.cfg.Warnings) > 0 {
			warnings[name] = b.cfg.Warnings
			n += len(b.cfg.Warnings)
		}
	}
	s.status.Warnings = warnings
	s.m.buildWarns.Set(float64(n))
}

// translateOne turns one desired IR value into its Envoy resource.
func translateOne(typeURL string, v any) (types.Resource, error) {
	switch typeURL {
	case resourcev3.ListenerType:
		return translate.APIListener(v.(ir.Service))
	case resourcev3.RouteType:
		return translate.RouteConfiguration(v.(ir.Service)), nil
	case resourcev3.ClusterType:
		return translate.Cluster(v.(ir.Cluster)), nil
	case resourcev3.EndpointType:
		return translate.LoadAssignment(v.(ir.ClusterEndpoints)), nil
	}
	return nil, fmt.Errorf("unknown type %s", typeURL)
}
