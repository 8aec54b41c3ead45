// Package als turns Envoy's Access Log Service stream into topology
// observations. Attribution follows the sidecar's node and the log name that
// signalbox configures:
//
//   - The stream's first message names the node: its cluster is the service
//     the sidecar fronts, its metadata "version" the version subset.
//   - Log "outbound" (the app calling out): the source is the sidecar's
//     service; the target is read from the upstream cluster name
//     ("outbound|<service>" or "outbound|<service>|<subset>", see xds/ir).
//     Entries to other clusters (telemetry sinks) are skipped.
//   - Log "inbound" (a call into the app): the target is the sidecar's
//     service. Every such entry counts in the target's served view (what the
//     service saw arriving, per version). It also counts as an edge only when
//     the caller has no sidecar — a caller's sidecar adds
//     x-envoy-downstream-service-cluster and has counted the request on its
//     outbound side already — so each request is one edge. The source of such
//     a call is the "unknown" service.
//
// An entry is recorded at its start time, or at its message's arrival when
// it has none or the sidecar's clock is off by more than topology.MaxSkew
// (see Server). A request the caller cancelled before any response (response
// flag DC or DR) is the caller's doing: a 4xx, not an error of the callee.
//
// TCP entries (tcp_grpc access logs) are attributed the same way, with
// protocol tcp, the connection's duration as latency and the bytes both ways.
// An inbound TCP entry counts only in the served view, never as an edge: a
// TCP connection carries no header that says whether the caller's sidecar
// logged it already, and a caller with a sidecar always did.
//
// Server.Register serves the AccessLogService: it reads each message's
// encoding and picks out only the fields attribution needs, with no
// allocation per entry (decoding whole entries costs several times more
// than attributing and recording them). ServerOption lets it read gRPC's
// receive buffer in place. The generated registration works too: it decodes
// and re-encodes each message. Either way the server records exactly what
// Attribute and AttributeTCP say of the decoded entries (checked by fuzzing).
//
// The wiring, in cmd:
//
//	g := grpc.NewServer(grpc.MaxRecvMsgSize(als.MaxMessageBytes), als.ServerOption(), …)
//	srv := als.NewServer(store, time.Now, als.WithLogger(log))
//	srv.Register(g)
package als

import (
	"errors"
	"strconv"
	"time"

	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/signalbox/signalbox/topology"
	"github.com/signalbox/signalbox/xds/ir"
)

// DownstreamClusterHeader is what a sidecar's outbound side adds to the
// requests it sends: the caller's service (xds/translate sets add_user_agent
// on the outbound connection manager and logs the header inbound).
const DownstreamClusterHeader = ir.DownstreamClusterHeader

// UnknownService is the source of calls from callers without a sidecar.
const UnknownService = "unknown"

// Log names signalbox gives the sidecars' access loggers.
const (
	LogOutbound = "outbound"
	LogInbound  = "inbound"
)

// Limits on what one stream may send.
const (
	// MaxMessageBytes is the largest message the server should accept: pass
	// it to grpc.MaxRecvMsgSize. Envoy flushes a stream's buffer once it
	// holds buffer_size_bytes (16 KiB by default) of entries, so a message is
	// that plus one entry; 4 MiB (gRPC's default, made explicit) leaves room
	// for a large buffer_size_bytes and still bounds what one message can
	// make the server hold. A larger message ends the stream with
	// ResourceExhausted.
	MaxMessageBytes = 4 << 20
	// MaxEntriesPerMessage caps the entries of one message; more end the
	// stream with InvalidArgument. A full 16 KiB buffer holds about 50
	// entries, and 4 MiB of the smallest real entries about 10,000.
	MaxEntriesPerMessage = 10000
)

// Identity is the sidecar a stream comes from.
type Identity struct {
	Service string
	Version string
	LogName string
}

// IdentityOf reads a stream's identifier.
func IdentityOf(id *alsv3.StreamAccessLogsMessage_Identifier) (Identity, error) {
	if id == nil || id.GetNode() == nil {
		return Identity{}, errors.New("the first message carries no identifier: Envoy sends the node and log name first")
	}
	n := id.GetNode()
	if n.GetCluster() == "" {
		return Identity{}, errors.New("the node has no cluster: it must name the Consul service the sidecar fronts")
	}
	var version string
	if v, ok := n.GetMetadata().GetFields()[ir.NodeMetaVersion]; ok {
		if s, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			version = s.StringValue
		}
	}
	return Identity{Service: n.GetCluster(), Version: version, LogName: id.GetLogName()}, nil
}

// Skip reasons: why an entry is not an edge, for the counters.
const (
	SkipOtherCluster  = "other_cluster"
	SkipCountedByPeer = "counted_by_caller"
	SkipLogName       = "unknown_log_name"
	SkipIncomplete    = "incomplete"
	// SkipInboundTCP: an inbound TCP connection counts only in the served
	// view (see the package documentation).
	SkipInboundTCP = "inbound_tcp"
	// SkipShadow: a mirrored request (Envoy suffixes its authority's host
	// with -shadow) is not user traffic: it counts nowhere, not even in
	// the served view a release's analysis may read.
	SkipShadow = "shadow"
)

// SkipReasons lists every skip reason, for metrics.
func SkipReasons() []string {
	return []string{SkipOtherCluster, SkipCountedByPeer, SkipLogName, SkipIncomplete, SkipInboundTCP, SkipShadow}
}

// skipIndex numbers the reasons for the counters; -1 for "" (an edge).
func skipIndex(reason string) int {
	switch reason {
	case SkipOtherCluster:
		return 0
	case SkipCountedByPeer:
		return 1
	case SkipLogName:
		return 2
	case SkipIncomplete:
		return 3
	case SkipInboundTCP:
		return 4
	case SkipShadow:
		return 5
	}
	return -1
}

const numSkips = 6

// Attribution is what one entry adds to the graph.
type Attribution struct {
	Obs topology.Observation
	// Skip says why the entry is not an edge; "" means it is one
	// (Recorder.Record).
	Skip string
	// Served: the entry counts in its target's served view
	// (Recorder.RecordServed).
	Served bool
}

// Attribute says what one HTTP entry adds to the graph.
func Attribute(id Identity, e *accesslogdatav3.HTTPAccessLogEntry) Attribution {
	var f facts
	f.fromHTTP(e)
	return attribute(id, &f)
}

// AttributeTCP says what one TCP entry adds to the graph.
func AttributeTCP(id Identity, e *accesslogdatav3.TCPAccessLogEntry) Attribution {
	var f facts
	f.fromTCP(e)
	return attribute(id, &f)
}

// facts are the parts of an entry that attribution reads. They are filled
// either from a decoded entry (the getters below, the reference) or straight
// from the wire (wire.go); attribute is the one place they are interpreted.
type facts struct {
	tcp     bool
	common  bool // common properties present
	cluster string
	// Timestamps and durations as on the wire, converted in attribute.
	startSet            bool
	startSec            int64
	startNanos          int32
	ttlbSec             int64 // time to last downstream tx byte
	ttlbNanos           int32
	durSet              bool // the connection's duration (TCP)
	durSec              int64
	durNanos            int32
	noHealthy, connFail bool
	connTerm, remReset  bool
	overflow            bool
	// downTerm and downReset: the caller went away (flags DC, DR). Read
	// by both decoders alike; a request without a response is a connection
	// failure either way (see topology.ClassOf).
	downTerm, downReset bool
	status              uint32
	// grpcTrailer and grpcHeader are the grpc-status values, -1 when absent
	// or not a status.
	grpcTrailer, grpcHeader int
	fromPeer                bool // DownstreamClusterHeader present
	shadow                  bool // a mirrored request (see isShadow)
	bytesIn, bytesOut       uint64
}

func (f *facts) fromCommon(c *accesslogdatav3.AccessLogCommon) {
	if c == nil {
		return
	}
	f.common = true
	f.cluster = c.GetUpstreamCluster()
	if t := c.GetStartTime(); t != nil {
		f.startSet, f.startSec, f.startNanos = true, t.GetSeconds(), t.GetNanos()
	}
	f.ttlbSec, f.ttlbNanos = c.GetTimeToLastDownstreamTxByte().GetSeconds(), c.GetTimeToLastDownstreamTxByte().GetNanos()
	if d := c.GetDuration(); d != nil {
		f.durSet, f.durSec, f.durNanos = true, d.GetSeconds(), d.GetNanos()
	}
	fl := c.GetResponseFlags()
	f.noHealthy, f.connFail, f.connTerm = fl.GetNoHealthyUpstream(), fl.GetUpstreamConnectionFailure(), fl.GetUpstreamConnectionTermination()
	f.remReset, f.overflow = fl.GetUpstreamRemoteReset(), fl.GetUpstreamOverflow()
	f.downTerm, f.downReset = fl.GetDownstreamConnectionTermination(), fl.GetDownstreamRemoteReset()
}

func (f *facts) fromHTTP(e *accesslogdatav3.HTTPAccessLogEntry) {
	f.fromCommon(e.GetCommonProperties())
	f.status = e.GetResponse().GetResponseCode().GetValue()
	f.bytesIn, f.bytesOut = e.GetRequest().GetRequestBodyBytes(), e.GetResponse().GetResponseBodyBytes()
	_, f.fromPeer = e.GetRequest().GetRequestHeaders()[DownstreamClusterHeader]
	f.shadow = isShadow(e.GetRequest().GetAuthority())
	f.grpcTrailer, f.grpcHeader = grpcStatusOf(e.GetResponse().GetResponseTrailers()), grpcStatusOf(e.GetResponse().GetResponseHeaders())
}

// isShadow reports whether an authority is a mirrored request's: Envoy
// suffixes the host with -shadow ("greeter-shadow", "greeter-shadow:8080";
// older versions after the port, "greeter:8080-shadow"). It takes the
// wire's bytes as they are, without a copy.
func isShadow[T string | []byte](authority T) bool {
	const suffix = "-shadow"
	endsShadow := func(n int) bool { return n >= len(suffix) && string(authority[n-len(suffix):n]) == suffix }
	n := len(authority)
	if endsShadow(n) {
		return true
	}
	// Without the port: the last ':' after any ']' of an IPv6 address.
	for i := n - 1; i >= 0 && authority[i] != ']'; i-- {
		if authority[i] == ':' {
			return endsShadow(i)
		}
	}
	return false
}

func grpcStatusOf(hdrs map[string]string) int {
	if v, ok := hdrs["grpc-status"]; ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 16 {
			return n
		}
	}
	return -1
}

func (f *facts) fromTCP(e *accesslogdatav3.TCPAccessLogEntry) {
	f.tcp = true
	f.grpcTrailer, f.grpcHeader = -1, -1
	f.fromCommon(e.GetCommonProperties())
	f.bytesIn, f.bytesOut = e.GetConnectionProperties().GetReceivedBytes(), e.GetConnectionProperties().GetSentBytes()
}

// duration converts as durationpb does (saturating on overflow).
func duration(sec int64, nanos int32) time.Duration {
	return (&durationpb.Duration{Seconds: sec, Nanos: nanos}).AsDuration()
}

// attribute interprets an entry's facts for the sidecar id.
func attribute(id Identity, f *facts) Attribution {
	if !f.common {
		return Attribution{Skip: SkipIncomplete}
	}
	o := topology.Observation{
		Status:      int(f.status),
		GRPCStatus:  -1,
		Protocol:    topology.HTTP,
		Bytes:       f.bytesIn + f.bytesOut,
		Latency:     max(duration(f.ttlbSec, f.ttlbNanos), 0), // negative: a sender's bug
		ConnFailure: f.noHealthy || f.connFail || f.connTerm || f.remReset || f.overflow,
	}
	if f.startSet {
		o.Time = time.Unix(f.startSec, int64(f.startNanos)).UTC()
	}
	if f.tcp {
		o.Protocol = topology.TCP
		if f.durSet {
			o.Latency = max(duration(f.durSec, f.durNanos), 0)
		}
		// A connection has no status, and topology classifies "no HTTP
		// status, no gRPC status" as a connection failure. gRPC's OK is the
		// one value that reads as "completed" without claiming an HTTP
		// response; a failed connection still has ConnFailure set.
		o.GRPCStatus = 0
	} else {
		for _, n := range [2]int{f.grpcTrailer, f.grpcHeader} {
			if n >= 0 {
				o.GRPCStatus, o.Protocol = n, topology.GRPC
				break
			}
		}
	}
	self := topology.Node{Service: id.Service, Version: id.Version}
	switch id.LogName {
	case LogOutbound:
		svc, subset, ok := ir.ParseClusterName(f.cluster)
		if !ok {
			return Attribution{Skip: SkipOtherCluster}
		}
		o.Source, o.Target = self, topology.Node{Service: svc, Version: subset}
		return Attribution{Obs: o}
	case LogInbound:
		o.Source, o.Target = topology.Node{Service: UnknownService}, self
		a := Attribution{Obs: o, Served: true}
		switch {
		case f.shadow:
			a.Skip, a.Served = SkipShadow, false
		case f.tcp:
			a.Skip = SkipInboundTCP
		case f.fromPeer:
			a.Skip = SkipCountedByPeer
		}
		return a
	}
	return Attribution{Skip: SkipLogName}
}

// Recorder takes observations (topology.Store does).
type Recorder interface {
	// Record adds a request to its edge; false when it was dropped.
	Record(topology.Observation) bool
	// RecordServed adds a request to what its target saw arriving; false
	// when it was dropped.
	RecordServed(topology.Observation) bool
}

var _ Recorder = (*topology.Store)(nil)

// stamp is when an attributed entry's request is recorded: its start time,
// or arrived (its message's) when it has none or the sidecar's clock is off
// by more than topology.MaxSkew, as the Zipkin collector does with spans. A
// sidecar sends an entry when its request ends, so the end is what is
// compared: a long TCP connection starts long before its entry arrives.
func stamp(o topology.Observation, arrived time.Time) time.Time {
	if o.Time.IsZero() {
		return arrived
	}
	// In whole seconds: close enough for a bound of minutes, and cheaper
	// than time.Time's arithmetic, which every entry pays.
	const maxSkew = int64(topology.MaxSkew / time.Second)
	if d := o.Time.Unix() + int64(o.Latency/time.Second) - arrived.Unix(); d > maxSkew || d < -maxSkew {
		return arrived
	}
	return o.Time
}
