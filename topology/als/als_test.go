package als

import (
	"context"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
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
}

func (e entry) proto() *accesslogdatav3.HTTPAccessLogEntry {
	out := &accesslogdatav3.HTTPAccessLogEntry{
		CommonProperties: &accesslogdatav3.AccessLogCommon{
			StartTime:                  timestamppb.New(start),
			UpstreamCluster:            e.cluster,
			TimeToLastDownstreamTxByte: durationpb.New(e.latency),
			ResponseFlags:              &accesslogdatav3.ResponseFlags{UpstreamConnectionFailure: e.connFail},
		},
		Request:  &accesslogdatav3.HTTPRequestProperties{RequestHeaders: map[string]string{}},
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

func TestAttribute(t *testing.T) {
	web := Identity{Service: "web", Version: "v1", LogName: "outbound"}
	api := Identity{Service: "api", Version: "v2", LogName: "inbound"}
	cases := []struct {
		name     string
		id       Identity
		e        entry
		skip     string
		src, dst topology.Node
		proto    topology.Protocol
		isErr    bool
	}{
		{"outbound to a subset", web, entry{cluster: "outbound|api|v2", status: 200}, "", topology.Node{Service: "web", Version: "v1"}, topology.Node{Service: "api", Version: "v2"}, topology.HTTP, false},
		{"outbound to all versions", web, entry{cluster: "outbound|api", status: 503}, "", topology.Node{Service: "web", Version: "v1"}, topology.Node{Service: "api", Version: ""}, topology.HTTP, true},
		{"gRPC UNAVAILABLE in trailers", web, entry{cluster: "outbound|api|v2", status: 200, grpc: "14"}, "", topology.Node{Service: "web", Version: "v1"}, topology.Node{Service: "api", Version: "v2"}, topology.GRPC, true},
		{"connection failure", web, entry{cluster: "outbound|api|v2", connFail: true}, "", topology.Node{Service: "web", Version: "v1"}, topology.Node{Service: "api", Version: "v2"}, topology.HTTP, true},
		{"telemetry sink", web, entry{cluster: "signalbox-zipkin", status: 202}, SkipOtherCluster, topology.Node{}, topology.Node{}, "", false},
		{"inbound from a caller without sidecar", api, entry{cluster: "inbound|api|9000", status: 200}, "", topology.Node{Service: UnknownService, Version: ""}, topology.Node{Service: "api", Version: "v2"}, topology.HTTP, false},
		{"inbound already counted by the caller", api, entry{cluster: "inbound|api|9000", status: 200, fromPeer: true}, SkipCountedByPeer, topology.Node{}, topology.Node{}, "", false},
		{"unknown log name", Identity{Service: "web", LogName: "mine"}, entry{cluster: "outbound|api", status: 200}, SkipLogName, topology.Node{}, topology.Node{}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, skip := Attribute(c.id, c.e.proto())
			if skip != c.skip {
				t.Fatalf("skip %q, want %q", skip, c.skip)
			}
			if skip != "" {
				return
			}
			if o.Source != c.src || o.Target != c.dst || o.Protocol != c.proto || topology.IsError(o) != c.isErr {
				t.Fatalf("got %+v (error %v)", o, topology.IsError(o))
			}
		})
	}
	if _, skip := Attribute(web, &accesslogdatav3.HTTPAccessLogEntry{}); skip != SkipIncomplete {
		t.Fatalf("an entry without common properties: skip %q", skip)
	}
}

func serve(t *testing.T, store *topology.Store) (*Server, alsv3.AccessLogServiceClient) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(store, func() time.Time { return start })
	g := grpc.NewServer()
	alsv3.RegisterAccessLogServiceServer(g, srv)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return srv, alsv3.NewAccessLogServiceClient(cc)
}

func identifier(service, version, logName string) *alsv3.StreamAccessLogsMessage_Identifier {
	meta, _ := structpb.NewStruct(map[string]any{"version": version})
	return &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: service + "-1", Cluster: service, Metadata: meta}, LogName: logName}
}

func TestStreamIntoTheGraph(t *testing.T) {
	store := topology.New(topology.Options{})
	srv, client := serve(t, store)
	send := func(id *alsv3.StreamAccessLogsMessage_Identifier, batches ...[]entry) {
		t.Helper()
		stream, err := client.StreamAccessLogs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i, batch := range batches {
			msg := &alsv3.StreamAccessLogsMessage{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{}}}
			if i == 0 {
				msg.Identifier = id
			}
			for _, e := range batch {
				msg.GetHttpLogs().LogEntry = append(msg.GetHttpLogs().LogEntry, e.proto())
			}
			if err := stream.Send(msg); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
	}
	var ok, fail []entry
	for i := 0; i < 40; i++ {
		ok = append(ok, entry{cluster: "outbound|api|v2", status: 200, latency: 20 * time.Millisecond})
	}
	for i := 0; i < 5; i++ {
		fail = append(fail, entry{cluster: "outbound|api|v2", status: 503, latency: 5 * time.Millisecond})
	}
	send(identifier("web", "v1", "outbound"), ok, fail, []entry{{cluster: "outbound|api|v2", connFail: true}, {cluster: "signalbox-zipkin", status: 202}})
	// The callee's inbound side: 46 requests from web's sidecar (already
	// counted) and 3 from a caller without one.
	var in []entry
	for i := 0; i < 46; i++ {
		in = append(in, entry{cluster: "inbound|api|9000", status: 200, fromPeer: true})
	}
	for i := 0; i < 3; i++ {
		in = append(in, entry{cluster: "inbound|api|9000", status: 200})
	}
	send(identifier("api", "v2", "inbound"), in)

	g, err := store.Graph(start, time.Minute, topology.ByVersion)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]topology.GraphEdge{}
	for _, e := range g.Edges {
		got[e.Source+" → "+e.Target] = e
	}
	if e := got["web@v1 → api@v2"]; e.Requests != 46 || e.Errors != 6 || e.ByClass["5xx"] != 5 || e.ByClass["connFailure"] != 1 {
		t.Errorf("web → api: %+v", e)
	}
	if e := got["unknown → api@v2"]; e.Requests != 3 || e.Errors != 0 {
		t.Errorf("unknown → api: %+v", e)
	}
	if len(got) != 2 {
		t.Errorf("edges: %v", g.Edges)
	}
	if e := got["web@v1 → api@v2"]; e.P50Ms < 19.5 || e.P50Ms > 20.5 {
		t.Errorf("p50 %v ms, want 20 ms within 1%%", e.P50Ms)
	}
	if srv.Entries.Load() != 96 || srv.Recorded.Load() != 49 || srv.Skipped(SkipCountedByPeer) != 46 || srv.Skipped(SkipOtherCluster) != 1 {
		t.Errorf("counters: entries %d recorded %d peer %d other %d", srv.Entries.Load(), srv.Recorded.Load(), srv.Skipped(SkipCountedByPeer), srv.Skipped(SkipOtherCluster))
	}
}

func TestStreamWithoutNodeIsRefused(t *testing.T) {
	srv, client := serve(t, topology.New(topology.Options{}))
	stream, err := client.StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&alsv3.StreamAccessLogsMessage{})
	_, err = stream.CloseAndRecv()
	if status.Code(err) != codes.InvalidArgument || srv.Rejected.Load() != 1 {
		t.Fatalf("stream without a node: %v (rejected %d), want InvalidArgument", err, srv.Rejected.Load())
	}
}

func FuzzAttribute(f *testing.F) {
	seed, _ := proto.Marshal(&alsv3.StreamAccessLogsMessage{
		Identifier: identifier("web", "v1", "outbound"),
		LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{
			LogEntry: []*accesslogdatav3.HTTPAccessLogEntry{entry{cluster: "outbound|api|v2", status: 200, grpc: "14"}.proto()},
		}},
	})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var msg alsv3.StreamAccessLogsMessage
		if proto.Unmarshal(data, &msg) != nil {
			return
		}
		id, err := IdentityOf(msg.GetIdentifier())
		if err != nil {
			return
		}
		for _, e := range msg.GetHttpLogs().GetLogEntry() {
			o, skip := Attribute(id, e)
			if skip == "" && (o.Target.Service == "" || o.Source.Service == "") {
				t.Fatalf("attributed with an empty end: %+v", o)
			}
		}
	})
}
