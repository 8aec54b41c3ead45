package als

import (
	"errors"
	"testing"
	"time"
	"unicode/utf8"

	accesslogdatav3 "github.com/envoyproxy/go-control-plane/envoy/data/accesslog/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/signalbox/signalbox/topology"
)

// checkWire holds the wire decoder to the decoded message: for every
// encoding that protobuf accepts, it must attribute each entry as Attribute
// and AttributeTCP do, for either log name, and read the same identifier.
// It returns what the decoded message attributes to, for more checks.
func checkWire(t *testing.T, data []byte) []Attribution {
	var m wireMessage
	var d decoder
	var msg alsv3.StreamAccessLogsMessage
	if proto.Unmarshal(data, &msg) != nil {
		// Refused by protobuf: the decoder may accept it (it skips what it
		// does not read), but must not panic, and what it reads is text.
		if m.split(data) == nil {
			fs, err := d.entries(&m, nil)
			if err == nil {
				for i := range fs {
					checkText(t, attribute(webOut, &fs[i]))
				}
			}
		}
		return nil
	}
	if err := m.split(data); err != nil {
		t.Fatalf("protobuf accepts what the decoder calls malformed: %v", err)
	}
	if (len(m.identifier) > 0) != (msg.Identifier != nil) {
		t.Fatalf("identifier present: decoder %v, protobuf %v", len(m.identifier) > 0, msg.Identifier != nil)
	}
	if msg.Identifier != nil {
		var id alsv3.StreamAccessLogsMessage_Identifier
		if err := proto.Unmarshal(identifierBytes(m.identifier), &id); err != nil || !proto.Equal(&id, msg.Identifier) {
			t.Fatalf("identifier: %v, %v; protobuf read %v", err, &id, msg.Identifier)
		}
	}
	fs, err := d.entries(&m, nil)
	n := len(msg.GetHttpLogs().GetLogEntry()) + len(msg.GetTcpLogs().GetLogEntry())
	if errors.Is(err, errTooMany) && n > MaxEntriesPerMessage {
		return nil
	}
	if err != nil {
		t.Fatalf("protobuf accepts what the decoder refuses: %v", err)
	}
	if len(fs) != n {
		t.Fatalf("%d entries, protobuf decoded %d", len(fs), n)
	}
	var out []Attribution
	for _, id := range []Identity{webOut, apiIn} {
		for i, e := range msg.GetHttpLogs().GetLogEntry() {
			want := Attribute(id, e)
			if got := attribute(id, &fs[i]); got != want {
				t.Fatalf("HTTP entry %d for %+v: decoder %+v, protobuf %+v", i, id, got, want)
			}
			out = append(out, want)
		}
		for i, e := range msg.GetTcpLogs().GetLogEntry() {
			want := AttributeTCP(id, e)
			if got := attribute(id, &fs[i]); got != want {
				t.Fatalf("TCP entry %d for %+v: decoder %+v, protobuf %+v", i, id, got, want)
			}
			out = append(out, want)
		}
	}
	return out
}

// checkEnds: what is recorded has both ends, named in text.
func checkEnds(t *testing.T, as []Attribution) {
	for _, a := range as {
		if (a.Skip == "" || a.Served) && (a.Obs.Target.Service == "" || a.Obs.Source.Service == "") {
			t.Fatalf("attributed with an empty end: %+v", a)
		}
		checkText(t, a)
	}
}

// checkText: names and versions become graph nodes and Prometheus labels,
// which must be UTF-8.
func checkText(t *testing.T, a Attribution) {
	for _, n := range []topology.Node{a.Obs.Source, a.Obs.Target} {
		if !utf8.ValidString(n.Service) || !utf8.ValidString(n.Version) {
			t.Fatalf("attributed a name that is not UTF-8: %+v", a)
		}
	}
}

func FuzzAttribute(f *testing.F) {
	for _, m := range []*alsv3.StreamAccessLogsMessage{
		httpMessage(identifier("web", "v1", LogOutbound), []entry{{cluster: "outbound|api|v2", status: 200, grpc: "14"}}),
		httpMessage(identifier("api", "v2", LogInbound), []entry{{cluster: "inbound|api|9000", status: 503, fromPeer: true, latency: time.Second}, {connFail: true}}),
		httpMessage(identifier("api", "v2", LogInbound), []entry{{cluster: "inbound|api|9000", status: 200, host: "api-shadow:9000"}, {cluster: "inbound|api|9000", status: 200, host: "api:9000"}}),
		// Cancelled by the caller (flags DC, DR).
		httpMessage(identifier("web", "v1", LogOutbound), []entry{{cluster: "outbound|api|v2", downTerm: true}, {cluster: "outbound|api", downReset: true, latency: -time.Second}}),
	} {
		seed, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed)
	}
	f.Add([]byte{})
	// An upstream cluster that is not UTF-8 (protobuf refuses the message).
	common := protowire.AppendString(protowire.AppendTag(nil, fCommonCluster, protowire.BytesType), "outbound|api|v\xff2")
	f.Add(field(fMsgHTTPLogs, field(fEntriesEntry, field(fHTTPCommon, common))))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkEnds(t, checkWire(t, data))
	})
}

func FuzzAttributeTCP(f *testing.F) {
	for _, m := range []*alsv3.StreamAccessLogsMessage{
		tcpMessage(identifier("api", "v2", LogOutbound), tcpEntry{cluster: "outbound|db|v1", duration: time.Second, in: 10, out: 20}, tcpEntry{cluster: "outbound|db", connFail: true}),
		tcpMessage(identifier("db", "v1", LogInbound), tcpEntry{cluster: "inbound|db|5432", ttlb: time.Millisecond}),
		// A TCP member after an HTTP one replaces it.
		{LogEntries: &alsv3.StreamAccessLogsMessage_TcpLogs{TcpLogs: &alsv3.StreamAccessLogsMessage_TCPAccessLogEntries{
			LogEntry: []*accesslogdatav3.TCPAccessLogEntry{{}}}}},
	} {
		seed, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed)
	}
	httpThenTCP, _ := proto.Marshal(httpMessage(nil, []entry{{cluster: "outbound|api"}}))
	tcp, _ := proto.Marshal(tcpMessage(nil, tcpEntry{cluster: "outbound|db", noHealthy: true}))
	f.Add(append(httpThenTCP, tcp...))
	f.Fuzz(func(t *testing.T, data []byte) {
		as := checkWire(t, data)
		checkEnds(t, as)
		var msg alsv3.StreamAccessLogsMessage
		if proto.Unmarshal(data, &msg) != nil || msg.GetTcpLogs() == nil {
			return
		}
		for _, a := range as {
			if a.Skip != "" && !a.Served {
				continue
			}
			o := a.Obs
			// A connection is TCP, never an edge when inbound, and fails
			// exactly when a connection failure flag says so.
			if o.Protocol != topology.TCP || o.Target.Service == "" ||
				(o.Source.Service == UnknownService && a.Skip != SkipInboundTCP) ||
				topology.IsError(o) != o.ConnFailure || (topology.ClassOf(o) == topology.ClassConnFailure) != o.ConnFailure {
				t.Fatalf("TCP attribution: %+v", a)
			}
		}
	})
}

// field encodes one length-delimited field.
func field(num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWireFollowsProtobufRules: encodings a generated client does not make,
// but protobuf accepts, attribute as protobuf decodes them.
func TestWireFollowsProtobufRules(t *testing.T) {
	common := func(c *accesslogdatav3.AccessLogCommon) []byte { return field(fHTTPCommon, marshal(t, c)) }
	httpEntries := func(entries ...[]byte) []byte {
		var list []byte
		for _, e := range entries {
			list = append(list, field(fEntriesEntry, e)...)
		}
		return field(fMsgHTTPLogs, list)
	}
	resp := func(r *accesslogdatav3.HTTPResponseProperties) []byte { return field(fHTTPResponse, marshal(t, r)) }
	varintField := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	cases := []struct {
		name  string
		data  []byte
		check func(a Attribution) bool
	}{
		{"common properties sent twice merge", httpEntries(append(
			common(&accesslogdatav3.AccessLogCommon{UpstreamCluster: "outbound|a", StartTime: timestamppb.New(start)}),
			common(&accesslogdatav3.AccessLogCommon{UpstreamCluster: "outbound|b|v1"})...)),
			func(a Attribution) bool {
				return a.Obs.Target.Service == "b" && a.Obs.Target.Version == "v1" && a.Obs.Time.Equal(start)
			}},
		{"a cluster with the wire type of a number is an unknown field", httpEntries(append(
			common(&accesslogdatav3.AccessLogCommon{UpstreamCluster: "outbound|a"}), field(fHTTPCommon, varintField(fCommonCluster, 7))...)),
			func(a Attribution) bool { return a.Obs.Target.Service == "a" }},
		{"the last response code wins", httpEntries(append(append(common(&accesslogdatav3.AccessLogCommon{UpstreamCluster: "outbound|a"}),
			resp(&accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(503)})...),
			resp(&accesslogdatav3.HTTPResponseProperties{ResponseCode: wrapperspb.UInt32(201)})...)),
			func(a Attribution) bool { return a.Obs.Status == 201 }},
		{"the last grpc-status of a map wins", httpEntries(append(append(common(&accesslogdatav3.AccessLogCommon{UpstreamCluster: "outbound|a"}),
			resp(&accesslogdatav3.HTTPResponseProperties{ResponseTrailers: map[string]string{"grpc-status": "14"}})...),
			resp(&accesslogdatav3.HTTPResponseProperties{ResponseTrailers: map[string]string{"grpc-status": "0"}})...)),
			func(a Attribution) bool { return a.Obs.GRPCStatus == 0 && a.Obs.Protocol == topology.GRPC }},
		{"TCP entries after HTTP ones replace them", append(httpEntries(common(&accesslogdatav3.AccessLogCommon{UpstreamCluster: "outbound|a"})),
			marshal(t, tcpMessage(nil, tcpEntry{cluster: "outbound|db"}))...),
			func(a Attribution) bool { return a.Obs.Protocol == topology.TCP && a.Obs.Target.Service == "db" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			as := checkWire(t, c.data)
			if len(as) != 2 || !c.check(as[0]) {
				t.Fatalf("attributed %+v", as)
			}
		})
	}

	// An identifier in two parts merges.
	id := identifier("web", "v1", LogOutbound)
	node := field(fMsgIdentifier, marshal(t, &alsv3.StreamAccessLogsMessage_Identifier{Node: id.Node}))
	name := field(fMsgIdentifier, marshal(t, &alsv3.StreamAccessLogsMessage_Identifier{LogName: LogOutbound}))
	var m wireMessage
	if err := m.split(append(node, name...)); err != nil {
		t.Fatal(err)
	}
	var got alsv3.StreamAccessLogsMessage_Identifier
	if err := proto.Unmarshal(identifierBytes(m.identifier), &got); err != nil || !proto.Equal(&got, id) {
		t.Fatalf("merged identifier %v (%v), want %v", &got, err, id)
	}
}
