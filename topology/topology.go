// Package topology keeps the live service call graph: per edge (caller →
// callee, at version granularity), a ring of fixed-size time buckets of
// request counts by status class, bytes, and a mergeable latency sketch
// (DDSketch). Memory is bounded by edges × buckets, never by requests: the
// number of edges has a hard cap, and what does not fit is counted as
// dropped. Idle edges expire. The store takes the time from its callers, so
// everything here is testable without a clock.
package topology

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
)

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
	Bytes       uint64
	Latency     time.Duration
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

// ClassOf classifies an observation.
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
type Store struct {
	opts    Options
	seed    maphash.Seed
	shards  []shard
	edges   atomic.Int64
	dropped atomic.Uint64
}

type shard struct {
	mu    sync.Mutex
	edges map[EdgeKey]*series
}

// series is an edge's ring of buckets.
type series struct {
	buckets  []bucket
	lastSeen int64 // bucket index of the newest observation
}

type bucket struct {
	index   int64 // which bucket of time this slot holds
	counts  [numClasses]uint64
	errors  uint64
	bytes   uint64
	latency *ddsketch.DDSketch
}

// New makes a store.
func New(o Options) *Store {
	o = o.withDefaults()
	s := &Store{opts: o, seed: maphash.MakeSeed(), shards: make([]shard, o.Shards)}
	for i := range s.shards {
		s.shards[i].edges = map[EdgeKey]*series{}
	}
	return s
}

// Dropped is how many observations were refused because the edge cap was
// reached.
func (s *Store) Dropped() uint64 { return s.dropped.Load() }

// Edges is the number of edges held.
func (s *Store) Edges() int { return int(s.edges.Load()) }

func (s *Store) bucketIndex(t time.Time) int64 { return t.UnixNano() / int64(s.opts.Bucket) }

func (s *Store) shardOf(k EdgeKey) *shard {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(k.Source.Service)
	h.WriteString(k.Source.Version)
	h.WriteString(k.Target.Service)
	h.WriteString(k.Target.Version)
	h.WriteString(string(k.Protocol))
	return &s.shards[h.Sum64()%uint64(len(s.shards))]
}

// Record adds one observation. It reports false when the observation was
// dropped because a new edge would pass the cap.
func (s *Store) Record(o Observation) bool {
	k := EdgeKey{Source: o.Source, Target: o.Target, Protocol: o.Protocol}
	idx := s.bucketIndex(o.Time)
	sh := s.shardOf(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	se, ok := sh.edges[k]
	if !ok {
		if int(s.edges.Load()) >= s.opts.MaxEdges {
			s.dropped.Add(1)
			return false
		}
		se = &series{buckets: make([]bucket, s.opts.Buckets)}
		sh.edges[k] = se
		s.edges.Add(1)
	}
	b := &se.buckets[int(idx%int64(len(se.buckets)))]
	if b.index != idx {
		if b.index > idx && b.latency != nil {
			// Older than the ring holds: too late to count.
			return true
		}
		b.index, b.counts, b.errors, b.bytes = idx, [numClasses]uint64{}, 0, 0
		if b.latency != nil {
			b.latency.Clear()
		}
	}
	if b.latency == nil {
		sk, err := ddsketch.LogCollapsingLowestDenseDDSketch(s.opts.RelativeAccuracy, 2048)
		if err != nil {
			panic(fmt.Sprintf("topology: sketch: %v", err)) // accuracy is checked in withDefaults
		}
		b.latency = sk
	}
	b.counts[ClassOf(o)]++
	if IsError(o) {
		b.errors++
	}
	b.bytes += o.Bytes
	_ = b.latency.Add(float64(o.Latency) / float64(time.Millisecond))
	if idx > se.lastSeen {
		se.lastSeen = idx
	}
	return true
}

// Expire removes edges with no observation in the last ttl.
func (s *Store) Expire(now time.Time, ttl time.Duration) int {
	cutoff := s.bucketIndex(now.Add(-ttl))
	removed := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, se := range sh.edges {
			if se.lastSeen < cutoff {
				delete(sh.edges, k)
				removed++
			}
		}
		sh.mu.Unlock()
	}
	s.edges.Add(int64(-removed))
	return removed
}
