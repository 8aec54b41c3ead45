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
//     service. It is counted only when the caller has no sidecar — a caller's
//     sidecar adds x-envoy-downstream-service-cluster and has counted the
//     request on its outbound side already — so each request counts once.
//     The source of such a call is the "unknown" service.
package als

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// Skip reasons, for the counters.
const (
	SkipOtherCluster  = "other_cluster"
	SkipCountedByPeer = "counted_by_caller"
	SkipLogName       = "unknown_log_name"
	SkipIncomplete    = "incomplete"
)

// Attribute turns one HTTP entry into an observation, or says why it is
// not one.
func Attribute(id Identity, e *accesslogdatav3.HTTPAccessLogEntry) (topology.Observation, string) {
	c := e.GetCommonProperties()
	if c == nil {
		return topology.Observation{}, SkipIncomplete
	}
	self := topology.Node{Service: id.Service, Version: id.Version}
	o := topology.Observation{
		Time:       c.GetStartTime().AsTime(),
		Status:     int(e.GetResponse().GetResponseCode().GetValue()),
		GRPCStatus: -1,
		Protocol:   topology.HTTP,
		Bytes:      e.GetRequest().GetRequestBodyBytes() + e.GetResponse().GetResponseBodyBytes(),
		Latency:    c.GetTimeToLastDownstreamTxByte().AsDuration(),
	}
	if c.GetStartTime() == nil {
		o.Time = time.Time{}
	}
	if f := c.GetResponseFlags(); f != nil {
		o.ConnFailure = f.GetNoHealthyUpstream() || f.GetUpstreamConnectionFailure() || f.GetUpstreamConnectionTermination() ||
			f.GetUpstreamRemoteReset() || f.GetUpstreamOverflow()
	}
	for _, hdrs := range []map[string]string{e.GetResponse().GetResponseTrailers(), e.GetResponse().GetResponseHeaders()} {
		if v, ok := hdrs["grpc-status"]; ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 16 {
				o.GRPCStatus, o.Protocol = n, topology.GRPC
				break
			}
		}
	}
	switch id.LogName {
	case "outbound":
		svc, subset, ok := ir.ParseClusterName(c.GetUpstreamCluster())
		if !ok {
			return topology.Observation{}, SkipOtherCluster
		}
		o.Source, o.Target = self, topology.Node{Service: svc, Version: subset}
	case "inbound":
		if _, ok := e.GetRequest().GetRequestHeaders()[DownstreamClusterHeader]; ok {
			return topology.Observation{}, SkipCountedByPeer
		}
		o.Source, o.Target = topology.Node{Service: UnknownService}, self
	default:
		return topology.Observation{}, SkipLogName
	}
	return o, ""
}

// Recorder takes observations (topology.Store does).
type Recorder interface {
	Record(topology.Observation) bool
}

// Server is the AccessLogService. Register it on the xDS gRPC server.
type Server struct {
	alsv3.UnimplementedAccessLogServiceServer
	rec Recorder
	now func() time.Time

	Entries, Recorded, Rejected atomic.Uint64
	skipped                     [4]atomic.Uint64
}

// NewServer records into rec. now stamps entries without a start time.
func NewServer(rec Recorder, now func() time.Time) *Server {
	return &Server{rec: rec, now: now}
}

// Skipped is how many entries were skipped for a reason.
func (s *Server) Skipped(reason string) uint64 {
	for i, r := range []string{SkipOtherCluster, SkipCountedByPeer, SkipLogName, SkipIncomplete} {
		if r == reason {
			return s.skipped[i].Load()
		}
	}
	return 0
}

func (s *Server) skip(reason string) {
	for i, r := range []string{SkipOtherCluster, SkipCountedByPeer, SkipLogName, SkipIncomplete} {
		if r == reason {
			s.skipped[i].Add(1)
		}
	}
}

// StreamAccessLogs implements the AccessLogService.
func (s *Server) StreamAccessLogs(stream alsv3.AccessLogService_StreamAccessLogsServer) error {
	var id Identity
	first := true
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&alsv3.StreamAccessLogsResponse{})
		}
		if err != nil {
			return err
		}
		if first {
			first = false
			if id, err = IdentityOf(msg.GetIdentifier()); err != nil {
				s.Rejected.Add(1)
				return status.Error(codes.InvalidArgument, fmt.Sprintf("access log stream: %v", err))
			}
		} else if msg.GetIdentifier() != nil {
			// Envoy repeats the identifier after a reconnect of the same stream.
			if next, err := IdentityOf(msg.GetIdentifier()); err == nil {
				id = next
			}
		}
		for _, e := range msg.GetHttpLogs().GetLogEntry() {
			s.Entries.Add(1)
			o, why := Attribute(id, e)
			if why != "" {
				s.skip(why)
				continue
			}
			if o.Time.IsZero() {
				o.Time = s.now()
			}
			if s.rec.Record(o) {
				s.Recorded.Add(1)
			}
		}
	}
}
