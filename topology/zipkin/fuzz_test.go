package zipkin

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/openzipkin/zipkin-go/proto/zipkin_proto3"

	"github.com/signalbox/signalbox/topology"
)

const fuzzMaxSpans = 50

// checkDecoded holds a decoder to its contract: a DecodeError or spans
// that are valid, and linking them never fails.
func checkDecoded(t *testing.T, spans []Span, err error) {
	t.Helper()
	if err != nil {
		var de *DecodeError
		if !errors.As(err, &de) || de.Hint == "" || (de.Reason != RejectMalformed && de.Reason != RejectTooLarge) {
			t.Fatalf("error %v: want a DecodeError with a reason and a hint", err)
		}
		return
	}
	if len(spans) > fuzzMaxSpans {
		t.Fatalf("%d spans past the cap of %d", len(spans), fuzzMaxSpans)
	}
	for i, s := range spans {
		if s.TraceID == (TraceID{}) || s.ID == 0 || s.ParentID == s.ID || s.Duration < 0 || s.Kind > KindConsumer ||
			s.GRPCStatus < -1 || s.GRPCStatus > 16 || (s.HTTPStatus != 0 && (s.HTTPStatus < 100 || s.HTTPStatus > 599)) ||
			s.Local.Service != strings.ToLower(s.Local.Service) || s.RemoteService != strings.ToLower(s.RemoteService) ||
			(s.Local.IPv4.IsValid() && !s.Local.IPv4.Is4()) || (!s.Timestamp.IsZero() && s.Timestamp.UnixMicro() <= 0) ||
			s.ALS > ALSOff {
			t.Fatalf("span %d decoded invalid: %+v", i, s)
		}
		// Names and versions become graph nodes and Prometheus labels.
		if !utf8.ValidString(s.Local.Service) || !utf8.ValidString(s.RemoteService) || !utf8.ValidString(s.Version) || !utf8.ValidString(s.RemoteVersion) {
			t.Fatalf("span %d: a name or version that is not UTF-8: %+v", i, s)
		}
	}
	l := linkSpans(spans)
	calls, served := l.calls, l.served
	// What is left to ALS is exactly what the same spans without the tag
	// give in addition.
	untagged := slices.Clone(spans)
	for i := range untagged {
		untagged[i].ALS = ALSUnknown
	}
	u := linkSpans(untagged)
	if len(u.calls) != len(calls)+l.callsByALS || len(u.served) != len(served)+l.servedByALS || u.callsByALS != 0 || u.servedByALS != 0 {
		t.Fatalf("with tags %d calls and %d served, %d and %d left to ALS; without, %d and %d",
			len(calls), len(served), l.callsByALS, l.servedByALS, len(u.calls), len(u.served))
	}
	for _, o := range calls {
		if o.Source.Service == "" || o.Target.Service == "" || o.Status < 100 || o.Latency < 0 ||
			(o.Protocol != topology.HTTP && o.Protocol != topology.GRPC) || topology.ClassOf(o) == topology.ClassConnFailure {
			t.Fatalf("call %+v: want both ends named, a status, a known protocol", o)
		}
	}
	for _, o := range served {
		if o.Target.Service == "" || o.Status < 100 {
			t.Fatalf("served %+v: want a target and a status", o)
		}
	}
	if len(served) > len(spans) || len(calls) > 2*len(spans) {
		t.Fatalf("%d spans gave %d calls and %d served", len(spans), len(calls), len(served))
	}
}

func FuzzDecodeJSON(f *testing.F) {
	parent := model.ID(1)
	f.Add(modelJSON(f, model.SpanModel{
		SpanContext: model.SpanContext{TraceID: model.TraceID{High: 1, Low: 2}, ID: 2, ParentID: &parent},
		Kind:        model.Server, Shared: true, Timestamp: t0, Duration: 3000,
		LocalEndpoint: &model.Endpoint{ServiceName: "api"}, RemoteEndpoint: &model.Endpoint{ServiceName: "web"},
		Tags: map[string]string{"service.version": "v2", "http.status_code": "200", "error": ""},
	}, model.SpanModel{
		SpanContext: model.SpanContext{TraceID: model.TraceID{High: 1, Low: 2}, ID: 2, ParentID: &parent},
		Kind:        model.Client, Timestamp: t0, Duration: 4000,
		LocalEndpoint: &model.Endpoint{ServiceName: "web"},
		Tags:          map[string]string{"rpc.system": "grpc", "rpc.grpc.status_code": "14"},
	}))
	f.Add([]byte(`[{"traceId":"00000000000000ff","id":"0000000000000001","kind":"CLIENT","timestamp":"1795435200000000","duration":"2500",` +
		`"localEndpoint":{"serviceName":"web","ipv4":"10.0.0.1","port":8080},"tags":{"upstream_cluster":"outbound|api|v2","http.status_code":200}},` +
		`{"traceId":"00000000000000ff","id":"0000000000000001","kind":"SERVER","shared":true,"localEndpoint":{"serviceName":"api"},"tags":{"version":"v2"}}]`))
	f.Add([]byte(`[{"traceId":"00000000000000fe","id":"0000000000000001","kind":"CLIENT","localEndpoint":{"serviceName":"web"}},` +
		`{"traceId":"00000000000000fe","id":"0000000000000002","parentId":"0000000000000001","kind":"CLIENT","localEndpoint":{"serviceName":"web","port":15001},"tags":{"signalbox.als":"on","upstream_cluster":"outbound|api"}},` +
		`{"traceId":"00000000000000fe","id":"0000000000000002","kind":"SERVER","shared":true,"localEndpoint":{"serviceName":"api","port":15006},"tags":{"signalbox.als":"off"}},` +
		`{"traceId":"00000000000000fe","id":"0000000000000003","parentId":"0000000000000002","kind":"SERVER","localEndpoint":{"serviceName":"api","port":9000}}]`))
	f.Add([]byte(`[{"traceId":"a","id":"b","parentId":"a","kind":"PRODUCER","remoteEndpoint":{"serviceName":"kafka"}},{"traceId":"a","id":"c","parentId":"b","kind":"CONSUMER"}]`))
	f.Add([]byte("[{\"traceId\":\"a\",\"id\":\"b\",\"kind\":\"CLIENT\",\"localEndpoint\":{\"serviceName\":\"w\xffb\"}," +
		"\"tags\":{\"service.version\":\"v\xfe1\",\"upstream_cluster\":\"outbound|api|v\xff2\"}}]"))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"traceId":"1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		spans, err := DecodeJSON(body, fuzzMaxSpans)
		checkDecoded(t, spans, err)
	})
}

func FuzzDecodeProto(f *testing.F) {
	f.Add(protoBody(f, &zipkin_proto3.Span{
		TraceId: id8(0xff), Id: id8(1), Kind: zipkin_proto3.Span_CLIENT, Timestamp: uint64(t0.UnixMicro()), Duration: 2500,
		LocalEndpoint: &zipkin_proto3.Endpoint{ServiceName: "web", Ipv4: []byte{10, 0, 0, 1}, Port: 8080},
		Tags:          map[string]string{"upstream_cluster": "outbound|api|v2", "version": "v1"},
	}, &zipkin_proto3.Span{
		TraceId: id8(0xff), Id: id8(1), Kind: zipkin_proto3.Span_SERVER, Shared: true,
		LocalEndpoint: &zipkin_proto3.Endpoint{ServiceName: "api"},
		Tags:          map[string]string{"grpc.status_code": "2", "error": "true", "signalbox.als": "on"},
	}, &zipkin_proto3.Span{
		TraceId: append(id8(1), id8(0xff)...), Id: id8(2), ParentId: id8(1), Kind: zipkin_proto3.Span_PRODUCER,
		LocalEndpoint: &zipkin_proto3.Endpoint{ServiceName: "api"}, RemoteEndpoint: &zipkin_proto3.Endpoint{ServiceName: "kafka"},
	}))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, body []byte) {
		spans, err := DecodeProto(body, fuzzMaxSpans)
		checkDecoded(t, spans, err)
	})
}
