package zipkin

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/signalbox/signalbox/xds/ir"
)

// Kind is a span's kind, as in Zipkin's Span.Kind. KindNone is a local span
// or one whose sender did not say.
type Kind uint8

const (
	KindNone Kind = iota
	KindClient
	KindServer
	KindProducer
	KindConsumer
)

func (k Kind) String() string {
	switch k {
	case KindClient:
		return "CLIENT"
	case KindServer:
		return "SERVER"
	case KindProducer:
		return "PRODUCER"
	case KindConsumer:
		return "CONSUMER"
	}
	return ""
}

// TraceID is a 64- or 128-bit trace id (High is 0 for 64 bits).
type TraceID struct {
	High, Low uint64
}

// Endpoint is a span's local endpoint. Zipkin tells apart servers that
// share one span id by it, so all of it is kept. A zero Endpoint is
// Zipkin's null endpoint.
type Endpoint struct {
	// Service is lower case, as Zipkin stores it (and as zipkin-go and
	// OpenTelemetry's exporter send it).
	Service string
	IPv4    netip.Addr
	IPv6    netip.Addr
	Port    uint16
}

// Span is what linking and attribution read from a Zipkin v2 span. The
// rest (name, annotations, other tags) is dropped when it is decoded, so
// buffered traces stay small.
type Span struct {
	TraceID TraceID
	ID      uint64
	// ParentID is 0 for a root span.
	ParentID uint64
	Kind     Kind
	// Shared: a server half that reuses its client's span id (B3).
	Shared bool
	Local  Endpoint
	// RemoteService is the remote endpoint's service name, lower case. For
	// an Envoy client span without one it is read from the upstream_cluster
	// tag ("outbound|<service>[|<subset>]", see xds/ir).
	RemoteService string
	// RemoteVersion is the subset of that upstream_cluster tag.
	RemoteVersion string
	// Timestamp is zero when the span has none.
	Timestamp time.Time
	Duration  time.Duration
	// Version of the local service: tag service.version, else version.
	Version string
	// Error: the span has an "error" tag, whatever its value (Zipkin's rule).
	Error bool
	// HTTPStatus from http.status_code or http.response.status_code; 0 when
	// absent.
	HTTPStatus int
	// GRPCStatus from rpc.grpc.status_code, grpc.status_code or (newer
	// OpenTelemetry) rpc.response.status_code; -1 when absent.
	GRPCStatus int
	// GRPC: rpc.system or rpc.system.name is grpc, or a gRPC status tag.
	GRPC bool
	// ALS is the signalbox.als tag of a signalbox sidecar's span: whether
	// that listener's access logs go to signalbox's Access Log Service,
	// which then counted the request already (see LinkTrace).
	ALS ALSState
}

// ALSState is what a span's signalbox.als tag (ir.SpanTagALS) says.
type ALSState uint8

const (
	// ALSUnknown: no tag, or a value other than on and off. Only
	// signalbox's sidecars set the tag: a span without it is an app's own
	// (or another proxy's).
	ALSUnknown ALSState = iota
	// ALSOn: the span's listener streams its access logs to signalbox.
	ALSOn
	// ALSOff: the span's listener is a signalbox sidecar's whose access
	// logs do not go to signalbox (file logs only, or none).
	ALSOff
)

func (a ALSState) String() string {
	switch a {
	case ALSOn:
		return ir.SpanTagALSOn
	case ALSOff:
		return ir.SpanTagALSOff
	}
	return ""
}

// Tags read from spans.
const (
	TagServiceVersion  = "service.version"
	TagVersion         = "version"
	TagError           = "error"
	TagHTTPStatus      = "http.status_code"
	TagHTTPStatusOTel  = "http.response.status_code"
	TagGRPCStatusOTel  = "rpc.grpc.status_code"
	TagGRPCStatusEnvoy = "grpc.status_code"
	TagRPCSystem       = "rpc.system"
	// OpenTelemetry's semantic conventions from v1.37 on, as otelgrpc
	// v0.6x and later write them: the code is its name, e.g. "UNAVAILABLE".
	TagRPCSystemName     = "rpc.system.name"
	TagRPCResponseStatus = "rpc.response.status_code"
	TagUpstreamCluster   = "upstream_cluster"
	// TagALS is set by signalbox's sidecars (see Span.ALS).
	TagALS = ir.SpanTagALS
)

// tagReader looks up a span's tags.
type tagReader interface {
	tag(key string) (string, bool)
}

// mapTags are tags in a map (proto3 spans, tests).
type mapTags map[string]string

func (m mapTags) tag(k string) (string, bool) {
	v, ok := m[k]
	return v, ok
}

// applyTags reads the tags attribution needs. It runs after Kind and
// RemoteService are set.
func applyTags(s *Span, tags tagReader) {
	s.GRPCStatus = -1
	get := func(k string) string { v, _ := tags.tag(k); return v }
	if v := get(TagServiceVersion); v != "" {
		s.Version = validUTF8(v)
	} else {
		s.Version = validUTF8(get(TagVersion))
	}
	_, s.Error = tags.tag(TagError)
	for _, k := range []string{TagHTTPStatus, TagHTTPStatusOTel} {
		if n, err := strconv.Atoi(get(k)); err == nil && n >= 100 && n <= 599 {
			s.HTTPStatus = n
			break
		}
	}
	for _, k := range []string{TagGRPCStatusOTel, TagGRPCStatusEnvoy} {
		if n, err := strconv.Atoi(get(k)); err == nil && n >= 0 && n <= 16 {
			s.GRPCStatus, s.GRPC = n, true
			break
		}
	}
	if s.GRPCStatus < 0 {
		if n, ok := grpcCode(get(TagRPCResponseStatus)); ok {
			s.GRPCStatus, s.GRPC = n, true
		}
	}
	if get(TagRPCSystem) == "grpc" || get(TagRPCSystemName) == "grpc" {
		s.GRPC = true
	}
	switch get(TagALS) {
	case ir.SpanTagALSOn:
		s.ALS = ALSOn
	case ir.SpanTagALSOff:
		s.ALS = ALSOff
	}
	// Envoy's client spans name the upstream cluster; signalbox's cluster
	// names carry the callee's service and subset.
	if s.Kind == KindClient {
		if svc, subset, ok := ir.ParseClusterName(validUTF8(get(TagUpstreamCluster))); ok {
			svc = strings.ToLower(svc)
			if s.RemoteService == "" {
				s.RemoteService = svc
			}
			if s.RemoteService == svc {
				s.RemoteVersion = subset
			}
		}
	}
}

// normalize applies the fixes Zipkin's span builder makes.
func (s *Span) normalize() {
	if s.ParentID == s.ID {
		s.ParentID = 0 // a span cannot be its own parent: Zipkin drops the parent
	}
	s.Local.Service = strings.ToLower(validUTF8(s.Local.Service))
	s.RemoteService = strings.ToLower(validUTF8(s.RemoteService))
	if s.Duration < 0 {
		s.Duration = 0
	}
}

// validUTF8 is s with each run of bytes that are not UTF-8 replaced by
// U+FFFD. Names and versions become graph nodes and Prometheus labels,
// which must be text (a label that is not fails the whole scrape). The
// decoders hand over valid strings (protobuf refuses invalid ones, and
// encoding/json replaces them); this holds whatever the tags' source.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// microsToTime reads a Zipkin timestamp (epoch microseconds, 0 for none).
func microsToTime(us int64) time.Time {
	if us <= 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// microsToDuration reads a Zipkin duration, saturating rather than
// wrapping.
func microsToDuration(us int64) time.Duration {
	const maxMicros = int64(1<<63-1) / int64(time.Microsecond)
	switch {
	case us <= 0:
		return 0
	case us > maxMicros:
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(us) * time.Microsecond
}

// grpcCodes are gRPC's status codes by their canonical names.
var grpcCodes = map[string]int{
	"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
	"ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
	"ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
	"DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

// grpcCode reads a status code written as its name or its number.
func grpcCode(v string) (int, bool) {
	if n, ok := grpcCodes[v]; ok {
		return n, true
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= 16 {
		return n, true
	}
	return 0, false
}
