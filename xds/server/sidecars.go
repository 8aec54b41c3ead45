package server

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/build"
	"github.com/signalbox/signalbox/xds/ir"
	"github.com/signalbox/signalbox/xds/translate"
)

// sidecarKey is the MuxCache key of the per-node snapshot cache that holds
// sidecars' listeners, routes and clusters. Their endpoints come from the
// shared EDS cache like everyone else's.
const sidecarKey = "sidecar"

// isSidecar tells an Envoy sidecar from a proxyless gRPC client by its node.
func isSidecar(n *corev3.Node) bool {
	return build.IsSidecar(n.GetUserAgentName(), nodeMeta(n))
}

// nodeMeta flattens a node's metadata to strings.
func nodeMeta(n *corev3.Node) map[string]string {
	fields := n.GetMetadata().GetFields()
	out := make(map[string]string, len(fields))
	for k, v := range fields {
		switch x := v.GetKind().(type) {
		case *structpb.Value_StringValue:
			out[k] = x.StringValue
		case *structpb.Value_BoolValue:
			out[k] = strconv.FormatBool(x.BoolValue)
		case *structpb.Value_NumberValue:
			out[k] = strconv.FormatFloat(x.NumberValue, 'f', -1, 64)
		}
	}
	return out
}

// classify routes a request to its cache: sidecars' LDS, RDS and CDS to the
// per-node snapshots; everything else by type.
func classify(n *corev3.Node, typeURL string) string {
	if typeURL != resourcev3.EndpointType && isSidecar(n) {
		switch typeURL {
		case resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType:
			return sidecarKey
		}
	}
	return typeURL
}

// sidecarEvents carries sidecar arrivals (a new stream, the latest node
// wins) and departures (the last stream closed) to the loop. A departure
// also drops the arrivals queued before it; an arrival does not drop a
// departure, which the loop checks against the streams open by then.
type sidecarEvents struct {
	mu      sync.Mutex
	arrived map[string]*corev3.Node
	gone    map[string]bool
}

func (e *sidecarEvents) add(n *corev3.Node) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.arrived == nil {
		e.arrived = map[string]*corev3.Node{}
	}
	e.arrived[n.GetId()] = n
}

func (e *sidecarEvents) remove(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gone == nil {
		e.gone = map[string]bool{}
	}
	e.gone[id] = true
	delete(e.arrived, id)
}

func (e *sidecarEvents) take() (map[string]*corev3.Node, map[string]bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, g := e.arrived, e.gone
	e.arrived, e.gone = nil, nil
	return a, g
}

// sidecarState is a connected sidecar as the loop knows it.
type sidecarState struct {
	node     build.Node
	problems []string // from the node metadata
	built    *ir.Sidecar
}

// SidecarStatus is the debug view of one sidecar.
type SidecarStatus struct {
	Node     string   `json:"node"`
	Service  string   `json:"service"`
	Version  string   `json:"version,omitempty"`
	Snapshot string   `json:"snapshot,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

// syncSidecars builds every sidecar whose inputs may have changed and sets
// the snapshots that differ. all forces every sidecar to be rebuilt.
func (s *Server) syncSidecars(ctx context.Context, st *loopState, cat *discovery.Catalog, plans map[string]rollout.Plan, ids map[string]bool) error {
	if cat == nil {
		return nil
	}
	// st.proxies and st.built are of st.lastCatalog and st.lastPlans, which
	// are cat and plans.
	proxies := st.proxies
	pol := s.opts.Policy
	pol.Built = func(name string) (build.ServiceConfig, bool) {
		b, ok := st.built[name]
		return b.cfg, ok
	}
	for id, sc := range st.sidecars {
		if ids != nil && !ids[id] {
			continue
		}
		built := build.Sidecar(cat, plans, pol, proxies, sc.node)
		built.Problems = append(append([]string(nil), sc.problems...), built.Problems...)
		if sc.built != nil && reflect.DeepEqual(*sc.built, built) {
			continue
		}
		res, err := translate.Sidecar(built)
		if err != nil {
			return fmt.Errorf("sidecar %s: %w", id, err)
		}
		s.snapVersion++
		version := s.opts.VersionPrefix + "s" + strconv.FormatUint(s.snapVersion, 10)
		byType := map[resourcev3.Type][]types.Resource{}
		for _, l := range res.Listeners {
			byType[resourcev3.ListenerType] = append(byType[resourcev3.ListenerType], l)
		}
		for _, r := range res.Routes {
			byType[resourcev3.RouteType] = append(byType[resourcev3.RouteType], r)
		}
		for _, c := range res.Clusters {
			byType[resourcev3.ClusterType] = append(byType[resourcev3.ClusterType], c)
		}
		snap, err := cache.NewSnapshot(version, byType)
		if err != nil {
			return fmt.Errorf("sidecar %s: snapshot: %w", id, err)
		}
		s.recordSnapshot(version, st.seenAt)
		if err := s.sidecars.SetSnapshot(ctx, id, snap); err != nil {
			return fmt.Errorf("sidecar %s: set snapshot: %w", id, err)
		}
		sc.built = &built
		if len(built.Problems) > 0 {
			s.log.Warn("xds: sidecar config has problems; defaults used", "node", id, "problems", built.Problems)
		}
	}
	s.publishSidecars(st)
	return nil
}

// admitSidecars registers arrived sidecars and forgets departed ones; it
// returns the ids that need a snapshot now.
func (s *Server) admitSidecars(st *loopState) map[string]bool {
	arrived, gone := s.sidecarEvents.take()
	for id := range gone {
		if _, ok := st.sidecars[id]; !ok {
			continue
		}
		// The node may have reconnected since: its new stream is served
		// from the snapshot, and clearing that would drop the stream's
		// watches, leaving it without updates. The tracker's lock keeps a
		// stream from opening between the check and the clear; one opening
		// after finds no snapshot and arrives anew.
		s.tracker.whenIdle(id, func() {
			delete(st.sidecars, id)
			s.sidecars.ClearSnapshot(id)
		})
	}
	fresh := map[string]bool{}
	for id, n := range arrived {
		node, problems := build.ParseNode(id, n.GetCluster(), nodeMeta(n))
		if sc, ok := st.sidecars[id]; ok && reflect.DeepEqual(sc.node, node) && slices.Equal(sc.problems, problems) {
			continue // a reconnect with the same bootstrap keeps its snapshot
		}
		st.sidecars[id] = &sidecarState{node: node, problems: problems}
		fresh[id] = true
	}
	if len(gone) > 0 {
		s.publishSidecars(st)
	}
	return fresh
}

func (s *Server) publishSidecars(st *loopState) {
	view := make([]SidecarStatus, 0, len(st.sidecars))
	for id, sc := range st.sidecars {
		v := SidecarStatus{Node: id, Service: sc.node.Service, Version: sc.node.Version, Problems: sc.problems}
		if sc.built != nil {
			v.Problems = sc.built.Problems
		}
		if snap, err := s.sidecars.GetSnapshot(id); err == nil {
			v.Snapshot = snap.GetVersion(resourcev3.ListenerType)
		}
		view = append(view, v)
	}
	s.statusMu.Lock()
	s.sidecarView = view
	s.statusMu.Unlock()
	problems := 0
	for _, v := range view {
		problems += len(v.Problems)
	}
	s.m.sidecarProblems.Set(float64(problems))
}

// recordSnapshot remembers when the change behind a snapshot version was seen.
func (s *Server) recordSnapshot(version string, seen time.Time) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.snapSeen[version] = seen
	s.snapOrder = append(s.snapOrder, version)
	if len(s.snapOrder) > 4*keptVersions {
		delete(s.snapSeen, s.snapOrder[0])
		s.snapOrder = s.snapOrder[1:]
	}
}

func (s *Server) snapshotSeen(version string) (time.Time, bool) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	t, ok := s.snapSeen[version]
	return t, ok
}
