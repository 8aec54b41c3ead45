// Package topology keeps the live service call graph: per edge (caller →
// callee, at version granularity), a ring of fixed-size time buckets of
// request counts by status class, bytes, and a latency histogram (a
// DDSketch: one logarithmic mapping for the whole store over integer
// counts, see hist.go). Memory is bounded by edges × buckets, never by
// requests: the number of edges has a hard cap, and what does not fit is
// counted as dropped. Idle edges expire. The store takes the time from its
// callers, so everything here is testable without a clock: its clock is the
// latest now given to Advance or Expire, and an observation stamped more
// than a bucket after it is counted at it (see Record).
//
// Graph queries do not sum every bucket of their window: each edge keeps
// the sum of the window's closed buckets and slides it as buckets close
// (window.go), and the graph's order is kept while the edges stay the same
// (layout.go).
package topology

import (
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// MaxSkew bounds how far a sender's timestamp may be from when signalbox
// received it. Past it the sender's clock is not trusted and the arrival
// time is used instead (the Zipkin collector and the ALS server both apply
// it), so that a host with a wrong clock can neither poison future buckets
// nor have all its calls fall out of the window.
const MaxSkew = 5 * time.Minute

// Node is one end of an edge: a service, and its version subset when known.
type Node struct {
	Service string `json:"service"`
	Version string `json:"version,omitempty"`
}

// Protocol of an edge.
type Protocol string

const (
	HTTP Protocol = "http"
	GRPC Protocol = "grpc"
	TCP  Protocol = "tcp"
)

// Observation is one request (or TCP connection) seen by a sidecar or a span.
type Observation struct {
	Time     time.Time
	Source   Node
	Target   Node
	Protocol Protocol
	// Status is the HTTP status code, 0 when there was no response.
	Status int
	// GRPCStatus is the gRPC status code, -1 when unknown.
	GRPCStatus int
	// ConnFailure: the request failed to reach the target (Envoy response
	// flags UF, UH, URX, …).
	ConnFailure bool
	// Failed marks the request failed whatever its status says (a Zipkin
	// span's error tag).
	Failed  bool
	Bytes   uint64
	Latency time.Duration
}

// Class is a request's outcome class.
type Class int

const (
	Class2xx Class = iota
	Class3xx
	Class4xx
	Class5xx
	ClassConnFailure
	numClasses
)

// ClassOf classifies an observation. No response at all is a connection
// failure, also when the caller gave up first (Envoy's DC, DR): a target
// that hangs until its callers' deadlines pass must show as failing, and
// impatient callers weigh on every version alike, which the release
// analysis, comparing versions, discounts.
func ClassOf(o Observation) Class {
	switch {
	case o.ConnFailure || o.Status == 0 && o.GRPCStatus < 0:
		return ClassConnFailure
	case o.Status >= 500:
		return Class5xx
	case o.Status >= 400:
		return Class4xx
	case o.Status >= 300:
		return Class3xx
	}
	return Class2xx
}

// IsError reports whether an observation counts as an error: a 5xx, a
// connection failure, or a gRPC UNKNOWN, DEADLINE_EXCEEDED, INTERNAL or
// UNAVAILABLE (the statuses that say the callee failed, not the caller).
func IsError(o Observation) bool {
	if o.Failed {
		return true
	}
	switch ClassOf(o) {
	case Class5xx, ClassConnFailure:
		return true
	}
	switch o.GRPCStatus {
	case 2, 4, 13, 14:
		return true
	}
	return false
}

// Options size the store. Zero values take the defaults.
type Options struct {
	// Bucket is the width of a time bucket (default 10s).
	Bucket time.Duration
	// Buckets is how many buckets an edge keeps (default 90: 15 minutes).
	Buckets int
	// MaxEdges is the hard cap on edges (default 20,000).
	MaxEdges int
	// RelativeAccuracy of the latency sketches (default 0.01: quantiles
	// within 1% of the true value).
	RelativeAccuracy float64
	// Shards split the store so concurrent ingest rarely contends (default 16).
	Shards int
}

func (o Options) withDefaults() Options {
	if o.Bucket <= 0 {
		o.Bucket = 10 * time.Second
	}
	if o.Buckets <= 0 {
		o.Buckets = 90
	}
	if o.MaxEdges <= 0 {
		o.MaxEdges = 20000
	}
	if o.RelativeAccuracy <= 0 || o.RelativeAccuracy >= 1 {
		o.RelativeAccuracy = 0.01
	}
	if o.Shards <= 0 {
		o.Shards = 16
	}
	return o
}

// EdgeKey identifies an edge.
type EdgeKey struct {
	Source   Node
	Target   Node
	Protocol Protocol
}

// Store is the graph's memory. It is safe for concurrent use.
//
// It keeps two views. The edges (Record) count each request once, from the
// side that saw it best, usually the caller's sidecar: they make the graph.
// The served view (RecordServed) counts what each service saw arriving, per
// version, from its own sidecar or server spans: the release analysis
// compares it with what the callers saw.
type Store struct {
	opts   Options
	lm     latencyMapping
	seed   maphash.Seed
	edges  rings
	served rings

	// clock is the bucket index of the latest now given to Advance or
	// Expire (noClock before): an observation more than a bucket after it
	// is counted at it, and ahead counts those.
	clock atomic.Int64
	ahead atomic.Uint64

	// layouts are the shapes of the graph, by service and by version, as
	// of the edges' generation (see layout.go).
	layoutMu sync.Mutex
	layouts  [2]*layout
}

// noClock is Store.clock before Advance or Expire gave it a time.
const noClock = math.MinInt64

// rings is a sharded, capped map of series.
type rings struct {
	shards []shard
	// n counts the series, reserved before one is added (see reserve), so
	// that it never passes max.
	n atomic.Int64
	// gen counts the series added and removed.
	gen     atomic.Uint64
	max     int
	dropped atomic.Uint64
}

type shard struct {
	mu     sync.Mutex
	series map[EdgeKey]*series
}

// series is an edge's ring of buckets, its totals since it was created
// (Prometheus counters), and the sums of the windows queried lately (see
// window.go).
type series struct {
	buckets  []bucket
	lastSeen int64 // bucket index of the newest observation
	totals   Totals
	wins     [maxWindows]window
	nwins    int    // how many of wins are in use
	clock    uint64 // counts queries, for the windows' LRU
	dead     bool   // removed by Expire
}

type bucket struct {
	index  int64 // which bucket of time this slot holds
	used   bool  // whether it holds one at all
	counts [numClasses]uint64
	errors uint64
	bytes  uint64
	lat    hist[uint32]
}

// latencyBoundsMs are the upper bounds of the totals' latency histogram, in
// milliseconds (Prometheus's le).
var latencyBoundsMs = [...]float64{1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}

// LatencyBoundsMs returns the latency histogram's upper bounds in ms.
func LatencyBoundsMs() []float64 { return append([]float64(nil), latencyBoundsMs[:]...) }

// Totals are an edge's counts since it was first seen: monotonic, for
// Prometheus counters. LatencyBuckets[i] counts requests no slower than
// LatencyBoundsMs()[i] (not cumulative); slower ones count only in Requests.
type Totals struct {
	Requests       uint64
	Errors         uint64
	LatencySumMs   float64
	LatencyBuckets [len(latencyBoundsMs)]uint64
}

// New makes a store.
func New(o Options) *Store {
	o = o.withDefaults()
	s := &Store{opts: o, lm: newLatencyMapping(o.RelativeAccuracy), seed: maphash.MakeSeed()}
	s.edges.init(o.Shards, o.MaxEdges)
	s.served.init(o.Shards, o.MaxEdges)
	s.clock.Store(noClock)
	return s
}

func (r *rings) init(shards, max int) {
	r.shards = make([]shard, shards)
	r.max = max
	for i := range r.shards {
		r.shards[i].series = map[EdgeKey]*series{}
	}
}

// reserve takes a place for a new series under the cap; false when there
// is none. The check and the count are one step: concurrent adds to
// different shards cannot both take the last place.
func (r *rings) reserve() bool {
	for {
		n := r.n.Load()
		if n >= int64(r.max) {
			return false
		}
		if r.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Ahead is how many observations were stamped more than a bucket after the
// store's clock (a sender's clock running fast) and counted in its bucket
// instead: one far ahead would take the ring slot of a bucket of real
// traffic, and keep its edge from expiring.
func (s *Store) Ahead() uint64 { return s.ahead.Load() }

// setClock moves the store's clock on to now. It never goes back: the
// Advance and Expire loops may call in either order, and a clock set back
// would take real traffic for traffic ahead of it.
func (s *Store) setClock(now time.Time) {
	idx := s.bucketIndex(now)
	for {
		c := s.clock.Load()
		if c >= idx || s.clock.CompareAndSwap(c, idx) {
			return
		}
	}
}

// Dropped is how many observations were refused because the edge cap was
// reached.
func (s *Store) Dropped() uint64 { return s.edges.dropped.Load() + s.served.dropped.Load() }

// Edges is the number of edges held.
func (s *Store) Edges() int { return int(s.edges.n.Load()) }

func (s *Store) bucketIndex(t time.Time) int64 { return t.UnixNano() / int64(s.opts.Bucket) }

// shardOf is the shard of an edge, chosen by its services and protocol, not
// its versions: the versions of a service edge share a shard, so that a
// graph by service sums them under one lock.
func (s *Store) shardOf(r *rings, k EdgeKey) *shard {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(k.Source.Service)
	h.WriteByte(0)
	h.WriteString(k.Target.Service)
	h.WriteByte(0)
	h.WriteString(string(k.Protocol))
	return &r.shards[h.Sum64()%uint64(len(r.shards))]
}

// Record adds one request to its edge. It reports false when the
// observation was dropped because a new edge would pass the cap. An
// observation stamped more than a bucket after the store's clock is counted
// in the clock's bucket (see Ahead); a negative latency counts as 0.
func (s *Store) Record(o Observation) bool {
	return s.record(&s.edges, EdgeKey{Source: o.Source, Target: o.Target, Protocol: o.Protocol}, o)
}

// RecordServed adds one request to what its target saw arriving (the
// served view; see Store). The source is not kept: the served view is per
// target service and version.
func (s *Store) RecordServed(o Observation) bool {
	return s.record(&s.served, EdgeKey{Target: o.Target, Protocol: o.Protocol}, o)
}

func (s *Store) record(r *rings, k EdgeKey, o Observation) bool {
	idx := s.bucketIndex(o.Time)
	if c := s.clock.Load(); c != noClock && idx > c+1 {
		idx = c
		s.ahead.Add(1)
	}
	sh := s.shardOf(r, k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	se, ok := sh.series[k]
	if !ok {
		if !r.reserve() {
			r.dropped.Add(1)
			return false
		}
		se = &series{buckets: make([]bucket, s.opts.Buckets)}
		sh.series[k] = se
		r.gen.Add(1)
	}
	failed := IsError(o)
	// A negative latency (a sender's bug) would take from the totals' sum.
	ms := max(float64(o.Latency)/float64(time.Millisecond), 0)
	se.totals.Requests++
	if failed {
		se.totals.Errors++
	}
	se.totals.LatencySumMs += ms
	for i, le := range latencyBoundsMs {
		if ms <= le {
			se.totals.LatencyBuckets[i]++
			break
		}
	}
	b := se.slot(idx)
	if !b.used || b.index != idx {
		if b.used && b.index > idx {
			// Older than the ring holds: too late to count.
			return true
		}
		if b.used && se.nwins > 0 {
			se.evicted(b)
		}
		b.index, b.used, b.counts, b.errors, b.bytes = idx, true, [numClasses]uint64{}, 0, 0
		b.lat.reset()
	}
	class := ClassOf(o)
	key, nonZero := s.lm.key(ms)
	b.counts[class]++
	if failed {
		b.errors++
	}
	b.bytes += o.Bytes
	b.lat.add(key, nonZero)
	if se.nwins > 0 {
		se.recorded(idx, class, failed, o.Bytes, key, nonZero)
	}
	if idx > se.lastSeen {
		se.lastSeen = idx
	}
	return true
}

// serviceKey is an edge's key without versions: its edge in a graph by
// service.
func serviceKey(k EdgeKey) EdgeKey {
	k.Source.Version, k.Target.Version = "", ""
	return k
}

// EachTotals calls visit with every edge's totals, in no order. visit must
// not call back into the store.
func (s *Store) EachTotals(visit func(EdgeKey, Totals)) {
	for i := range s.edges.shards {
		sh := &s.edges.shards[i]
		sh.mu.Lock()
		for k, se := range sh.series {
			visit(k, se.totals)
		}
		sh.mu.Unlock()
	}
}

// Advance slides every series' window sums on to the windows that end at
// now's bucket. Called just after a bucket closes, it takes the sliding off
// the next queries, which would otherwise each pay for every edge's slide
// (the slowest graph query of every ten at 1s polling). The sums are the
// same either way; a query that comes first does the sliding itself.
// Locks are taken for lockedEdges series at a time.
//
// now also moves the store's clock on (see Record): buckets more than one
// after it are emptied.
func (s *Store) Advance(now time.Time) {
	s.setClock(now)
	last, limit := s.bucketIndex(now), s.clock.Load()+1
	var batch []*series
	for _, r := range []*rings{&s.edges, &s.served} {
		for i := range r.shards {
			sh := &r.shards[i]
			sh.mu.Lock()
			batch = batch[:0]
			for _, se := range sh.series {
				batch = append(batch, se)
			}
			sh.mu.Unlock()
			for rest := batch; len(rest) > 0; {
				part := rest[:min(len(rest), lockedEdges)]
				rest = rest[len(part):]
				sh.mu.Lock()
				for _, se := range part {
					if !se.dead {
						se.dropAhead(limit)
						se.advance(last)
					}
				}
				sh.mu.Unlock()
			}
		}
	}
}

// NextBucket is when the bucket after now's begins.
func (s *Store) NextBucket(now time.Time) time.Time {
	return time.Unix(0, (s.bucketIndex(now)+1)*int64(s.opts.Bucket))
}

// Expire removes edges (and served-view series) with no observation in the
// last ttl. now also moves the store's clock on, as in Advance.
func (s *Store) Expire(now time.Time, ttl time.Duration) int {
	s.setClock(now)
	limit := s.clock.Load() + 1
	cutoff := s.bucketIndex(now.Add(-ttl))
	removed := 0
	for _, r := range []*rings{&s.edges, &s.served} {
		n := 0
		for i := range r.shards {
			sh := &r.shards[i]
			sh.mu.Lock()
			for k, se := range sh.series {
				se.dropAhead(limit)
				if se.lastSeen < cutoff {
					delete(sh.series, k)
					se.dead = true
					n++
				}
			}
			sh.mu.Unlock()
		}
		r.n.Add(int64(-n))
		if n > 0 {
			r.gen.Add(1)
		}
		removed += n
	}
	return removed
}

// dropAhead empties the buckets after limit, one bucket after the store's
// clock: a sender whose clock ran fast filled them before the store had a
// clock. Left, such a bucket would hold its ring slot against the real
// traffic of its turn, and its lastSeen would keep the series from
// expiring. The shard's lock is held.
func (se *series) dropAhead(limit int64) {
	if se.lastSeen <= limit {
		return
	}
	se.lastSeen = math.MinInt64
	for i := range se.buckets {
		b := &se.buckets[i]
		if !b.used {
			continue
		}
		if b.index <= limit {
			se.lastSeen = max(se.lastSeen, b.index)
			continue
		}
		if se.nwins > 0 {
			se.evicted(b)
		}
		b.used = false
	}
}
