package als

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/signalbox/signalbox/topology"
)

// registrations are the ways to serve a Server; every stream test runs on
// each.
var registrations = []struct {
	name     string
	opts     []grpc.ServerOption
	register func(*grpc.Server, *Server)
}{
	{"wire+codec", []grpc.ServerOption{ServerOption()}, func(g *grpc.Server, s *Server) { s.Register(g) }},
	{"wire", nil, func(g *grpc.Server, s *Server) { s.Register(g) }},
	{"generated", nil, func(g *grpc.Server, s *Server) { alsv3.RegisterAccessLogServiceServer(g, s) }},
}

// serve runs a Server on loopback with the options cmd/signalbox gives it.
func serve(t *testing.T, store *topology.Store, opts []grpc.ServerOption, register func(*grpc.Server, *Server), srvOpts ...Option) (*Server, *grpc.ClientConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(store, func() time.Time { return start }, srvOpts...)
	g := grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageBytes)}, opts...)...)
	register(g, srv)
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return srv, cc
}

func httpMessage(id *alsv3.StreamAccessLogsMessage_Identifier, batch []entry) *alsv3.StreamAccessLogsMessage {
	msg := &alsv3.StreamAccessLogsMessage{Identifier: id, LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{}}}
	for _, e := range batch {
		msg.GetHttpLogs().LogEntry = append(msg.GetHttpLogs().LogEntry, e.proto())
	}
	return msg
}

// send streams msgs and returns the status the client sees at the end.
func send(t *testing.T, cc *grpc.ClientConn, msgs ...*alsv3.StreamAccessLogsMessage) error {
	t.Helper()
	stream, err := alsv3.NewAccessLogServiceClient(cc).StreamAccessLogs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server ended the stream: CloseAndRecv says why
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

func repeat(n int, e entry) []entry {
	out := make([]entry, n)
	for i := range out {
		out[i] = e
	}
	return out
}

func TestStreamIntoTheGraph(t *testing.T) {
	for _, r := range registrations {
		t.Run(r.name, func(t *testing.T) {
			store := topology.New(topology.Options{})
			srv, cc := serve(t, store, r.opts, r.register)
			ok := repeat(40, entry{cluster: "outbound|api|v2", status: 200, latency: 20 * time.Millisecond})
			fail := repeat(5, entry{cluster: "outbound|api|v2", status: 503, latency: 5 * time.Millisecond})
			err := send(t, cc, httpMessage(identifier("web", "v1", LogOutbound), ok), httpMessage(nil, fail),
				httpMessage(nil, []entry{{cluster: "outbound|api|v2", connFail: true}, {cluster: "signalbox-zipkin", status: 202}}))
			if err != nil {
				t.Fatal(err)
			}
			// The callee's inbound side: 46 requests from web's sidecar
			// (already counted as edges) and 3 from a caller without one;
			// 2 of web's failed in the callee too.
			in := append(repeat(44, entry{cluster: "inbound|api|9000", status: 200, fromPeer: true, latency: 10 * time.Millisecond}),
				repeat(2, entry{cluster: "inbound|api|9000", status: 500, fromPeer: true, latency: 10 * time.Millisecond})...)
			in = append(in, repeat(3, entry{cluster: "inbound|api|9000", status: 200, latency: 10 * time.Millisecond})...)
			if err := send(t, cc, httpMessage(identifier("api", "v2", LogInbound), in)); err != nil {
				t.Fatal(err)
			}

			g, err := store.Graph(start, time.Minute, topology.ByVersion)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]topology.GraphEdge{}
			for _, e := range g.Edges {
				got[e.Source+" → "+e.Target] = e
			}
			if e := got["web@v1 → api@v2"]; e.Requests != 46 || e.Errors != 6 || e.ByClass.C5xx != 5 || e.ByClass.ConnFailure != 1 {
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

			vc, err := store.VersionCounts("api", start, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if c := vc.Callers["v2"]; c.Requests != 49 || c.Errors != 6 {
				t.Errorf("api@v2 as its callers saw it: %+v", c)
			}
			if c := vc.Self["v2"]; c.Requests != 49 || c.Errors != 2 || c.P99Ms < 9.9 || c.P99Ms > 10.1 {
				t.Errorf("api@v2 as it saw itself: %+v", c)
			}
			if len(vc.Self) != 1 {
				t.Errorf("served view: %+v", vc.Self)
			}
			if srv.Entries.Load() != 96 || srv.Recorded.Load() != 49 || srv.Served.Load() != 49 ||
				srv.Skipped(SkipCountedByPeer) != 46 || srv.Skipped(SkipOtherCluster) != 1 || srv.Rejected.Load() != 0 {
				t.Errorf("counters: entries %d recorded %d served %d peer %d other %d rejected %d", srv.Entries.Load(), srv.Recorded.Load(),
					srv.Served.Load(), srv.Skipped(SkipCountedByPeer), srv.Skipped(SkipOtherCluster), srv.Rejected.Load())
			}
		})
	}
}

func tcpMessage(id *alsv3.StreamAccessLogsMessage_Identifier, batch ...tcpEntry) *alsv3.StreamAccessLogsMessage {
	msg := &alsv3.StreamAccessLogsMessage{Identifier: id, LogEntries: &alsv3.StreamAccessLogsMessage_TcpLogs{TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{}}}
	for _, e := range batch {
		msg.GetTcpLogs().LogEntry = append(msg.GetTcpLogs().LogEntry, e.proto())
	}
	return msg
}

func TestTCPIntoTheGraph(t *testing.T) {
	for _, r := range registrations {
		t.Run(r.name, func(t *testing.T) {
			store := topology.New(topology.Options{})
			srv, cc := serve(t, store, r.opts, r.register)
			conn := tcpEntry{cluster: "outbound|db|v1", duration: 2 * time.Second, in: 300, out: 4000}
			err := send(t, cc, tcpMessage(identifier("api", "v2", LogOutbound), conn, conn, conn, tcpEntry{cluster: "outbound|db|v1", connFail: true}),
				tcpMessage(nil, tcpEntry{cluster: "signalbox-otel", duration: time.Second}))
			if err != nil {
				t.Fatal(err)
			}
			if err := send(t, cc, tcpMessage(identifier("db", "v1", LogInbound), conn, conn, conn)); err != nil {
				t.Fatal(err)
			}
			g, err := store.Graph(start, time.Minute, topology.ByVersion)
			if err != nil {
				t.Fatal(err)
			}
			if len(g.Edges) != 1 {
				t.Fatalf("edges: %+v (inbound TCP must not add one)", g.Edges)
			}
			e := g.Edges[0]
			if e.Source != "api@v2" || e.Target != "db@v1" || e.Protocol != topology.TCP || e.Requests != 4 || e.Errors != 1 ||
				e.ByClass.ConnFailure != 1 || e.Bytes != 3*4300 || e.P50Ms < 1980 || e.P50Ms > 2020 {
				t.Errorf("api → db: %+v", e)
			}
			vc, err := store.VersionCounts("db", start, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if c := vc.Self["v1"]; c.Requests != 3 || c.Errors != 0 {
				t.Errorf("db@v1 as it saw itself: %+v", vc.Self)
			}
			if srv.Entries.Load() != 8 || srv.Recorded.Load() != 4 || srv.Served.Load() != 3 || srv.Skipped(SkipInboundTCP) != 3 || srv.Skipped(SkipOtherCluster) != 1 {
				t.Errorf("counters: entries %d recorded %d served %d inbound tcp %d other %d", srv.Entries.Load(), srv.Recorded.Load(),
					srv.Served.Load(), srv.Skipped(SkipInboundTCP), srv.Skipped(SkipOtherCluster))
			}
		})
	}
}

// TestSkewedClockStampedOnArrival: an entry from a sidecar whose clock is
// off by more than topology.MaxSkew is recorded when its message arrived (as
// the Zipkin collector does with spans), not in a bucket far ahead or behind;
// within it, and for a long connection whose end is now, the start time
// stands.
func TestSkewedClockStampedOnArrival(t *testing.T) {
	for _, r := range registrations {
		t.Run(r.name, func(t *testing.T) {
			store := topology.New(topology.Options{})
			_, cc := serve(t, store, r.opts, r.register) // messages arrive at start
			ms := 20 * time.Millisecond
			err := send(t, cc, httpMessage(identifier("web", "v1", LogOutbound), []entry{
				{cluster: "outbound|api|v1", status: 200, latency: ms, startAt: 24 * time.Hour},
				{cluster: "outbound|api|v1", status: 200, latency: ms, startAt: -10 * time.Minute},
				{cluster: "outbound|api|v2", status: 200, latency: ms, startAt: 4 * time.Minute},
			}))
			if err != nil {
				t.Fatal(err)
			}
			err = send(t, cc, tcpMessage(identifier("web", "v1", LogOutbound),
				tcpEntry{cluster: "outbound|db", duration: 10 * time.Minute, startAt: -10 * time.Minute}))
			if err != nil {
				t.Fatal(err)
			}
			at := func(now time.Time) map[string]uint64 {
				g, err := store.Graph(now, time.Minute, topology.ByVersion)
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]uint64{}
				for _, e := range g.Edges {
					got[e.Source+" → "+e.Target] = e.Requests
				}
				return got
			}
			if got := at(start); got["web@v1 → api@v1"] != 2 || len(got) != 1 {
				t.Errorf("the minute of arrival: %v; want the 2 skewed requests to api@v1 only", got)
			}
			if got := at(start.Add(4 * time.Minute)); got["web@v1 → api@v2"] != 1 || len(got) != 1 {
				t.Errorf("4 minutes ahead: %v; want the request within the skew", got)
			}
			if got := at(start.Add(-10 * time.Minute)); got["web@v1 → db"] != 1 || len(got) != 1 {
				t.Errorf("10 minutes before: %v; want the connection that started then", got)
			}
		})
	}
}

// TestRefusals: each limit ends the stream with a status that says what to
// fix, counts the reason, and records nothing of the refused message.
func TestRefusals(t *testing.T) {
	ok := entry{cluster: "outbound|api|v2", status: 200}
	huge := ok.proto()
	huge.Request.RequestHeaders["x-big"] = strings.Repeat("x", MaxMessageBytes)
	cases := []struct {
		name   string
		msgs   []*alsv3.StreamAccessLogsMessage
		code   codes.Code
		msg    string
		reason string
		// recorded: the entries recorded before the refusal.
		recorded uint64
	}{
		{"no node", []*alsv3.StreamAccessLogsMessage{{}}, codes.InvalidArgument,
			"access log stream: the first message carries no identifier: Envoy sends the node and log name first", RejectNoIdentifier, 0},
		{"node without cluster", []*alsv3.StreamAccessLogsMessage{httpMessage(identifier("", "v1", LogOutbound), []entry{ok})}, codes.InvalidArgument,
			"access log stream: the node has no cluster: it must name the Consul service the sidecar fronts", RejectNoIdentifier, 0},
		{"message too large", []*alsv3.StreamAccessLogsMessage{httpMessage(identifier("web", "v1", LogOutbound), []entry{ok}),
			{LogEntries: &alsv3.StreamAccessLogsMessage_HttpLogs{HttpLogs: &alsv3.StreamAccessLogsMessage_HTTPAccessLogEntries{LogEntry: []*accesslogdatav3.HTTPAccessLogEntry{huge}}}}},
			// gRPC sends its own status when a receive fails.
			codes.ResourceExhausted, "grpc: received message larger than max (", RejectTooLarge, 1},
		{"too many entries", []*alsv3.StreamAccessLogsMessage{httpMessage(identifier("web", "v1", LogOutbound), []entry{ok}),
			httpMessage(nil, repeat(MaxEntriesPerMessage+1, ok))},
			codes.InvalidArgument, "access log stream: message 2 has more than 10000 entries; send at most 10000 per message", RejectTooManyEntries, 1},
	}
	for _, r := range registrations {
		for _, c := range cases {
			t.Run(r.name+"/"+c.name, func(t *testing.T) {
				store := topology.New(topology.Options{})
				srv, cc := serve(t, store, r.opts, r.register)
				err := send(t, cc, c.msgs...)
				if st := status.Convert(err); st.Code() != c.code || !strings.HasPrefix(st.Message(), c.msg) {
					t.Fatalf("client saw %v, want %v %q…", err, c.code, c.msg)
				}
				// gRPC tells the client of a message too large before the
				// handler hears of it: wait for the count.
				eventually(t, func() bool { return srv.Rejected.Load() == 1 })
				if srv.RejectedFor(c.reason) != 1 || srv.Recorded.Load() != c.recorded {
					t.Fatalf("rejected %d (%s: %d), recorded %d", srv.Rejected.Load(), c.reason, srv.RejectedFor(c.reason), srv.Recorded.Load())
				}
			})
		}
	}
}

// TestNodeCheck: a stream whose identifier names a node the check refuses
// ends with PermissionDenied and the check's reason, records nothing of
// that message, and counts the refusal; the check sees the stream's peer.
func TestNodeCheck(t *testing.T) {
	ok := entry{cluster: "outbound|api|v2", status: 200}
	check := func(ctx context.Context, n *corev3.Node) error {
		if _, ok := peer.FromContext(ctx); !ok {
			return status.Error(codes.Internal, "the check got no peer")
		}
		if n.GetCluster() != "web" {
			return status.Errorf(codes.PermissionDenied, "this client may speak for web only, not %s", n.GetCluster())
		}
		return nil
	}
	cases := []struct {
		name     string
		msgs     []*alsv3.StreamAccessLogsMessage
		msg      string
		recorded uint64
	}{
		{"first message", []*alsv3.StreamAccessLogsMessage{httpMessage(identifier("api", "v1", LogOutbound), []entry{ok})},
			"access log stream: this client may speak for web only, not api", 0},
		{"a later identifier", []*alsv3.StreamAccessLogsMessage{httpMessage(identifier("web", "v1", LogOutbound), []entry{ok}),
			httpMessage(identifier("api", "v1", LogOutbound), []entry{ok, ok})},
			"access log stream: this client may speak for web only, not api", 1},
	}
	for _, r := range registrations {
		for _, c := range cases {
			t.Run(r.name+"/"+c.name, func(t *testing.T) {
				store := topology.New(topology.Options{})
				srv, cc := serve(t, store, r.opts, r.register, WithNodeCheck(check))
				err := send(t, cc, c.msgs...)
				if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != c.msg {
					t.Fatalf("client saw %v, want PermissionDenied %q", err, c.msg)
				}
				if srv.RejectedFor(RejectUnauthorized) != 1 || srv.Recorded.Load() != c.recorded {
					t.Fatalf("unauthorized %d, recorded %d; want 1 and %d", srv.RejectedFor(RejectUnauthorized), srv.Recorded.Load(), c.recorded)
				}
			})
		}
		t.Run(r.name+"/allowed", func(t *testing.T) {
			store := topology.New(topology.Options{})
			srv, cc := serve(t, store, r.opts, r.register, WithNodeCheck(check))
			if err := send(t, cc, httpMessage(identifier("web", "v1", LogOutbound), []entry{ok, ok})); err != nil {
				t.Fatal(err)
			}
			if srv.Recorded.Load() != 2 || srv.Rejected.Load() != 0 {
				t.Fatalf("recorded %d, rejected %d; want 2 and 0", srv.Recorded.Load(), srv.Rejected.Load())
			}
		})
	}
}

// eventually polls cond until it holds, failing the test after 10 s.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestMostEntriesAccepted(t *testing.T) {
	store := topology.New(topology.Options{})
	srv, cc := serve(t, store, registrations[0].opts, registrations[0].register)
	err := send(t, cc, httpMessage(identifier("web", "v1", LogOutbound), repeat(MaxEntriesPerMessage, entry{cluster: "outbound|api|v2", status: 200})))
	if err != nil || srv.Recorded.Load() != MaxEntriesPerMessage {
		t.Fatalf("%d entries: %v, recorded %d", MaxEntriesPerMessage, err, srv.Recorded.Load())
	}
}

// rawCodec sends bytes as they are, to put encodings on the wire that a
// generated client would not make.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

func (rawCodec) Name() string { return "proto" }

func sendRaw(t *testing.T, cc *grpc.ClientConn, msgs ...[]byte) error {
	t.Helper()
	desc := &grpc.StreamDesc{StreamName: "StreamAccessLogs", ClientStreams: true}
	stream, err := cc.NewStream(context.Background(), desc, "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := stream.SendMsg(m); err != nil {
			break
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	return stream.RecvMsg(&alsv3.StreamAccessLogsResponse{})
}

// TestWireDecoderReadsOnlyWhatItNeeds: a header value that is not UTF-8 (a
// proto3 string that protobuf refuses, so the generated path loses the whole
// batch) costs nothing on the wire path, while a broken field the decoder
// reads ends the stream as malformed.
func TestWireDecoderReadsOnlyWhatItNeeds(t *testing.T) {
	store := topology.New(topology.Options{})
	srv, cc := serve(t, store, registrations[0].opts, registrations[0].register)
	good, err := proto.Marshal(httpMessage(identifier("web", "v1", LogOutbound), repeat(3, entry{cluster: "outbound|api|v2", status: 200})))
	if err != nil {
		t.Fatal(err)
	}
	// An entry with a request header "x-odd: \xff", appended as a second
	// entries field (which merges into the first).
	hdr := protowire.AppendTag(nil, 1, protowire.BytesType)
	hdr = protowire.AppendString(hdr, "x-odd")
	hdr = protowire.AppendTag(hdr, 2, protowire.BytesType)
	hdr = protowire.AppendString(hdr, "\xff")
	req := protowire.AppendBytes(protowire.AppendTag(nil, fReqHeaders, protowire.BytesType), hdr)
	e := entry{cluster: "outbound|api|v2", status: 200}.proto()
	eb, err := proto.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	eb = append(eb, protowire.AppendBytes(protowire.AppendTag(nil, fHTTPRequest, protowire.BytesType), req)...)
	list := protowire.AppendBytes(protowire.AppendTag(nil, fEntriesEntry, protowire.BytesType), eb)
	odd := protowire.AppendBytes(protowire.AppendTag(nil, fMsgHTTPLogs, protowire.BytesType), list)
	if proto.Unmarshal(odd, &alsv3.StreamAccessLogsMessage{}) == nil {
		t.Fatal("protobuf accepts the odd header: the test no longer tests anything")
	}
	// A start time cut short inside an entry.
	common := protowire.AppendBytes(protowire.AppendTag(nil, fCommonStartTime, protowire.BytesType), []byte{0x08, 0x80})
	eb = protowire.AppendBytes(protowire.AppendTag(nil, fHTTPCommon, protowire.BytesType), common)
	list = protowire.AppendBytes(protowire.AppendTag(nil, fEntriesEntry, protowire.BytesType), eb)
	broken := protowire.AppendBytes(protowire.AppendTag(nil, fMsgHTTPLogs, protowire.BytesType), list)

	err = sendRaw(t, cc, good, odd, good, broken, good)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "access log stream: message 4: not a valid protobuf encoding" {
		t.Fatalf("client saw %v", err)
	}
	if srv.Recorded.Load() != 7 || srv.RejectedFor(RejectMalformed) != 1 {
		t.Fatalf("recorded %d, malformed %d; want 7 and 1", srv.Recorded.Load(), srv.RejectedFor(RejectMalformed))
	}
}

// TestCodecLeavesOtherServicesAlone: with ServerOption, the other services
// of the server (xDS in signalbox; health here) decode and encode as ever.
func TestCodecLeavesOtherServicesAlone(t *testing.T) {
	_, cc := serve(t, topology.New(topology.Options{}), []grpc.ServerOption{ServerOption()}, func(g *grpc.Server, s *Server) { s.Register(g) })
	resp, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check through the codec: %v, %v", resp, err)
	}
	_, err = healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: %v, want NotFound", err)
	}
}

// TestEveryReasonHasACounter: the reasons cmd exports as metric labels each
// count on their own.
func TestEveryReasonHasACounter(t *testing.T) {
	seen := map[int]bool{}
	for _, r := range SkipReasons() {
		i := skipIndex(r)
		if i < 0 || i >= numSkips || seen[i] {
			t.Errorf("skip reason %q: counter %d", r, i)
		}
		seen[i] = true
	}
	seen = map[int]bool{}
	for _, r := range RejectReasons() {
		i := rejectIndex(r)
		if i < 0 || i >= numRejects || seen[i] {
			t.Errorf("reject reason %q: counter %d", r, i)
		}
		seen[i] = true
	}
	s := NewServer(topology.New(topology.Options{}), time.Now)
	if s.Skipped("nope") != 0 || s.RejectedFor("nope") != 0 {
		t.Error("an unknown reason counts")
	}
}
