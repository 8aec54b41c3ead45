package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/xds/ir"
)

// alsEntry builds an access log entry as Envoy sends it.
func alsEntry(cluster string, status uint32, grpcStatus string, connFailure, fromSidecar bool) *accesslogdatav3.HTTPAccessLogEntry {
	e := &accesslogdatav3.HTTPAccessLogEntry{
		CommonProperties: &accesslogdatav3.AccessLogCommon{
			StartTime:                  timestamppb.Now(),
			UpstreamCluster:            cluster,
			TimeToLastDownstreamTxByte: durationpb.New(10 * time.Millisecond),
			ResponseFlags:              &accesslogdatav3.ResponseFlags{UpstreamConnectionFailure: connFailure},
		},
		Request:  &accesslogdatav3.HTTPRequestProperties{RequestHeaders: map[string]string{}},
		Response: &accesslogdatav3.HTTPResponseProperties{ResponseTrailers: map[string]string{}},
	}
	if status > 0 {
		e.Response.ResponseCode = wrapperspb.UInt32(status)
	}
	if grpcStatus != "" {
		e.Response.ResponseTrailers["grpc-status"] = grpcStatus
	}
	if fromSidecar {
		e.Request.RequestHeaders[ir.DownstreamClusterHeader] = "web"
	}
	return e
}

// TestAccessLogsBecomeTheGraph: an ALS client speaking Envoy's protocol sends
// known entries to the binary; the graph API shows exactly those edges and
// counts, each request once.
func TestAccessLogsBecomeTheGraph(t *testing.T) {
	c := consultest.Start(t)
	sb := startSignalbox(t, c.HTTPAddr(), "")
	cc, err := grpc.NewClient(sb.XDSAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	send := func(service, version, logName string, entries []*accesslogdatav3.HTTPAccessLogEntry) {
		t.Helper()
		stream, err := alsv3.NewAccessLogServiceClient(cc).StreamAccessLogs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		meta, _ := structpb.NewStruct(map[string]any{"version": version, ir.NodeMetaSidecar: true})
		msg := &alsv3.StreamAccessLogsMessage{
			Identifier: &alsv3.StreamAccessLogsMessage_Identifier{Node: &corev3.Node{Id: service + "-1", Cluster: service, Metadata: meta}, LogName: logName},
			LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: entries}},
		}
		if err := stream.Send(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			t.Fatal(err)
		}
	}
	var out, in []*accesslogdatav3.HTTPAccessLogEntry
	// web calls api over gRPC: 20 OK, 3 answered 503 by Envoy (trailers-only
	// UNAVAILABLE), 1 UNAVAILABLE from the app itself.
	for i := 0; i < 20; i++ {
		out = append(out, alsEntry("outbound|api|v2", 200, "0", false, false))
	}
	for i := 0; i < 3; i++ {
		out = append(out, alsEntry("outbound|api|v2", 503, "14", false, false))
	}
	out = append(out, alsEntry("outbound|api|v2", 200, "14", false, false))
	out = append(out, alsEntry("outbound|db", 0, "", true, false)) // connection failure
	for i := 0; i < 24; i++ {
		in = append(in, alsEntry("inbound|api|9000", 200, "", false, true)) // web's calls, counted by web
	}
	for i := 0; i < 2; i++ {
		in = append(in, alsEntry("inbound|api|9000", 200, "", false, false)) // a caller without a sidecar
	}
	send("web", "v1", "outbound", out)
	send("api", "v2", "inbound", in)

	type edge struct {
		Source, Target   string
		Protocol         string
		Requests, Errors uint64
		ByClass          map[string]uint64
		P50Ms            float64
	}
	var g struct{ Edges []edge }
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last graph: %s", last)
		}
	}()
	eventually(t, 5*time.Second, "the graph shows the access logs", func() bool {
		var code int
		code, last = sb.get("/api/v1/graph?window=1m&by=version")
		g.Edges = nil
		return code == 200 && json.Unmarshal([]byte(last), &g) == nil && len(g.Edges) == 3
	})
	byPair := map[string]edge{}
	for _, e := range g.Edges {
		byPair[e.Source+" → "+e.Target] = e
	}
	if e := byPair["web@v1 → api@v2"]; e.Protocol != "grpc" || e.Requests != 24 || e.Errors != 4 || e.ByClass["5xx"] != 3 || e.ByClass["2xx"] != 21 || e.P50Ms < 9.8 || e.P50Ms > 10.2 {
		t.Errorf("web → api: %+v, want gRPC, 24 requests, 4 errors (3 × 503, 1 × UNAVAILABLE), p50 10 ms", e)
	}
	if e := byPair["web@v1 → db"]; e.Requests != 1 || e.ByClass["connFailure"] != 1 || e.Errors != 1 {
		t.Errorf("web → db: %+v, want one connection failure", e)
	}
	if e := byPair["unknown → api@v2"]; e.Requests != 2 || e.Errors != 0 {
		t.Errorf("unknown → api: %+v, want the 2 calls from a caller without a sidecar", e)
	}
	if code, body := sb.get("/api/v1/graph?window=forever"); code != 400 {
		t.Errorf("bad window: %d %s, want 400", code, body)
	}
}
