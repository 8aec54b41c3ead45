package topology

import (
	"fmt"
	"sort"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
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
	// ByClass counts requests by outcome: 2xx, 3xx, 4xx, 5xx, connFailure.
	ByClass map[string]uint64 `json:"byClass"`
	P50Ms   float64           `json:"p50Ms"`
	P95Ms   float64           `json:"p95Ms"`
	P99Ms   float64           `json:"p99Ms"`
}

var classNames = [numClasses]string{"2xx", "3xx", "4xx", "5xx", "connFailure"}

func nodeID(n Node, by By) string {
	if by == ByVersion && n.Version != "" {
		return n.Service + "@" + n.Version
	}
	return n.Service
}

type edgeAcc struct {
	source, target Node
	protocol       Protocol
	counts         [numClasses]uint64
	errors, bytes  uint64
	latency        *ddsketch.DDSketch
}

// Graph returns the graph of the window ending at now, whole buckets only
// (the current bucket included). A window longer than the ring is cut to it.
func (s *Store) Graph(now time.Time, window time.Duration, by By) (Graph, error) {
	if by != ByService && by != ByVersion {
		return Graph{}, fmt.Errorf("topology: by=%q: want %q or %q", by, ByService, ByVersion)
	}
	if window <= 0 {
		return Graph{}, fmt.Errorf("topology: window %v: must be positive", window)
	}
	first, last, n := s.span(now, window)
	seconds := (time.Duration(n) * s.opts.Bucket).Seconds()

	acc := map[EdgeKey]*edgeAcc{}
	for i := range s.edges.shards {
		sh := &s.edges.shards[i]
		sh.mu.Lock()
		for k, se := range sh.series {
			if se.lastSeen < first {
				continue
			}
			key := k
			if by == ByService {
				key.Source.Version, key.Target.Version = "", ""
			}
			a := acc[key]
			for bi := range se.buckets {
				b := &se.buckets[bi]
				if b.latency == nil || b.index < first || b.index > last {
					continue
				}
				if a == nil {
					a = &edgeAcc{source: key.Source, target: key.Target, protocol: k.Protocol, latency: s.newSketch()}
					acc[key] = a
				}
				for c := range b.counts {
					a.counts[c] += b.counts[c]
				}
				a.errors += b.errors
				a.bytes += b.bytes
				_ = a.latency.MergeWith(b.latency)
			}
		}
		sh.mu.Unlock()
	}

	g := Graph{GeneratedAt: now.UTC(), Window: (time.Duration(n) * s.opts.Bucket).String(), Nodes: []GraphNode{}, Edges: []GraphEdge{}}
	type nodeAcc struct {
		node             Node
		requests, errors uint64
	}
	nodes := map[string]*nodeAcc{}
	touch := func(n Node) *nodeAcc {
		id := nodeID(n, by)
		na := nodes[id]
		if na == nil {
			if by == ByService {
				n.Version = ""
			}
			na = &nodeAcc{node: n}
			nodes[id] = na
		}
		return na
	}
	for _, a := range acc {
		var requests uint64
		byClass := map[string]uint64{}
		for c, v := range a.counts {
			requests += v
			byClass[classNames[c]] = v
		}
		e := GraphEdge{
			Source: nodeID(a.source, by), Target: nodeID(a.target, by), Protocol: a.protocol,
			Requests: requests, Errors: a.errors, Bytes: a.bytes, ByClass: byClass,
			RPS: float64(requests) / seconds,
		}
		if requests > 0 {
			e.ErrorRate = float64(a.errors) / float64(requests)
			qs, err := a.latency.GetValuesAtQuantiles([]float64{0.5, 0.95, 0.99})
			if err == nil {
				e.P50Ms, e.P95Ms, e.P99Ms = qs[0], qs[1], qs[2]
			}
		}
		g.Edges = append(g.Edges, e)
		touch(a.source)
		t := touch(a.target)
		t.requests += requests
		t.errors += a.errors
	}
	for id, na := range nodes {
		gn := GraphNode{ID: id, Service: na.node.Service, Version: na.node.Version, RPS: float64(na.requests) / seconds}
		if na.requests > 0 {
			gn.ErrorRate = float64(na.errors) / float64(na.requests)
		}
		g.Nodes = append(g.Nodes, gn)
	}
	sort.Slice(g.Nodes, func(a, b int) bool { return g.Nodes[a].ID < g.Nodes[b].ID })
	sort.Slice(g.Edges, func(a, b int) bool {
		ea, eb := g.Edges[a], g.Edges[b]
		if ea.Source != eb.Source {
			return ea.Source < eb.Source
		}
		if ea.Target != eb.Target {
			return ea.Target < eb.Target
		}
		return ea.Protocol < eb.Protocol
	})
	return g, nil
}

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
