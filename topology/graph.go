package topology

import (
	"fmt"
	"time"
)

// By is the granularity of a graph.
type By string

const (
	ByService By = "service"
	ByVersion By = "version"
)

// Graph is the call graph over a window.
type Graph struct {
	GeneratedAt time.Time   `json:"generatedAt"`
	Window      string      `json:"window"`
	Nodes       []GraphNode `json:"nodes"`
	Edges       []GraphEdge `json:"edges"`
}

// GraphNode is a service (or a version of one). Its rate and error rate are
// of the requests it received.
type GraphNode struct {
	ID        string  `json:"id"`
	Service   string  `json:"service"`
	Version   string  `json:"version,omitempty"`
	RPS       float64 `json:"rps"`
	ErrorRate float64 `json:"errorRate"`
}

// GraphEdge is the traffic from one node to another.
type GraphEdge struct {
	Source    string   `json:"source"`
	Target    string   `json:"target"`
	Protocol  Protocol `json:"protocol"`
	Requests  uint64   `json:"requests"`
	Errors    uint64   `json:"errors"`
	Bytes     uint64   `json:"bytes"`
	RPS       float64  `json:"rps"`
	ErrorRate float64  `json:"errorRate"`
	// ByClass counts requests by outcome.
	ByClass ClassCounts `json:"byClass"`
	P50Ms   float64     `json:"p50Ms"`
	P95Ms   float64     `json:"p95Ms"`
	P99Ms   float64     `json:"p99Ms"`
}

// ClassCounts are requests by outcome class. A struct, not a map: 5,000
// maps a query were most of the cost of encoding a graph.
type ClassCounts struct {
	C2xx        uint64 `json:"2xx"`
	C3xx        uint64 `json:"3xx"`
	C4xx        uint64 `json:"4xx"`
	C5xx        uint64 `json:"5xx"`
	ConnFailure uint64 `json:"connFailure"`
}

// Get is the count of a class by its name ("2xx" … "connFailure"); 0 for
// an unknown name.
func (c ClassCounts) Get(name string) uint64 {
	switch name {
	case "2xx":
		return c.C2xx
	case "3xx":
		return c.C3xx
	case "4xx":
		return c.C4xx
	case "5xx":
		return c.C5xx
	case "connFailure":
		return c.ConnFailure
	}
	return 0
}

func nodeID(n Node, by By) string {
	if by == ByVersion && n.Version != "" {
		return n.Service + "@" + n.Version
	}
	return n.Service
}

// part is one series' share of a graph edge: the sum of its window's closed
// buckets and its open bucket, either nil.
type part struct {
	closed *sums
	open   *bucket
}

func (p part) closedLat() *hist[uint64] {
	if p.closed == nil {
		return nil
	}
	return &p.closed.lat
}

func (p part) openLat() *hist[uint32] {
	if p.open == nil {
		return nil
	}
	return &p.open.lat
}

// classCounts are an edge's requests by class, by class name.
func classCounts(c [numClasses]uint64) ClassCounts {
	return ClassCounts{C2xx: c[Class2xx], C3xx: c[Class3xx], C4xx: c[Class4xx], C5xx: c[Class5xx], ConnFailure: c[ClassConnFailure]}
}

// Graph returns the graph of the window ending at now, whole buckets only
// (the current bucket included). A window longer than the ring is cut to it.
//
// Per series, it reads the sum of the window's closed buckets, which the
// series keeps and slides as buckets close (see window.go), and adds the
// open bucket: a query costs edges, not edges × buckets. The edges' order
// and nodes come from the cached layout (see layout.go). A shard's lock is
// held while its edges' numbers are read, one shard at a time.
//
// The answer's slices are new: the caller may keep or change them.
func (s *Store) Graph(now time.Time, window time.Duration, by By) (Graph, error) {
	var g Graph
	err := s.GraphInto(&g, now, window, by)
	return g, err
}

// GraphInto is Graph into *g, reusing the arrays of g.Nodes and g.Edges
// when they are large enough: at 5,000 edges a graph is 1 MB, and a server
// that answers a dashboard's polls with a new one each time makes the
// garbage collector run every hundred queries, slowing the ones it overlaps.
// g must not be in use elsewhere. On an error *g is unchanged.
func (s *Store) GraphInto(g *Graph, now time.Time, window time.Duration, by By) error {
	if by != ByService && by != ByVersion {
		return fmt.Errorf("topology: by=%q: want %q or %q", by, ByService, ByVersion)
	}
	if window <= 0 {
		return fmt.Errorf("topology: window %v: must be positive", window)
	}
	first, last, n := s.span(now, window)
	seconds := (time.Duration(n) * s.opts.Bucket).Seconds()
	lay := s.layout(by)

	// The numbers, in the layout's order; fill writes every edge, and one
	// without requests in the window keeps Requests 0 and is left out below.
	edges := g.Edges
	if edges == nil || cap(edges) < len(lay.edges) {
		edges = make([]GraphEdge, len(lay.edges))
	}
	edges = edges[:len(lay.edges)]
	var (
		scratch fillScratch
		sink    int64
	)
	for si, all := range lay.shards {
		sh := &s.edges.shards[si]
		// The lock is taken for lockedEdges edges at a time, so that
		// writers wait little even when the sums are made afresh.
		for len(all) > 0 {
			items := all[:min(len(all), lockedEdges)]
			all = all[len(items):]
			sh.mu.Lock()
			sink += prefetch(items, n, last)
			s.fill(items, edges, first, last, n, &scratch)
			sh.mu.Unlock()
		}
	}
	use(sink)

	type nodeAcc struct {
		requests, errors uint64
		seen             bool
	}
	nodes := make([]nodeAcc, len(lay.nodes))
	kept, seen := 0, 0
	for i := range edges {
		e := &edges[i]
		if e.Requests == 0 {
			continue
		}
		le := &lay.edges[i]
		e.Source, e.Target, e.Protocol = le.source, le.target, le.protocol
		e.RPS = float64(e.Requests) / seconds
		e.ErrorRate = float64(e.Errors) / float64(e.Requests)
		if kept != i {
			edges[kept] = *e
		}
		kept++
		for _, ni := range [2]int{le.src, le.dst} {
			if !nodes[ni].seen {
				nodes[ni].seen = true
				seen++
			}
		}
		t := &nodes[le.dst]
		t.requests += e.Requests
		t.errors += e.Errors
	}
	// What is past the answer in a reused array is cleared, so that it
	// keeps no names alive.
	clear(edges[kept:cap(edges)])
	g.GeneratedAt, g.Window = now.UTC(), (time.Duration(n) * s.opts.Bucket).String()
	g.Edges = edges[:kept]
	g.Nodes = g.Nodes[:0]
	if g.Nodes == nil || cap(g.Nodes) < seen {
		g.Nodes = make([]GraphNode, 0, seen)
	}
	for i, na := range nodes {
		if !na.seen {
			continue
		}
		ln := &lay.nodes[i]
		gn := GraphNode{ID: ln.id, Service: ln.node.Service, Version: ln.node.Version, RPS: float64(na.requests) / seconds}
		if na.requests > 0 {
			gn.ErrorRate = float64(na.errors) / float64(na.requests)
		}
		g.Nodes = append(g.Nodes, gn)
	}
	clear(g.Nodes[len(g.Nodes):cap(g.Nodes)])
	return nil
}

// lockedEdges is how many edges a graph query reads under one lock.
const lockedEdges = 64

// fillScratch is fill's memory, kept over a query.
type fillScratch struct {
	parts []part // an edge's series
	sum   sums   // their sum, when more than one
}

// fill sets the counts and quantiles of items' edges in edges (by the
// layout's edge index), all else zero; the items' shard's lock is held.
func (s *Store) fill(items []layoutItem, edges []GraphEdge, first, last, n int64, sc *fillScratch) {
	var q [len(graphQuantiles)]float64
	for _, it := range items {
		sc.parts = sc.parts[:0]
		for _, se := range it.members {
			if se.dead || se.lastSeen < first {
				continue
			}
			if p := (part{closed: se.closed(n, last), open: se.at(last)}); p.closed != nil || p.open != nil {
				sc.parts = append(sc.parts, p)
			}
		}
		e := &edges[it.edge]
		*e = GraphEdge{}
		var counts [numClasses]uint64
		for _, p := range sc.parts {
			if p.closed != nil {
				for c := range counts {
					counts[c] += p.closed.counts[c]
				}
				e.Errors += p.closed.errors
				e.Bytes += p.closed.bytes
			}
			if p.open != nil {
				for c := range counts {
					counts[c] += p.open.counts[c]
				}
				e.Errors += p.open.errors
				e.Bytes += p.open.bytes
			}
		}
		for _, c := range counts {
			e.Requests += c
		}
		if e.Requests == 0 {
			continue
		}
		e.ByClass = classCounts(counts)
		if len(sc.parts) == 1 {
			s.lm.quantiles(q[:], graphQuantiles[:], e.Requests, sc.parts[0].closedLat(), sc.parts[0].openLat())
		} else {
			sc.sum.reset()
			for _, p := range sc.parts {
				if p.closed != nil {
					addHist(&sc.sum.lat, &p.closed.lat)
				}
				if p.open != nil {
					addHist(&sc.sum.lat, &p.open.lat)
				}
			}
			s.lm.quantiles(q[:], graphQuantiles[:], e.Requests, &sc.sum.lat, nil)
		}
		e.P50Ms, e.P95Ms, e.P99Ms = q[0], q[1], q[2]
	}
}

// prefetch reads a little of what the items' series will be asked for, in
// tight loops whose loads do not wait on each other, so that the memory
// fetches overlap rather than stall the query one at a time. Its result
// means nothing.
func prefetch(items []layoutItem, n, last int64) int64 {
	var t int64
	for _, it := range items {
		for _, se := range it.members {
			t += se.lastSeen
		}
	}
	for _, it := range items {
		for _, se := range it.members {
			t += se.slot(last).index
		}
	}
	for _, it := range items {
		for _, se := range it.members {
			if b := se.at(last); b != nil && len(b.lat.bins) > 0 {
				t += int64(b.lat.bins[0])
			}
			for i := range se.nwins {
				if w := &se.wins[i]; w.n == n && len(w.lat.bins) > 0 {
					t += int64(w.lat.bins[0])
				}
			}
		}
	}
	return t
}

// use keeps prefetch's loads from being optimised away.
//
//go:noinline
func use(int64) {}

// span is the buckets [first, last] of the window ending at now, n of them:
// whole buckets, the current one included, at most the ring.
func (s *Store) span(now time.Time, window time.Duration) (first, last, n int64) {
	n = int64((window + s.opts.Bucket - 1) / s.opts.Bucket)
	if n > int64(s.opts.Buckets) {
		n = int64(s.opts.Buckets)
	}
	if n < 1 {
		n = 1
	}
	last = s.bucketIndex(now)
	return last - n + 1, last, n
}
