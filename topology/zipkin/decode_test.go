package zipkin

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/openzipkin/zipkin-go/model"
	"github.com/openzipkin/zipkin-go/proto/zipkin_proto3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

var equateAddr = cmpopts.EquateComparable(netip.Addr{})

// modelJSON marshals spans as zipkin-go's reporter and OpenTelemetry's
// exporter do.
func modelJSON(t testing.TB, spans ...model.SpanModel) []byte {
	t.Helper()
	b, err := json.Marshal(spans)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeJSON(t *testing.T) {
	parent := model.ID(0x0102030405060708)
	fromModel := modelJSON(t, model.SpanModel{
		SpanContext: model.SpanContext{TraceID: model.TraceID{High: 0xa, Low: 0xb}, ID: 0xc, ParentID: &parent},
		Name:        "GET /users", Kind: model.Server, Shared: true,
		Timestamp: t0, Duration: 1500 * time.Microsecond,
		LocalEndpoint:  &model.Endpoint{ServiceName: "API", IPv4: net.ParseIP("10.0.0.2"), Port: 9000},
		RemoteEndpoint: &model.Endpoint{ServiceName: "web", IPv6: net.ParseIP("2001:db8::1")},
		Annotations:    []model.Annotation{{Timestamp: t0, Value: "error"}}, // an annotation, not the error tag
		Tags:           map[string]string{"service.version": "v2", "http.status_code": "503"},
	})
	cases := []struct {
		name string
		body string
		want []Span
	}{
		{"zipkin-go's model, as OpenTelemetry's exporter sends it", string(fromModel), []Span{{
			TraceID: TraceID{High: 0xa, Low: 0xb}, ID: 0xc, ParentID: 0x0102030405060708, Kind: KindServer, Shared: true,
			Local:         Endpoint{Service: "api", IPv4: netip.MustParseAddr("10.0.0.2"), Port: 9000},
			RemoteService: "web", Timestamp: t0, Duration: 1500 * time.Microsecond,
			Version: "v2", HTTPStatus: 503, GRPCStatus: -1,
		}}},
		{"Envoy's: quoted numbers, 64-bit trace id, tags that are numbers", `[{
			"traceId": "00000000000000ff", "id": "0000000000000001", "kind": "CLIENT", "name": "egress",
			"timestamp": "1795435200000000", "duration": "2500",
			"localEndpoint": {"serviceName": "web", "ipv4": "10.0.0.1", "port": 8080},
			"tags": {"upstream_cluster": "outbound|api|v2", "http.status_code": 200, "error": true, "grpc.status_code": "14", "version": "v1"}
		}]`, []Span{{
			TraceID: TraceID{Low: 0xff}, ID: 1, Kind: KindClient,
			Local:         Endpoint{Service: "web", IPv4: netip.MustParseAddr("10.0.0.1"), Port: 8080},
			RemoteService: "api", RemoteVersion: "v2",
			Timestamp: time.UnixMicro(1795435200000000).UTC(), Duration: 2500 * time.Microsecond,
			Version: "v1", Error: true, HTTPStatus: 200, GRPCStatus: 14, GRPC: true,
		}}},
		{"short ids are padded, an all-zero parent is none, no kind is a local span", `[{
			"traceId": "a", "id": "b", "parentId": "0000000000000000", "timestamp": 0, "duration": -3,
			"tags": {"rpc.system": "grpc", "http.response.status_code": "999", "service.version": null}
		}]`, []Span{{TraceID: TraceID{Low: 0xa}, ID: 0xb, GRPCStatus: -1, GRPC: true}}},
		{"escaped tags; a null tag is no tag", `[{
			"traceId": "a", "id": "b", "kind": "SERVER",
			"tags": {"error": null, "ver\u0073ion": "v\"1", "http.status_code" : 204 , "other": "{\"error\": 1}"}
		}]`, []Span{{TraceID: TraceID{Low: 0xa}, ID: 0xb, Kind: KindServer, Version: `v"1`, HTTPStatus: 204, GRPCStatus: -1}}},
		// Names and versions become graph nodes and Prometheus labels: bytes
		// that are not UTF-8 are replaced, each by U+FFFD, as encoding/json
		// does, in tags with and without escapes alike.
		{"bytes that are not UTF-8",
			"[{\"traceId\": \"a\", \"id\": \"b\", \"kind\": \"CLIENT\", \"localEndpoint\": {\"serviceName\": \"W\xffeb\"}," +
				"\"tags\": {\"service.version\": \"v\xff\xfe1\", \"upstream_cluster\": \"outbound|api|v\xff2\"}}," +
				"{\"traceId\": \"a\", \"id\": \"c\", \"kind\": \"CLIENT\", \"localEndpoint\": {\"serviceName\": \"web\"}," +
				"\"tags\": {\"ver\\u0073ion\": \"v\xff\xfe1\"}}]",
			[]Span{{
				TraceID: TraceID{Low: 0xa}, ID: 0xb, Kind: KindClient, Local: Endpoint{Service: "w\uFFFDeb"},
				RemoteService: "api", RemoteVersion: "v\uFFFD2", Version: "v\uFFFD\uFFFD1", GRPCStatus: -1,
			}, {
				TraceID: TraceID{Low: 0xa}, ID: 0xc, Kind: KindClient, Local: Endpoint{Service: "web"}, Version: "v\uFFFD\uFFFD1", GRPCStatus: -1,
			}}},
		{"an empty array", `[]`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeJSON([]byte(c.body), 10)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got, equateAddr); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeJSONErrors(t *testing.T) {
	span := func(fields string) string {
		return `[{"traceId":"0000000000000001","id":"0000000000000002"` + fields + `}]`
	}
	cases := []struct {
		name, body, want, reason string
	}{
		{"empty", ``, "the body is empty", RejectMalformed},
		{"not JSON", `spans`, "the body is not JSON", RejectMalformed},
		{"an object", `{"traceId":"1"}`, "the body is a JSON object, not a JSON array", RejectMalformed},
		{"null", `null`, "the body is JSON null, not a JSON array", RejectMalformed},
		{"a number in the array", `[1]`, "span 0: a span is a JSON object, not a number", RejectMalformed},
		{"cut short", `[{"traceId":"1","id":"2"}`, "the JSON ends too early", RejectMalformed},
		{"trailing data", `[] []`, "more after the array", RejectMalformed},
		{"no trace id", `[{"id":"2"}]`, `traceId ""`, RejectMalformed},
		{"trace id too long", `[{"traceId":"000000000000000000000000000000001","id":"2"}]`, "want 16 or 32 hex", RejectMalformed},
		{"trace id not hex", `[{"traceId":"xyz","id":"2"}]`, `traceId "xyz" is not hex`, RejectMalformed},
		{"trace id zeros", `[{"traceId":"0000000000000000","id":"2"}]`, "all zeros", RejectMalformed},
		{"trace id a number", `[{"traceId":12,"id":"2"}]`, "field traceId: a JSON number is not allowed", RejectMalformed},
		{"no id", `[{"traceId":"1"}]`, "id is missing", RejectMalformed},
		{"id too long", `[{"traceId":"1","id":"00000000000000001"}]`, "id \"00000000000000001\": want 16", RejectMalformed},
		{"parent not hex", span(`,"parentId":"-1"`), `parentId "-1" is not hex`, RejectMalformed},
		{"unknown kind", span(`,"kind":"client"`), `kind "client" is not a span kind`, RejectMalformed},
		{"fractional timestamp", span(`,"timestamp":1.5`), "not a whole number", RejectMalformed},
		{"shared a string", span(`,"shared":"yes"`), "field shared", RejectMalformed},
		{"tag value an object", span(`,"tags":{"a":{}}`), "a tag value is a string", RejectMalformed},
		{"second span bad", `[{"traceId":"1","id":"2"},{"traceId":"1"}]`, "span 1: id is missing", RejectMalformed},
		{"too many spans", `[{"traceId":"1","id":"2"},{"traceId":"1","id":"3"},{"traceId":"1","id":"4"}]`, "more than 2 spans", RejectTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeJSON([]byte(c.body), 2)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v: want a DecodeError", err)
			}
			if !strings.Contains(err.Error(), c.want) || de.Reason != c.reason || de.Hint == "" {
				t.Errorf("error %q (%s, hint %q): want %q (%s) and a hint", err, de.Reason, de.Hint, c.want, c.reason)
			}
		})
	}
}

func protoBody(t testing.TB, spans ...*zipkin_proto3.Span) []byte {
	t.Helper()
	b, err := proto.Marshal(&zipkin_proto3.ListOfSpans{Spans: spans})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func id8(n uint64) []byte {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i], n = byte(n), n>>8
	}
	return b
}

func TestDecodeProto(t *testing.T) {
	envoy := &zipkin_proto3.Span{
		TraceId: id8(0xff), Id: id8(1), Kind: zipkin_proto3.Span_CLIENT,
		Timestamp: uint64(t0.UnixMicro()), Duration: 2500,
		LocalEndpoint: &zipkin_proto3.Endpoint{ServiceName: "Web", Ipv4: []byte{10, 0, 0, 1}, Port: 8080},
		Tags:          map[string]string{"upstream_cluster": "outbound|api", "version": "v1", "error": "true"},
	}
	otel := &zipkin_proto3.Span{
		TraceId: append(id8(0xa), id8(0xb)...), Id: id8(0xc), ParentId: id8(0xd), Kind: zipkin_proto3.Span_SERVER, Shared: true,
		LocalEndpoint:  &zipkin_proto3.Endpoint{ServiceName: "api", Ipv6: net.ParseIP("2001:db8::2")},
		RemoteEndpoint: &zipkin_proto3.Endpoint{ServiceName: "web"},
		Tags:           map[string]string{"rpc.grpc.status_code": "5", "service.version": "v2"},
	}
	local := &zipkin_proto3.Span{TraceId: id8(1), Id: id8(2), Timestamp: 1 << 63, Duration: 1 << 63}
	got, err := DecodeProto(protoBody(t, envoy, otel, local), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []Span{{
		TraceID: TraceID{Low: 0xff}, ID: 1, Kind: KindClient, Timestamp: t0, Duration: 2500 * time.Microsecond,
		Local:         Endpoint{Service: "web", IPv4: netip.MustParseAddr("10.0.0.1"), Port: 8080},
		RemoteService: "api", Version: "v1", Error: true, GRPCStatus: -1,
	}, {
		TraceID: TraceID{High: 0xa, Low: 0xb}, ID: 0xc, ParentID: 0xd, Kind: KindServer, Shared: true,
		Local:         Endpoint{Service: "api", IPv6: netip.MustParseAddr("2001:db8::2")},
		RemoteService: "web", Version: "v2", GRPCStatus: 5, GRPC: true,
	}, {
		// Past int64 microseconds: saturated, not wrapped.
		TraceID: TraceID{Low: 1}, ID: 2, Timestamp: time.UnixMicro(1<<63 - 1).UTC(), Duration: time.Duration(1<<63 - 1), GRPCStatus: -1,
	}}
	if diff := cmp.Diff(want, got, equateAddr); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// Where zipkin-go's own decoder takes the body (16-byte trace ids), the
	// two agree on ids, kind, endpoints and times.
	ref, err := zipkin_proto3.ParseSpans(protoBody(t, otel), false)
	if err != nil {
		t.Fatal(err)
	}
	r := ref[0]
	if r.TraceID.High != got[1].TraceID.High || r.TraceID.Low != got[1].TraceID.Low || uint64(r.ID) != got[1].ID ||
		uint64(*r.ParentID) != got[1].ParentID || string(r.Kind) != got[1].Kind.String() || r.Shared != got[1].Shared ||
		r.LocalEndpoint.ServiceName != got[1].Local.Service || r.RemoteEndpoint.ServiceName != got[1].RemoteService {
		t.Errorf("zipkin-go reads %+v, DecodeProto %+v", r, got[1])
	}
}

func TestDecodeProtoErrors(t *testing.T) {
	ok := func(f func(*zipkin_proto3.Span)) []byte {
		s := &zipkin_proto3.Span{TraceId: id8(1), Id: id8(2)}
		f(s)
		return protoBody(t, s)
	}
	// A span with a tag version: "v\xff", which protobuf will not encode.
	span, err := proto.Marshal(&zipkin_proto3.Span{TraceId: id8(1), Id: id8(2)})
	if err != nil {
		t.Fatal(err)
	}
	tag := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "version")
	tag = protowire.AppendString(protowire.AppendTag(tag, 2, protowire.BytesType), "v\xff")
	span = protowire.AppendBytes(protowire.AppendTag(span, 11, protowire.BytesType), tag)
	notUTF8 := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), span)
	cases := []struct {
		name   string
		body   []byte
		want   string
		reason string
	}{
		{"empty", nil, "the body is empty", RejectMalformed},
		// Protobuf refuses a proto3 string that is not UTF-8: such a name or
		// version never reaches the graph.
		{"a tag that is not UTF-8", notUTF8, "invalid UTF-8", RejectMalformed},
		{"not proto", []byte("[{\"traceId\":\"1\"}]"), "not a zipkin.proto3 ListOfSpans", RejectMalformed},
		{"trace id of 5 bytes", ok(func(s *zipkin_proto3.Span) { s.TraceId = []byte{1, 2, 3, 4, 5} }), "span 0: trace_id is 5 bytes", RejectMalformed},
		{"trace id zeros", ok(func(s *zipkin_proto3.Span) { s.TraceId = make([]byte, 16) }), "trace_id is all zeros", RejectMalformed},
		{"no id", ok(func(s *zipkin_proto3.Span) { s.Id = nil }), "id is 0 bytes", RejectMalformed},
		{"id zeros", ok(func(s *zipkin_proto3.Span) { s.Id = make([]byte, 8) }), "id is all zeros", RejectMalformed},
		{"parent of 3 bytes", ok(func(s *zipkin_proto3.Span) { s.ParentId = []byte{1, 2, 3} }), "parent_id is 3 bytes", RejectMalformed},
		{"unknown kind", ok(func(s *zipkin_proto3.Span) { s.Kind = 9 }), "kind 9 is not a span kind", RejectMalformed},
		{"too many spans", protoBody(t, &zipkin_proto3.Span{TraceId: id8(1), Id: id8(2)}, &zipkin_proto3.Span{TraceId: id8(1), Id: id8(3)}), "more than 1 spans", RejectTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeProto(c.body, 1)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v: want a DecodeError", err)
			}
			if !strings.Contains(err.Error(), c.want) || de.Reason != c.reason || de.Hint == "" {
				t.Errorf("error %q (%s, hint %q): want %q (%s) and a hint", err, de.Reason, de.Hint, c.want, c.reason)
			}
		})
	}
}

// TestDecodeALSTag: the signalbox.als tag signalbox's sidecars add is read
// from JSON and proto alike; a value other than on and off is no tag.
func TestDecodeALSTag(t *testing.T) {
	cases := []struct {
		tags string // JSON object
		want ALSState
	}{
		{`{"signalbox.als": "on", "upstream_cluster": "outbound|api|v2"}`, ALSOn},
		{`{"signalbox.als": "off"}`, ALSOff},
		{`{"signalbox.als": "ON"}`, ALSUnknown},
		{`{"signalbox.als": true}`, ALSUnknown},
		{`{"signalbox.als": null}`, ALSUnknown},
		{`{"signalbox.als": ""}`, ALSUnknown},
		{`{"signalbox.alsx": "on"}`, ALSUnknown},
		{`{}`, ALSUnknown},
	}
	for _, c := range cases {
		t.Run(c.tags, func(t *testing.T) {
			body := `[{"traceId":"00000000000000ff","id":"0000000000000001","kind":"CLIENT","localEndpoint":{"serviceName":"web"},"tags":` + c.tags + `}]`
			got, err := DecodeJSON([]byte(body), 1)
			if err != nil {
				t.Fatal(err)
			}
			if got[0].ALS != c.want {
				t.Errorf("JSON: ALS %v, want %v", got[0].ALS, c.want)
			}
			var tags map[string]any
			if err := json.Unmarshal([]byte(c.tags), &tags); err != nil {
				t.Fatal(err)
			}
			ptags := map[string]string{}
			for k, v := range tags {
				switch v := v.(type) {
				case string:
					ptags[k] = v
				case bool:
					ptags[k] = strconv.FormatBool(v)
				}
			}
			fromProto, err := DecodeProto(protoBody(t, &zipkin_proto3.Span{
				TraceId: id8(0xff), Id: id8(1), Kind: zipkin_proto3.Span_CLIENT,
				LocalEndpoint: &zipkin_proto3.Endpoint{ServiceName: "web"}, Tags: ptags,
			}), 1)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, fromProto, equateAddr); diff != "" {
				t.Errorf("JSON and proto differ (-JSON +proto):\n%s", diff)
			}
		})
	}
}

// TestTagsAreText: whatever reads the tags (protobuf and encoding/json hand
// over UTF-8 already), the names and versions a span gives are UTF-8.
func TestTagsAreText(t *testing.T) {
	s := Span{Kind: KindClient, Local: Endpoint{Service: "W\xffeb"}}
	s.normalize()
	applyTags(&s, mapTags{TagVersion: "v\xff1", TagUpstreamCluster: "outbound|api|v\xfe\xfd2"})
	if s.Local.Service != "w\uFFFDeb" || s.Version != "v\uFFFD1" || s.RemoteService != "api" || s.RemoteVersion != "v\uFFFD2" {
		t.Fatalf("got %q %q → %q %q", s.Local.Service, s.Version, s.RemoteService, s.RemoteVersion)
	}
}
