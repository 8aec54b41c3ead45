package als

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/signalbox/signalbox/topology"
)

var start = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type entry struct {
	cluster  string
	status   uint32
	grpc     string
	connFail bool
	fromPeer bool
	latency  time.Duration
	host     string // the request's authority
	// downTerm and downReset: the caller went away (flags DC, DR).
	downTerm, downReset bool
	// startAt is the start time's offset from start.
	startAt time.Duration
}

func (e entry) proto() *accesslogdatav3.HTTPAccessLogEntry {
	out := &accesslogdatav3.HTTPAccessLogEntry{
		CommonProperties: &accesslogdatav3.AccessLogCommon{
			StartTime:                  timestamppb.New(start.Add(e.startAt)),
			UpstreamCluster:            e.cluster,
			TimeToLastDownstreamTxByte: durationpb.New(e.latency),
			ResponseFlags: &accesslogdatav3.ResponseFlags{UpstreamConnectionFailure: e.connFail,
				DownstreamConnectionTermination: e.downTerm, DownstreamRemoteReset: e.downReset},
		},
		Request:  &accesslogdatav3.HTTPRequestProperties{Authority: e.host, RequestHeaders: map[string]string{}},
		Response: &accesslogdatav3.HTTPResponseProperties{ResponseTrailers: map[string]string{}},
	}
	if e.status > 0 {
		out.Response.ResponseCode = wrapperspb.UInt32(e.status)
	}
	if e.grpc != "" {
		out.Response.ResponseTrailers["grpc-status"] = e.grpc
	}
	if e.fromPeer {
		out.Request.RequestHeaders[DownstreamClusterHeader] = "web"
	}
	return out
}

// tcpEntry is a TCP connection as Envoy's tcp_grpc logger reports it.
type tcpEntry struct {
	cluster   string
	duration  time.Duration // 0: no duration field
	ttlb      time.Duration
	in, out   uint64
	connFail  bool
	noHealthy bool
	startAt   time.Duration // the start time's offset from start
}

func (e tcpEntry) proto() *accesslogdatav3.TCPAccessLogEntry {
	out := &accesslogdatav3.TCPAccessLogEntry{
		CommonProperties: &accesslogdatav3.AccessLogCommon{
			StartTime:                  timestamppb.New(start.Add(e.startAt)),
			UpstreamCluster:            e.cluster,
			TimeToLastDownstreamTxByte: durationpb.New(e.ttlb),
			ResponseFlags:              &accesslogdatav3.ResponseFlags{UpstreamConnectionFailure: e.connFail, NoHealthyUpstream: e.noHealthy},
		},
		ConnectionProperties: &accesslogdatav3.ConnectionProperties{ReceivedBytes: e.in, SentBytes: e.out},
	}
	if e.duration != 0 {
		out.CommonProperties.Duration = durationpb.New(e.duration)
	}
	return out
}

func identifier(service, version, logName string) *alsv3.StreamAccessLogsMessage_Identifier {
	meta, _ := structpb.NewStruct(map[string]any{"version": version})
	return &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: service + "-1", Cluster: service, Metadata: meta}, LogName: logName}
}

var (
	webOut = Identity{Service: "web", Version: "v1", LogName: LogOutbound}
	apiIn  = Identity{Service: "api", Version: "v2", LogName: LogInbound}
)

func TestAttribute(t *testing.T) {
	web, api := topology.Node{Service: "web", Version: "v1"}, topology.Node{Service: "api", Version: "v2"}
	unknown := topology.Node{Service: UnknownService}
	cases := []struct {
		name     string
		id       Identity
		e        entry
		skip     string
		served   bool
		src, dst topology.Node
		proto    topology.Protocol
		class    topology.Class
		isErr    bool
	}{
		{"outbound to a subset", webOut, entry{cluster: "outbound|api|v2", status: 200}, "", false, web, api, topology.HTTP, topology.Class2xx, false},
		{"outbound to all versions", webOut, entry{cluster: "outbound|api", status: 503}, "", false, web, topology.Node{Service: "api"}, topology.HTTP, topology.Class5xx, true},
		{"gRPC UNAVAILABLE in trailers", webOut, entry{cluster: "outbound|api|v2", status: 200, grpc: "14"}, "", false, web, api, topology.GRPC, topology.Class2xx, true},
		{"grpc-status that is not a status", webOut, entry{cluster: "outbound|api|v2", status: 200, grpc: "17"}, "", false, web, api, topology.HTTP, topology.Class2xx, false},
		{"connection failure", webOut, entry{cluster: "outbound|api|v2", connFail: true}, "", false, web, api, topology.HTTP, topology.ClassConnFailure, true},
		// The caller gave up before any response (its deadline passed while
		// api hung): no response is a failure, or a hanging candidate would
		// look healthy to the release analysis.
		{"cancelled by the caller (DC)", webOut, entry{cluster: "outbound|api|v2", downTerm: true}, "", false, web, api, topology.HTTP, topology.ClassConnFailure, true},
		{"stream reset by the caller (DR)", webOut, entry{cluster: "outbound|api|v2", downReset: true}, "", false, web, api, topology.HTTP, topology.ClassConnFailure, true},
		{"cancelled after the upstream failed", webOut, entry{cluster: "outbound|api|v2", downTerm: true, connFail: true}, "", false, web, api, topology.HTTP, topology.ClassConnFailure, true},
		{"cancelled after a 503", webOut, entry{cluster: "outbound|api|v2", status: 503, downTerm: true}, "", false, web, api, topology.HTTP, topology.Class5xx, true},
		{"inbound cancelled by a caller without sidecar", apiIn, entry{cluster: "inbound|api|9000", downReset: true}, "", true, unknown, api, topology.HTTP, topology.ClassConnFailure, true},
		{"telemetry sink", webOut, entry{cluster: "signalbox-zipkin", status: 202}, SkipOtherCluster, false, topology.Node{}, topology.Node{}, "", 0, false},
		{"inbound from a caller without sidecar", apiIn, entry{cluster: "inbound|api|9000", status: 200}, "", true, unknown, api, topology.HTTP, topology.Class2xx, false},
		{"inbound already counted by the caller: served only", apiIn, entry{cluster: "inbound|api|9000", status: 500, fromPeer: true}, SkipCountedByPeer, true, unknown, api, topology.HTTP, topology.Class5xx, true},
		{"inbound mirrored request: nowhere", apiIn, entry{cluster: "inbound|api|9000", status: 200, fromPeer: true, host: "api-shadow:9000"}, SkipShadow, false, topology.Node{}, topology.Node{}, "", 0, false},
		{"inbound mirrored request from a caller without sidecar", apiIn, entry{cluster: "inbound|api|9000", status: 503, host: "api:9000-shadow"}, SkipShadow, false, topology.Node{}, topology.Node{}, "", 0, false},
		{"inbound with an ordinary authority", apiIn, entry{cluster: "inbound|api|9000", status: 200, host: "api:9000"}, "", true, unknown, api, topology.HTTP, topology.Class2xx, false},
		{"unknown log name", Identity{Service: "web", LogName: "mine"}, entry{cluster: "outbound|api", status: 200}, SkipLogName, false, topology.Node{}, topology.Node{}, "", 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := Attribute(c.id, c.e.proto())
			if a.Skip != c.skip || a.Served != c.served {
				t.Fatalf("skip %q served %v, want %q %v", a.Skip, a.Served, c.skip, c.served)
			}
			if a.Skip != "" && !a.Served {
				return
			}
			o := a.Obs
			if o.Source != c.src || o.Target != c.dst || o.Protocol != c.proto || topology.ClassOf(o) != c.class || topology.IsError(o) != c.isErr || !o.Time.Equal(start) {
				t.Fatalf("got %+v (class %v, error %v)", o, topology.ClassOf(o), topology.IsError(o))
			}
		})
	}
	if a := Attribute(webOut, &accesslogdatav3.HTTPAccessLogEntry{}); a.Skip != SkipIncomplete || a.Served {
		t.Fatalf("an entry without common properties: %+v", a)
	}
	if a := Attribute(apiIn, &accesslogdatav3.HTTPAccessLogEntry{}); a.Skip != SkipIncomplete || a.Served {
		t.Fatalf("an inbound entry without common properties: %+v", a)
	}
}

func TestIsShadow(t *testing.T) {
	for authority, want := range map[string]bool{
		"api-shadow": true, "api-shadow:9000": true, "api:9000-shadow": true, "10.0.0.3:21000-shadow": true,
		"[::1]-shadow": true, "[::1]-shadow:80": true,
		"api": false, "api:9000": false, "shadow": false, "api-shadowy:80": false, "[::1]:80": false, "[fe80::shadow]": false, "": false, ":": false,
	} {
		if got, gotBytes := isShadow(authority), isShadow([]byte(authority)); got != want || gotBytes != want {
			t.Errorf("isShadow(%q) = %v (bytes: %v), want %v", authority, got, gotBytes, want)
		}
	}
}

func TestAttributeTCP(t *testing.T) {
	web, api := topology.Node{Service: "web", Version: "v1"}, topology.Node{Service: "api", Version: "v2"}
	cases := []struct {
		name    string
		id      Identity
		e       tcpEntry
		skip    string
		served  bool
		dst     topology.Node
		class   topology.Class
		latency time.Duration
	}{
		{"outbound connection", webOut, tcpEntry{cluster: "outbound|api|v2", duration: 3 * time.Second, ttlb: time.Second, in: 100, out: 2000}, "", false, api, topology.Class2xx, 3 * time.Second},
		{"no duration: time to last byte", webOut, tcpEntry{cluster: "outbound|api|v2", ttlb: 40 * time.Millisecond, in: 1, out: 2}, "", false, api, topology.Class2xx, 40 * time.Millisecond},
		{"connection failure", webOut, tcpEntry{cluster: "outbound|api|v2", connFail: true}, "", false, api, topology.ClassConnFailure, 0},
		{"no healthy upstream", webOut, tcpEntry{cluster: "outbound|api", noHealthy: true}, "", false, topology.Node{Service: "api"}, topology.ClassConnFailure, 0},
		{"telemetry sink", webOut, tcpEntry{cluster: "signalbox-otel"}, SkipOtherCluster, false, topology.Node{}, 0, 0},
		{"inbound: served view only", apiIn, tcpEntry{cluster: "inbound|api|9000", duration: time.Second, in: 5, out: 6}, SkipInboundTCP, true, api, topology.Class2xx, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := AttributeTCP(c.id, c.e.proto())
			if a.Skip != c.skip || a.Served != c.served {
				t.Fatalf("skip %q served %v, want %q %v", a.Skip, a.Served, c.skip, c.served)
			}
			if a.Skip != "" && !a.Served {
				return
			}
			o := a.Obs
			wantErr := c.class == topology.ClassConnFailure
			if o.Target != c.dst || o.Protocol != topology.TCP || topology.ClassOf(o) != c.class || topology.IsError(o) != wantErr ||
				o.Latency != c.latency || o.Bytes != c.e.in+c.e.out || !o.Time.Equal(start) {
				t.Fatalf("got %+v (class %v, error %v)", o, topology.ClassOf(o), topology.IsError(o))
			}
			if c.id.LogName == LogOutbound && o.Source != web {
				t.Fatalf("source %+v, want %+v", o.Source, web)
			}
		})
	}
	if a := AttributeTCP(webOut, &accesslogdatav3.TCPAccessLogEntry{}); a.Skip != SkipIncomplete {
		t.Fatalf("a TCP entry without common properties: %+v", a)
	}
}

// TestNegativeDurationCountsAsZero: a negative time to last byte or
// connection duration (a sender's bug) is a latency of 0, as a negative
// Zipkin duration is.
func TestNegativeDurationCountsAsZero(t *testing.T) {
	if a := Attribute(webOut, entry{cluster: "outbound|api|v2", status: 200, latency: -3 * time.Second}.proto()); a.Obs.Latency != 0 {
		t.Errorf("HTTP: latency %v, want 0", a.Obs.Latency)
	}
	if a := AttributeTCP(webOut, tcpEntry{cluster: "outbound|db", duration: -time.Second}.proto()); a.Obs.Latency != 0 {
		t.Errorf("TCP duration: latency %v, want 0", a.Obs.Latency)
	}
	if a := AttributeTCP(webOut, tcpEntry{cluster: "outbound|db", ttlb: -time.Second}.proto()); a.Obs.Latency != 0 {
		t.Errorf("TCP time to last byte: latency %v, want 0", a.Obs.Latency)
	}
}

func TestParseGRPCStatusAgreesWithAtoi(t *testing.T) {
	for _, v := range []string{"", "0", "14", "16", "17", "-0", "-1", "+7", "+", "-", "007", "1a", " 1", "1 ", "00000000000000000000000000016",
		"99999999999999999999999", "-00", "+-1", "١", "\xff"} {
		want := grpcStatusOf(map[string]string{"grpc-status": v})
		if got := parseGRPCStatus([]byte(v)); got != want {
			t.Errorf("%q: %d, strconv says %d", v, got, want)
		}
	}
}
