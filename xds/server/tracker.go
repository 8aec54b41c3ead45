package server

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ClientStatus is what the debug view shows of one connected xDS stream.
type ClientStatus struct {
	StreamID    int64                 `json:"streamId"`
	NodeID      string                `json:"nodeId"`
	NodeCluster string                `json:"nodeCluster,omitempty"`
	Protocol    string                `json:"protocol"`
	ConnectedAt time.Time             `json:"connectedAt"`
	Types       map[string]TypeStatus `json:"types"`
}

// TypeStatus is one resource type on one stream.
type TypeStatus struct {
	Subscribed   []string  `json:"subscribed,omitempty"`
	SentVersion  string    `json:"sentVersion,omitempty"`
	SentAt       time.Time `json:"sentAt,omitzero"`
	AckedVersion string    `json:"ackedVersion,omitempty"`
	AckedAt      time.Time `json:"ackedAt,omitzero"`
	Pushes       uint64    `json:"pushes"`
	Nacks        uint64    `json:"nacks"`
	LastNack     *Nack     `json:"lastNack,omitempty"`
}

// Nack is a rejected response.
type Nack struct {
	Version string    `json:"version"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

type streamState struct {
	ClientStatus
	sent map[string]sentResponse // by type URL
	// ctx is the stream's, for the node check; checked is the node it
	// last passed (go-control-plane hands the first node on with every
	// later request).
	ctx     context.Context
	checked *corev3.Node
}

type sentResponse struct {
	nonce    string
	version  string
	seenAt   time.Time
	answered bool // an ACK or NACK for this nonce was counted
}

// tracker implements go-control-plane's callbacks: it records per stream what
// was sent and acknowledged, counts pushes and NACKs, logs each rejected
// version once, and measures convergence.
type tracker struct {
	log     *slog.Logger
	m       *metrics
	changes func(typeURL, version string) (time.Time, bool)

	// arrived is called when a stream first names its node, before the
	// cache sees its first request; gone when the last stream of a node
	// closes. Both are called with mu held.
	arrived func(node *corev3.Node)
	gone    func(nodeID string)
	// check, when set, decides whether a stream may speak as a node (see
	// Options.NodeCheck); with it, a node id in use by a connected client
	// of one service is refused to a client of another.
	check func(ctx context.Context, node *corev3.Node) error

	mu      sync.Mutex
	streams map[int64]*streamState
	// perNode counts open streams and keeps the last version sent of each
	// type, by node id (the NACK guard of the snapshot cache needs it).
	perNode map[string]*nodeState
}

type nodeState struct {
	streams  int
	cluster  string // of the node's first open stream
	lastSent map[string]string
}

var _ serverv3.Callbacks = (*tracker)(nil)

func newTracker(log *slog.Logger, m *metrics, changes func(string, string) (time.Time, bool)) *tracker {
	return &tracker{log: log, m: m, changes: changes, streams: map[int64]*streamState{}, perNode: map[string]*nodeState{}}
}

func (t *tracker) open(ctx context.Context, id int64, protocol string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[id] = &streamState{
		ClientStatus: ClientStatus{StreamID: id, Protocol: protocol, ConnectedAt: time.Now(), Types: map[string]TypeStatus{}},
		sent:         map[string]sentResponse{},
		ctx:          ctx,
	}
	t.m.clients.WithLabelValues(protocol).Inc()
}

func (t *tracker) closed(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[id]
	if !ok {
		return
	}
	t.m.clients.WithLabelValues(s.Protocol).Dec()
	delete(t.streams, id)
	if n, ok := t.perNode[s.NodeID]; ok && s.NodeID != "" {
		n.streams--
		if n.streams <= 0 {
			delete(t.perNode, s.NodeID)
			if t.gone != nil {
				t.gone(s.NodeID)
			}
		}
	}
}

// whenIdle runs f, with the tracker locked, if the node has no open stream.
// A stream that names the node meanwhile waits for f, which must not call
// back into the tracker.
func (t *tracker) whenIdle(nodeID string, f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, open := t.perNode[nodeID]; !open {
		f()
	}
}

// lastSent is the version of typeURL last sent to the node.
func (t *tracker) lastSent(nodeID, typeURL string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.perNode[nodeID]
	if !ok {
		return "", false
	}
	v, ok := n.lastSent[typeURL]
	return v, ok
}

// request handles a request on a stream: it may ACK or NACK the last
// response. An error (the node check's) ends the stream with its status.
func (t *tracker) request(id int64, node *corev3.Node, typeURL, nonce string, names []string, errDetail string, isNack bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[id]
	if !ok {
		return nil
	}
	if t.check != nil && node != nil && node != s.checked {
		if err := t.check(s.ctx, node); err != nil {
			return err
		}
		if n, ok := t.perNode[node.GetId()]; ok && n.streams > 0 && n.cluster != node.GetCluster() && s.NodeID == "" {
			// Per-node state (a sidecar's snapshot) is keyed by node id:
			// a client of another service must not rebuild it.
			t.log.Warn("xds stream refused: node id in use by a client of another service", "node", node.GetId(),
				"service", node.GetCluster(), "connected_service", n.cluster)
			return status.Errorf(codes.PermissionDenied, "node id %q is in use by a connected client of service %q, not %q: give each sidecar and client its own node id",
				node.GetId(), n.cluster, node.GetCluster())
		}
		s.checked = node
	}
	if node != nil && s.NodeID == "" {
		s.NodeID, s.NodeCluster = node.GetId(), node.GetCluster()
		n, ok := t.perNode[s.NodeID]
		if !ok {
			n = &nodeState{lastSent: map[string]string{}, cluster: node.GetCluster()}
			t.perNode[s.NodeID] = n
		}
		n.streams++
		if t.arrived != nil {
			t.arrived(node)
		}
	}
	ts := s.Types[typeURL]
	if names != nil {
		ts.Subscribed = append([]string(nil), names...)
		sort.Strings(ts.Subscribed)
	}
	sent, ok := s.sent[typeURL]
	if ok && nonce != "" && nonce == sent.nonce && !sent.answered {
		now := time.Now()
		sent.answered = true
		s.sent[typeURL] = sent
		if isNack {
			ts.Nacks++
			t.m.nacks.WithLabelValues(shortType(typeURL)).Inc()
			// Log a rejected version once per stream, not on every retry.
			if ts.LastNack == nil || ts.LastNack.Version != sent.version {
				t.log.Warn("xds: client rejected config", "node", s.NodeID, "type", shortType(typeURL), "version", sent.version, "error", errDetail)
			}
			ts.LastNack = &Nack{Version: sent.version, Message: errDetail, At: now}
		} else {
			ts.AckedVersion, ts.AckedAt = sent.version, now
			if !sent.seenAt.IsZero() {
				t.m.convergence.WithLabelValues(shortType(typeURL)).Observe(now.Sub(sent.seenAt).Seconds())
			}
		}
	}
	s.Types[typeURL] = ts
	return nil
}

func (t *tracker) response(id int64, typeURL, nonce, version string) {
	seen, _ := t.changes(typeURL, version)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m.pushes.WithLabelValues(shortType(typeURL)).Inc()
	s, ok := t.streams[id]
	if !ok {
		return
	}
	s.sent[typeURL] = sentResponse{nonce: nonce, version: version, seenAt: seen}
	if n, ok := t.perNode[s.NodeID]; ok {
		n.lastSent[typeURL] = version
	}
	ts := s.Types[typeURL]
	ts.SentVersion, ts.SentAt = version, time.Now()
	ts.Pushes++
	s.Types[typeURL] = ts
}

// Clients returns the connected streams, sorted by node id then stream id.
func (t *tracker) Clients() []ClientStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ClientStatus, 0, len(t.streams))
	for _, s := range t.streams {
		c := s.ClientStatus
		c.Types = make(map[string]TypeStatus, len(s.Types))
		for k, v := range s.Types {
			if v.LastNack != nil {
				n := *v.LastNack
				v.LastNack = &n
			}
			c.Types[shortType(k)] = v
		}
		out = append(out, c)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].NodeID != out[b].NodeID {
			return out[a].NodeID < out[b].NodeID
		}
		return out[a].StreamID < out[b].StreamID
	})
	return out
}

// go-control-plane callbacks.

func (t *tracker) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	t.open(ctx, id, "sotw")
	return nil
}

func (t *tracker) OnStreamClosed(id int64, _ *corev3.Node) { t.closed(id) }

func (t *tracker) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	return t.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), nonNil(req.GetResourceNames()), req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
}

func (t *tracker) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	t.response(id, req.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (t *tracker) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	t.open(ctx, id, "delta")
	return nil
}

func (t *tracker) OnDeltaStreamClosed(id int64, _ *corev3.Node) { t.closed(id) }

func (t *tracker) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	// Delta subscriptions are incremental; the debug view shows the latest
	// additions only when the request carries some.
	var names []string
	if len(req.GetResourceNamesSubscribe()) > 0 {
		names = req.GetResourceNamesSubscribe()
	}
	return t.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), names, req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
}

func (t *tracker) OnStreamDeltaResponse(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	t.response(id, req.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

func (t *tracker) OnFetchRequest(ctx context.Context, req *discoveryv3.DiscoveryRequest) error {
	if t.check != nil {
		return t.check(ctx, req.GetNode())
	}
	return nil
}

func (t *tracker) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

// nonNil keeps "no names" (wildcard) distinct from "not given" in request().
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
