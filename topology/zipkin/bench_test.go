package zipkin

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/openzipkin/zipkin-go/proto/zipkin_proto3"

	"github.com/signalbox/signalbox/topology"
)

// benchBatch is one request of 25 traces × 4 spans: edge → web (server
// span knowing its caller), web → api (client and shared server halves),
// api → db (a leaf client). Each trace makes 3 calls and 2 served.
const (
	benchTraces = 25
	benchSpans  = 4 * benchTraces
)

func benchModels(batch int) []model.SpanModel {
	var out []model.SpanModel
	tags := func(version string, kv ...string) map[string]string {
		m := map[string]string{"version": version, "http.status_code": "200", "component": "proxy", "http.method": "GET", "http.url": "http://api/users/42"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for i := range benchTraces {
		tr := model.TraceID{High: uint64(batch), Low: uint64(batch)<<16 | uint64(i)}
		root, call, db := model.ID(tr.Low<<4|1), model.ID(tr.Low<<4|2), model.ID(tr.Low<<4|3)
		ep := func(svc string) *model.Endpoint {
			return &model.Endpoint{ServiceName: svc, IPv4: []byte{10, 0, byte(i), 1}, Port: 9000}
		}
		out = append(out,
			model.SpanModel{SpanContext: model.SpanContext{TraceID: tr, ID: root}, Name: "get /", Kind: model.Server,
				Timestamp: t0, Duration: 30 * time.Millisecond, LocalEndpoint: ep("web"), RemoteEndpoint: &model.Endpoint{ServiceName: "edge"}, Tags: tags("v1")},
			model.SpanModel{SpanContext: model.SpanContext{TraceID: tr, ID: call, ParentID: &root}, Name: "egress", Kind: model.Client,
				Timestamp: t0.Add(time.Millisecond), Duration: 20 * time.Millisecond, LocalEndpoint: ep("web"), Tags: tags("v1", "upstream_cluster", "outbound|api|v2")},
			model.SpanModel{SpanContext: model.SpanContext{TraceID: tr, ID: call, ParentID: &root}, Name: "ingress", Kind: model.Server, Shared: true,
				Timestamp: t0.Add(2 * time.Millisecond), Duration: 18 * time.Millisecond, LocalEndpoint: ep("api"), Tags: tags("v2")},
			model.SpanModel{SpanContext: model.SpanContext{TraceID: tr, ID: db, ParentID: &call}, Name: "query", Kind: model.Client,
				Timestamp: t0.Add(3 * time.Millisecond), Duration: 5 * time.Millisecond, LocalEndpoint: ep("api"), RemoteEndpoint: &model.Endpoint{ServiceName: "db"}, Tags: tags("v2")},
		)
	}
	return out
}

func benchProto(models []model.SpanModel) *zipkin_proto3.ListOfSpans {
	l := &zipkin_proto3.ListOfSpans{}
	for _, m := range models {
		s := &zipkin_proto3.Span{
			TraceId: append(id8(m.TraceID.High), id8(m.TraceID.Low)...), Id: id8(uint64(m.ID)), Name: m.Name,
			Kind: zipkin_proto3.Span_Kind(zipkin_proto3.Span_Kind_value[string(m.Kind)]), Shared: m.Shared,
			Timestamp: uint64(m.Timestamp.UnixMicro()), Duration: uint64(m.Duration / time.Microsecond), Tags: m.Tags,
			LocalEndpoint: &zipkin_proto3.Endpoint{ServiceName: m.LocalEndpoint.ServiceName, Ipv4: m.LocalEndpoint.IPv4.To4(), Port: int32(m.LocalEndpoint.Port)},
		}
		if m.ParentID != nil {
			s.ParentId = id8(uint64(*m.ParentID))
		}
		if m.RemoteEndpoint != nil {
			s.RemoteEndpoint = &zipkin_proto3.Endpoint{ServiceName: m.RemoteEndpoint.ServiceName}
		}
		l.Spans = append(l.Spans, s)
	}
	return l
}

// BenchmarkIngest is one request through the handler (read, decode,
// buffer) and the linking and recording of its traces once they settle,
// into a real store. Batches differ in trace ids and the clock moves, so
// the memory of linked traces churns as in steady state.
func BenchmarkIngest(b *testing.B) {
	const batches = 256 // > Remember / 1s: a batch's traces are forgotten before it comes again
	for _, enc := range []struct{ name, contentType, encoding string }{
		{"json", "application/json", ""},
		{"json-gzip", "application/json", "gzip"},
		{"proto", "application/x-protobuf", ""},
	} {
		b.Run(enc.name, func(b *testing.B) {
			bodies := make([][]byte, batches)
			for i := range bodies {
				models := benchModels(i + 1)
				if enc.contentType == "application/x-protobuf" {
					bodies[i] = protoBody(b, benchProto(models).Spans...)
				} else {
					bodies[i] = modelJSON(b, models...)
				}
				if enc.encoding == "gzip" {
					bodies[i] = gzipped(b, bodies[i])
				}
			}
			store := topology.New(topology.Options{})
			now := t0
			c := NewCollector(store, func() time.Time { return now }, Options{})
			w := &statusWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				req := httptest.NewRequest(http.MethodPost, "/api/v2/spans", bytes.NewReader(bodies[i%batches]))
				req.Header.Set("Content-Type", enc.contentType)
				if enc.encoding != "" {
					req.Header.Set("Content-Encoding", enc.encoding)
				}
				w.code = 0
				c.ServeHTTP(w, req)
				if w.code != http.StatusAccepted {
					b.Fatalf("status %d", w.code)
				}
				now = now.Add(time.Second)
				c.Flush(now.Add(5 * time.Second))
			}
			b.ReportMetric(float64(benchSpans)*float64(b.N)/b.Elapsed().Seconds(), "spans/s")
			if want := uint64(3 * benchTraces * b.N); c.Calls.Load() != want {
				b.Fatalf("recorded %d calls: want %d", c.Calls.Load(), want)
			}
		})
	}
}

// statusWriter keeps the status only: the benchmark measures the handler,
// not a recorder.
type statusWriter struct {
	h    http.Header
	code int
}

func (w *statusWriter) Header() http.Header         { return w.h }
func (w *statusWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *statusWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkLinkTrace is the linker alone on one four-span trace.
func BenchmarkLinkTrace(b *testing.B) {
	spans, err := DecodeJSON(modelJSON(b, benchModels(1)[:4]...), 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		calls, _ := LinkTrace(spans)
		if len(calls) != 3 {
			b.Fatal(fmt.Sprint(calls))
		}
	}
}
