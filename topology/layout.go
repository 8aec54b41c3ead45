package topology

import (
	"cmp"
	"slices"
	"strings"
)

// A graph's layout is its shape without its numbers: the edges in the
// answer's order (by source, target, protocol), the nodes in theirs (by
// ID), which series make each edge, and which edges each shard holds. It
// changes only when a series is added or removed, so the store keeps one
// per granularity and makes it again when the edges' generation moved on.
// A query then fills in the numbers shard by shard, under one lock at a
// time, and sorts nothing.
type layout struct {
	gen    uint64
	edges  []layoutEdge
	nodes  []layoutNode
	shards [][]layoutItem // by shard index
}

type layoutEdge struct {
	source, target string // node IDs
	protocol       Protocol
	src, dst       int // indexes in nodes
}

type layoutNode struct {
	id   string
	node Node
}

// layoutItem is an edge's series, all in one shard (see shardOf): one by
// version; the versions of a service edge by service.
type layoutItem struct {
	edge    int
	members []*series
}

func layoutIndex(by By) int {
	if by == ByVersion {
		return 1
	}
	return 0
}

// layout is the graph's layout by by as of now.
func (s *Store) layout(by By) *layout {
	s.layoutMu.Lock()
	defer s.layoutMu.Unlock()
	gen := s.edges.gen.Load()
	if l := s.layouts[layoutIndex(by)]; l != nil && l.gen == gen {
		return l
	}
	l := s.makeLayout(by, gen)
	s.layouts[layoutIndex(by)] = l
	return l
}

// makeLayout makes the layout of the series there are, which are those of
// generation gen or later. (A series added meanwhile may be in it or not;
// either way the generation moved on, and the next query makes it again.)
func (s *Store) makeLayout(by By, gen uint64) *layout {
	type entry struct {
		key      EdgeKey
		src, dst string
		se       *series
		shard    int
	}
	var es []entry
	for i := range s.edges.shards {
		sh := &s.edges.shards[i]
		sh.mu.Lock()
		for k, se := range sh.series {
			if by == ByService {
				k = serviceKey(k)
			}
			es = append(es, entry{key: k, se: se, shard: i})
		}
		sh.mu.Unlock()
	}
	ids := map[Node]string{}
	nodes := map[string]Node{}
	id := func(n Node) string {
		if by == ByService {
			n.Version = ""
		}
		v, ok := ids[n]
		if !ok {
			v = nodeID(n, by)
			ids[n] = v
			if _, ok := nodes[v]; !ok {
				nodes[v] = n
			}
		}
		return v
	}
	for i := range es {
		es[i].src, es[i].dst = id(es[i].key.Source), id(es[i].key.Target)
	}
	slices.SortFunc(es, func(a, b entry) int {
		return cmp.Or(
			strings.Compare(a.src, b.src),
			strings.Compare(a.dst, b.dst),
			strings.Compare(string(a.key.Protocol), string(b.key.Protocol)),
			// Two keys of the same IDs (a service named "a@v1" and
			// service a at version v1): apart, but each in one run.
			strings.Compare(a.key.Source.Service, b.key.Source.Service),
			strings.Compare(a.key.Target.Service, b.key.Target.Service),
			strings.Compare(a.key.Source.Version, b.key.Source.Version),
			strings.Compare(a.key.Target.Version, b.key.Target.Version),
		)
	})

	l := &layout{gen: gen, shards: make([][]layoutItem, len(s.edges.shards))}
	l.nodes = make([]layoutNode, 0, len(nodes))
	for v, n := range nodes {
		l.nodes = append(l.nodes, layoutNode{id: v, node: n})
	}
	slices.SortFunc(l.nodes, func(a, b layoutNode) int { return strings.Compare(a.id, b.id) })
	nodeIndex := make(map[string]int, len(l.nodes))
	for i, n := range l.nodes {
		nodeIndex[n.id] = i
	}
	members := make([]*series, len(es))
	for i := range es {
		members[i] = es[i].se
	}
	for i := 0; i < len(es); {
		// A run of the same key is one edge (by service: the versions of
		// a service edge, which share a shard).
		j := i + 1
		for j < len(es) && es[j].key == es[i].key {
			j++
		}
		e := es[i]
		l.shards[e.shard] = append(l.shards[e.shard], layoutItem{edge: len(l.edges), members: members[i:j:j]})
		l.edges = append(l.edges, layoutEdge{source: e.src, target: e.dst, protocol: e.key.Protocol, src: nodeIndex[e.src], dst: nodeIndex[e.dst]})
		i = j
	}
	return l
}
