package zipkin

import (
	"cmp"
	"slices"
	"time"

	"github.com/signalbox/signalbox/topology"
)

// tracked is a span the collector holds, with what has been recorded from
// it already: a trace is linked again when late spans arrive, and nothing
// is recorded twice.
type tracked struct {
	Span
	// arrived is when the span reached the collector (zero in LinkTrace).
	arrived time.Time
	done    uint8
}

const (
	doneCall     uint8 = 1 << iota // the span's link was recorded
	doneBackfill                   // the link backfilled to its service was recorded
	doneServed                     // it was recorded as served
)

// LinkTrace links the spans of one trace the way Zipkin's DependencyLinker
// does and turns each link into an observation of one call, Source the
// caller and Target the callee (calls). served holds one observation per
// server and consumer span: what each service saw arriving. Observations
// keep the span's timestamp, zero when it has none.
//
// The rules are Zipkin's (zipkin2.internal.DependencyLinker, SpanNode and
// Trace.merge):
//   - Spans with the same id are merged when sent in pieces; a server span
//     with its client's id is the client's child (shared), even when the
//     sender forgot the shared flag.
//   - A client span with children is skipped: its server child makes the
//     link, with the server's name. A client span without children (the
//     callee is not traced) links to its remote service name.
//   - A span without a kind is a client span when it knows both its local
//     and remote service, otherwise a local span, never linked.
//   - A server span links from its nearest ancestor with a kind (local spans
//     in between are passed over), else from its remote service name. The
//     root span, when it is a server span without a remote service name,
//     makes no link.
//   - Producer and consumer spans link to and from their broker (the remote
//     service) only when both names are known.
//   - A client span whose local service differs from its nearest remote
//     ancestor's backfills a link ancestor → client service (the server
//     span in between was not reported), never an error.
//   - The "error" tag marks the link an error; a server span also inherits
//     the error of its client parent.
//
// So a client and server pair counts as one call. signalbox adds to these:
//   - The client half of the RPC is the server span's remote ancestor when
//     it is a client span that is the server's parent or shares its id. Its
//     duration, timestamp and status are preferred (it is what the caller
//     saw), and its error marks the call even when the halves share an id
//     (Zipkin checks the parent id only).
//   - A server span that is the same request as another server span of the
//     same service — its nearest remote ancestor is that service's server
//     span (the sidecar's, then the app's own), or its parent is that
//     service's server span sharing its client's id (the sidecar's, found
//     by id even when the client half is missing), or it shares its
//     client's id with another server span of its service (an app tracer
//     that joins the id, beside the sidecar's; see sharedRepeats) — is
//     neither a call nor served again.
//   - No link is backfilled to a client span's service when a server span
//     of that service shares the ancestor client's id: it was reported, on
//     another endpoint than the client span's (the sidecar's).
//   - The callee's version on a leaf client span comes from Envoy's
//     upstream_cluster tag (see Span.RemoteVersion).
//   - What signalbox's Access Log Service counted is not counted again.
//     signalbox's sidecars tag their spans signalbox.als=on when their
//     listener's access logs go to signalbox (off otherwise; see
//     Span.ALS), and ALS counts a call on the caller's sidecar's outbound
//     side, or on the callee's inbound side when the caller has no sidecar.
//     So a call is left out when its caller's side (the client half, or
//     the leaf client span itself) says on, or when its server span says
//     on and the client half is missing or untagged (no sidecar sent it). A
//     caller's sidecar that says off with a callee's that says on is
//     counted from the spans: ALS counted it nowhere. A server span that
//     says on is not served either (the inbound ALS entry was), nor is the
//     app's own server span under it (the same request). Producer,
//     consumer and backfilled links are not affected.
func LinkTrace(spans []Span) (calls, served []topology.Observation) {
	l := linkSpans(spans)
	return l.calls, l.served
}

// linkSpans links one trace's spans as LinkTrace, with what was left out.
func linkSpans(spans []Span) linker {
	ts := make([]*tracked, len(spans))
	for i := range spans {
		ts[i] = &tracked{Span: spans[i]}
	}
	var l linker
	l.link(mergeSpans(ts))
	return l
}

// mergeSpans merges the pieces of spans and fixes missing shared flags and
// parent ids, as Zipkin's Trace.merge. It sorts and compacts spans in place.
func mergeSpans(spans []*tracked) []*tracked {
	if len(spans) <= 1 {
		return spans
	}
	slices.SortStableFunc(spans, cmpSpans)
	out := spans[:0]
	var last *tracked
	for i := 0; i < len(spans); i++ {
		s := spans[i]
		var ep endpointTracker
		ep.tryMerge(s.Local)
		for i+1 < len(spans) && spans[i+1].ID == s.ID {
			next := spans[i+1]
			if s.Shared != next.Shared || !ep.tryMerge(next.Local) {
				break
			}
			s.mergeFrom(next)
			i++
		}
		if last != nil && last.ID == s.ID {
			// Not every tracer marks the server half shared; the trace is
			// sorted client first, so it can be told.
			if last.Kind == KindClient && s.Kind == KindServer && !s.Shared {
				s.Shared = true
			}
			if s.Shared && s.ParentID == 0 && last.ParentID != 0 {
				s.ParentID = last.ParentID
			}
		}
		out = append(out, s)
		last = s
	}
	return out
}

// cmpSpans orders by id, then the client before its shared server, then
// by local endpoint, those without first.
func cmpSpans(a, b *tracked) int {
	if c := cmp.Compare(a.ID, b.ID); c != 0 {
		return c
	}
	switch {
	case a.Shared && b.Shared:
	case a.Shared:
		return 1
	case b.Shared:
		return -1
	case (a.Kind == KindClient) != (b.Kind == KindClient):
		if a.Kind == KindClient {
			return -1
		}
		return 1
	}
	return cmpEndpoint(a.Local, b.Local)
}

func cmpEndpoint(a, b Endpoint) int {
	az, bz := a == (Endpoint{}), b == (Endpoint{})
	if az || bz {
		return -cmpBool(az, bz)
	}
	if c := cmpLast(a.Service == "", b.Service == "", a.Service, b.Service); c != 0 {
		return c
	}
	if c := cmpLast(!a.IPv4.IsValid(), !b.IPv4.IsValid(), a.IPv4.String(), b.IPv4.String()); c != 0 {
		return c
	}
	return cmpLast(!a.IPv6.IsValid(), !b.IPv6.IsValid(), a.IPv6.String(), b.IPv6.String())
}

// cmpLast compares x and y with missing values last.
func cmpLast(xMissing, yMissing bool, x, y string) int {
	if xMissing || yMissing {
		return cmpBool(xMissing, yMissing)
	}
	return cmp.Compare(x, y)
}

func cmpBool(x, y bool) int {
	switch {
	case x == y:
		return 0
	case x:
		return 1
	}
	return -1
}

// endpointTracker gathers the endpoint of a span sent in pieces, and says
// when a piece belongs to another endpoint.
type endpointTracker struct{ Endpoint }

func (t *endpointTracker) tryMerge(e Endpoint) bool {
	if e == (Endpoint{}) {
		return true
	}
	if t.Service != "" && e.Service != "" && t.Service != e.Service ||
		t.IPv4.IsValid() && e.IPv4.IsValid() && t.IPv4 != e.IPv4 ||
		t.IPv6.IsValid() && e.IPv6.IsValid() && t.IPv6 != e.IPv6 ||
		t.Port != 0 && e.Port != 0 && t.Port != e.Port {
		return false
	}
	t.Endpoint = mergeEndpoint(t.Endpoint, e)
	return true
}

func mergeEndpoint(a, b Endpoint) Endpoint {
	if a.Service == "" {
		a.Service = b.Service
	}
	if !a.IPv4.IsValid() {
		a.IPv4 = b.IPv4
	}
	if !a.IPv6.IsValid() {
		a.IPv6 = b.IPv6
	}
	if a.Port == 0 {
		a.Port = b.Port
	}
	return a
}

// mergeFrom fills what t lacks from another piece of the same span.
func (t *tracked) mergeFrom(o *tracked) {
	s, n := &t.Span, &o.Span
	if s.TraceID.High == 0 {
		s.TraceID.High = n.TraceID.High
	}
	if s.ParentID == 0 {
		s.ParentID = n.ParentID
	}
	if s.Kind == KindNone {
		s.Kind = n.Kind
	}
	s.Local = mergeEndpoint(s.Local, n.Local)
	if s.RemoteService == "" {
		s.RemoteService, s.RemoteVersion = n.RemoteService, n.RemoteVersion
	} else if s.RemoteVersion == "" && s.RemoteService == n.RemoteService {
		s.RemoteVersion = n.RemoteVersion
	}
	if s.Timestamp.IsZero() {
		s.Timestamp = n.Timestamp
	}
	if s.Duration == 0 {
		s.Duration = n.Duration
	}
	if s.Version == "" {
		s.Version = n.Version
	}
	s.Error = s.Error || n.Error
	if s.HTTPStatus == 0 {
		s.HTTPStatus = n.HTTPStatus
	}
	if s.GRPCStatus < 0 {
		s.GRPCStatus = n.GRPCStatus
	}
	s.GRPC = s.GRPC || n.GRPC
	if s.ALS == ALSUnknown {
		s.ALS = n.ALS
	}
	t.done |= o.done
	if t.arrived.IsZero() || !o.arrived.IsZero() && o.arrived.Before(t.arrived) {
		t.arrived = o.arrived
	}
}

// node is a span in the trace tree; the synthetic root of a trace whose
// root span is missing has none.
type node struct {
	t        *tracked
	parent   *node
	children []*node
}

// key finds a node: a span id, and for a shared (server) span also its
// local endpoint, as several servers may answer one client span id.
type key struct {
	id     uint64
	shared bool
	ep     Endpoint
}

func keyOf(id uint64, shared bool, ep Endpoint) key {
	if !shared {
		return key{id: id}
	}
	return key{id: id, shared: true, ep: ep}
}

type parentRef struct {
	k  key
	ok bool
}

// buildTree places merged spans in a tree as Zipkin's SpanNode.Builder
// does: a shared span under its client, a span whose parent is a shared
// span on the same endpoint under that server, the first span without a
// parent as the root, and spans whose parent is missing under the root (a
// synthetic one when the root span is missing).
func buildTree(spans []*tracked) *node {
	parentOf := make(map[key]parentRef, len(spans))
	order := make([]key, 0, len(spans)) // parentOf's insertion order
	put := func(k key, p parentRef) {
		if _, ok := parentOf[k]; !ok {
			order = append(order, k)
		}
		parentOf[k] = p
	}
	for _, s := range spans {
		if s.Shared {
			put(keyOf(s.ID, true, s.Local), parentRef{key{id: s.ID}, true})
		} else {
			put(key{id: s.ID}, parentRef{key{id: s.ParentID}, s.ParentID != 0})
		}
	}
	byKey := make(map[key]*node, len(spans))
	var root *node
	for _, s := range spans {
		k := keyOf(s.ID, s.Shared, s.Local)
		noEP := keyOf(s.ID, s.Shared, Endpoint{})
		hasParent := s.Shared
		if !s.Shared && s.ParentID != 0 {
			hasParent = true
			// The child of a shared server on the same endpoint (a local
			// span in the server) goes under that server, not its client.
			pk := keyOf(s.ParentID, true, s.Local)
			if _, ok := parentOf[pk]; ok {
				put(noEP, parentRef{pk, true})
			}
		}
		n := &node{t: s}
		switch {
		case !hasParent && root == nil:
			root = n
			delete(parentOf, noEP)
		case s.Shared:
			byKey[k] = n
			byKey[noEP] = n
		default:
			byKey[noEP] = n
		}
	}
	if root == nil {
		root = &node{}
	}
	for _, k := range order {
		p, ok := parentOf[k]
		if !ok {
			continue
		}
		child := byKey[k]
		if child == nil || child == root {
			continue
		}
		var parent *node
		if p.ok {
			parent = byKey[p.k]
		}
		if parent == nil || parent == child {
			parent = root
		}
		parent.children = append(parent.children, child)
		child.parent = parent
	}
	return root
}

func firstRemoteAncestor(n *node) *node {
	for p := n.parent; p != nil; p = p.parent {
		if p.t != nil && p.t.Kind != KindNone {
			return p
		}
	}
	return nil
}

// linker collects the observations of linked traces.
type linker struct {
	calls, served []topology.Observation
	// callsByALS and servedByALS are the calls and served spans left out
	// because signalbox's ALS counted them (see countedByALS).
	callsByALS, servedByALS int
}

// end is one end of a link: a service and the version its span gave.
type end struct{ service, version string }

// link walks the tree of merged spans (sorted by id, as mergeSpans leaves
// them) breadth first, as Zipkin's DependencyLinker.putTrace (see
// LinkTrace for the rules). Spans marked done are not recorded again.
func (l *linker) link(spans []*tracked) {
	if len(spans) == 0 {
		return
	}
	root := buildTree(spans)
	var queue []*node
	if root.t != nil {
		queue = append(queue, root)
	} else {
		queue = append(queue, root.children...)
	}
	sortChildren := func(n *node) {
		slices.SortStableFunc(n.children, func(a, b *node) int {
			return cmp.Compare(micros(a.t.Timestamp), micros(b.t.Timestamp))
		})
	}
	sortChildren(root)
	repeat := map[*tracked]bool{} // server spans that are another server span's request
	sharedRepeats(spans, repeat)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		sortChildren(n)
		queue = append(queue, n.children...)

		s := n.t
		kind := s.Kind
		// The server child names the callee better: it makes the link.
		if kind == KindClient && len(n.children) > 0 {
			continue
		}
		local, remote := s.Local.Service, s.RemoteService
		if kind == KindNone {
			if local == "" || remote == "" {
				continue // a local span
			}
			kind = KindClient
		}
		var from, to end
		switch kind {
		case KindServer, KindConsumer:
			from, to = end{remote, ""}, end{local, s.Version}
			if n == root && from.service == "" {
				continue // the root's caller is unknown
			}
		default:
			from, to = end{local, s.Version}, end{remote, s.RemoteVersion}
		}
		isErr := s.Error
		if kind == KindProducer || kind == KindConsumer {
			// Messaging links to and from the broker, when it is named.
			if from.service != "" && to.service != "" {
				l.call(s, nil, from, to, isErr, doneCall)
			}
			continue
		}
		var peer *tracked
		ra := firstRemoteAncestor(n)
		if kind == KindServer && (repeat[s] || sameRequest(s, ra, spans)) {
			repeat[s] = true
			continue
		}
		if ra != nil && ra.t.Local.Service != "" {
			a := ra.t
			if kind == KindClient && local != "" && a.Local.Service != local && !answeredBy(a, local, spans) {
				// The server span of this service is missing: link to it.
				l.call(s, nil, end{a.Local.Service, a.Version}, end{local, s.Version}, false, doneBackfill)
			}
			if kind == KindServer || from.service == "" {
				from = end{a.Local.Service, a.Version}
			}
			if a.Kind == KindClient {
				direct := s.ParentID != 0 && s.ParentID == a.ID
				if kind == KindServer && (direct || s.Shared && s.ID == a.ID) {
					peer = a
				}
				if direct || peer != nil {
					isErr = isErr || a.Error
				}
			}
		}
		if from.service == "" || to.service == "" {
			continue
		}
		if peer != nil && peer.done&doneCall != 0 {
			// Linked alone earlier, the client counted this call already.
			s.done |= doneCall
			continue
		}
		if countedByALS(kind, s, peer) {
			// Marked done all the same: a re-link does not count it either.
			if s.done&doneCall == 0 {
				s.done |= doneCall
				l.callsByALS++
			}
			continue
		}
		l.call(s, peer, from, to, isErr, doneCall)
	}
	for _, s := range spans {
		if (s.Kind == KindServer || s.Kind == KindConsumer) && s.Local.Service != "" && !repeat[s] && s.done&doneServed == 0 {
			s.done |= doneServed
			if s.Kind == KindServer && s.ALS == ALSOn {
				// The sidecar's inbound ALS entry counted it as served.
				l.servedByALS++
				continue
			}
			o := observe(s, nil, s.Error)
			o.Source = topology.Node{Service: s.RemoteService}
			o.Target = topology.Node{Service: s.Local.Service, Version: s.Version}
			l.served = append(l.served, o)
		}
	}
}

// countedByALS reports whether signalbox's Access Log Service counted the
// call that span s is about to make: s is a server span with its client
// half peer (nil when that was not reported), or a leaf client span (kind
// KindClient, peer nil). It mirrors ALS attribution (topology/als): the
// caller's sidecar counts the call on its outbound side, and the callee's
// sidecar on its inbound side only when the caller has no sidecar.
//   - The caller's side — peer, or s itself for a client span — says
//     signalbox.als=on: the caller's outbound ALS counted it.
//   - s is a server span that says on, and the caller's side is missing
//     or has no signalbox.als tag (no signalbox sidecar sent it): the
//     callee's inbound ALS counted it.
//
// A caller's side that says off with a callee that says on was counted by
// neither: the callee's sidecar saw the caller's sidecar header.
func countedByALS(kind Kind, s, peer *tracked) bool {
	caller := peer
	if kind == KindClient {
		caller = s
	}
	if caller != nil && caller.ALS == ALSOn {
		return true
	}
	return kind == KindServer && s.ALS == ALSOn && (caller == nil || caller.ALS == ALSUnknown)
}

// sameRequest reports whether server span s is a request its service has
// traced already: the sidecar's server span and then the app's. Either its
// nearest remote ancestor ra is a server span of its service, or its
// parent is a server span of its service that shares its client's id (the
// sidecar's, found by id among the trace's spans, sorted by id, even when
// the client half is missing and the tree cannot place s under it).
func sameRequest(s *tracked, ra *node, spans []*tracked) bool {
	if s.Local.Service == "" {
		return false
	}
	if ra != nil && ra.t.Kind == KindServer && ra.t.Local.Service == s.Local.Service {
		return true
	}
	if s.Shared || s.ParentID == 0 {
		return false
	}
	i, _ := slices.BinarySearchFunc(spans, s.ParentID, func(t *tracked, id uint64) int { return cmp.Compare(t.ID, id) })
	for ; i < len(spans) && spans[i].ID == s.ParentID; i++ {
		if o := spans[i]; o.Kind == KindServer && o.Shared && o.Local.Service == s.Local.Service {
			return true
		}
	}
	return false
}

// sharedRepeats marks in repeat the server spans that share their client's
// id with another server span of their service: the sidecar's and the
// app's own, when the app's tracer joins the id it was sent (as Brave does)
// on another port. They are one request: the one that counts is the one
// counted in an earlier link, else a signalbox sidecar's (it has a
// signalbox.als tag, which decides whether ALS counted the request), else
// the first.
func sharedRepeats(spans []*tracked, repeat map[*tracked]bool) {
	rank := func(t *tracked) int {
		switch {
		case t.done&(doneCall|doneServed) != 0:
			return 2
		case t.ALS != ALSUnknown:
			return 1
		}
		return 0
	}
	sharedServer := func(t *tracked) bool { return t.Kind == KindServer && t.Shared && t.Local.Service != "" }
	// The spans are sorted by id: each id's spans are a run, of a few.
	for i := 0; i < len(spans); {
		j := i + 1
		for j < len(spans) && spans[j].ID == spans[i].ID {
			j++
		}
		run := spans[i:j]
		for k, s := range run {
			if !sharedServer(s) || repeat[s] {
				continue
			}
			primary := s
			for _, o := range run[k+1:] {
				if !sharedServer(o) || repeat[o] || o.Local.Service != s.Local.Service {
					continue
				}
				if rank(o) > rank(primary) {
					repeat[primary], primary = true, o
				} else {
					repeat[o] = true
				}
			}
		}
		i = j
	}
}

// answeredBy reports whether a server span of service shares client span
// a's id: the callee's server span is there, though the tree does not put it
// above a's other children from that service (the app's own spans, on
// another endpoint than its sidecar's server span).
func answeredBy(a *tracked, service string, spans []*tracked) bool {
	if a.Kind != KindClient {
		return false
	}
	i, _ := slices.BinarySearchFunc(spans, a.ID, func(t *tracked, id uint64) int { return cmp.Compare(t.ID, id) })
	for ; i < len(spans) && spans[i].ID == a.ID; i++ {
		if o := spans[i]; o.Kind == KindServer && o.Shared && o.Local.Service == service {
			return true
		}
	}
	return false
}

// call records one link, once per span.
func (l *linker) call(s, peer *tracked, from, to end, isErr bool, bit uint8) {
	if s.done&bit != 0 {
		return
	}
	s.done |= bit
	var o topology.Observation
	if bit == doneBackfill {
		// Nothing is known of the missing server span but that it enclosed
		// this client span.
		o = topology.Observation{Time: when(s), Protocol: topology.HTTP, Status: 200, GRPCStatus: -1, Latency: s.Duration}
	} else {
		o = observe(s, peer, isErr)
	}
	o.Source = topology.Node{Service: from.service, Version: from.version}
	o.Target = topology.Node{Service: to.service, Version: to.version}
	l.calls = append(l.calls, o)
}

// observe reads a call's time, latency and outcome from span s, or first
// from its client half peer when there is one.
func observe(s, peer *tracked, isErr bool) topology.Observation {
	first, second := s, peer
	if peer != nil {
		first, second = peer, s
	}
	o := topology.Observation{
		Time:       when(first),
		Protocol:   topology.HTTP,
		Status:     first.HTTPStatus,
		GRPCStatus: first.GRPCStatus,
		Failed:     isErr,
		Latency:    first.Duration,
	}
	grpc := first.GRPC
	if second != nil {
		if o.Time.IsZero() {
			o.Time = when(second)
		}
		if o.Latency == 0 {
			o.Latency = second.Duration
		}
		if o.Status == 0 {
			o.Status = second.HTTPStatus
		}
		if o.GRPCStatus < 0 {
			o.GRPCStatus = second.GRPCStatus
		}
		grpc = grpc || second.GRPC
	}
	if grpc {
		o.Protocol = topology.GRPC
	}
	if o.Status == 0 {
		// No HTTP status: the call was answered (gRPC rides on 200), unless
		// the span says it failed.
		o.Status = 200
		if isErr {
			o.Status = 500
		}
	}
	return o
}

// when is a span's time: its timestamp, or its arrival when it has none or
// one too far from it (topology.MaxSkew).
func when(t *tracked) time.Time {
	if t.arrived.IsZero() {
		return t.Timestamp
	}
	if t.Timestamp.IsZero() || t.Timestamp.Sub(t.arrived).Abs() > topology.MaxSkew {
		return t.arrived
	}
	return t.Timestamp
}

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}
