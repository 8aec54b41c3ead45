package zipkin

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openzipkin/zipkin-go/model"
	"github.com/openzipkin/zipkin-go/proto/zipkin_proto3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	//lint:ignore SA1019 the exporter is deprecated upstream but still what apps send Zipkin spans with; this test holds the collector to it.
	otelzipkin "go.opentelemetry.io/otel/exporters/zipkin"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/signalbox/signalbox/topology"
)

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// jsonRPC is one call web@v1 → api@v2 in Zipkin JSON, as zipkin-go's
// model marshals it (Envoy-style: the server half shares the client's id).
func jsonRPC(t testing.TB, trace uint64, at time.Time) []byte {
	ctx := model.SpanContext{TraceID: model.TraceID{High: 1, Low: trace}, ID: model.ID(trace)}
	return modelJSON(t, model.SpanModel{
		SpanContext: ctx, Kind: model.Client, Timestamp: at, Duration: 10 * time.Millisecond,
		LocalEndpoint: &model.Endpoint{ServiceName: "web"}, Tags: map[string]string{"version": "v1", "http.status_code": "200"},
	}, model.SpanModel{
		SpanContext: ctx, Kind: model.Server, Shared: true, Timestamp: at.Add(time.Millisecond), Duration: 8 * time.Millisecond,
		LocalEndpoint: &model.Endpoint{ServiceName: "api", IPv4: []byte{10, 0, 0, 2}, Port: 9000}, Tags: map[string]string{"version": "v2", "http.status_code": "200"},
	})
}

// protoRPC is the same call as Envoy's HTTP_PROTO collector sends it,
// 64-bit trace ids.
func protoRPC(t testing.TB, trace uint64, at time.Time) []byte {
	return protoBody(t, &zipkin_proto3.Span{
		TraceId: id8(trace), Id: id8(trace), Kind: zipkin_proto3.Span_CLIENT, Timestamp: uint64(at.UnixMicro()), Duration: 10000,
		LocalEndpoint: &zipkin_proto3.Endpoint{ServiceName: "web", Ipv4: []byte{10, 0, 0, 1}},
		Tags:          map[string]string{"version": "v1", "http.status_code": "200", "upstream_cluster": "outbound|api|v2"},
	}, &zipkin_proto3.Span{
		TraceId: id8(trace), Id: id8(trace), Kind: zipkin_proto3.Span_SERVER, Shared: true, Timestamp: uint64(at.UnixMicro()) + 1000, Duration: 8000,
		LocalEndpoint: &zipkin_proto3.Endpoint{ServiceName: "api", Ipv4: []byte{10, 0, 0, 2}, Port: 9000},
		Tags:          map[string]string{"version": "v2", "http.status_code": "200"},
	})
}

func post(t *testing.T, url, contentType, encoding string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestServeHTTP(t *testing.T) {
	store := topology.New(topology.Options{})
	c := NewCollector(store, func() time.Time { return t0 }, Options{})
	srv := httptest.NewServer(c)
	defer srv.Close()

	bodies := []struct {
		name, contentType, encoding string
		body                        []byte
	}{
		{"JSON", "application/json", "", jsonRPC(t, 1, t0)},
		{"JSON with a charset", "application/json; charset=utf-8", "", jsonRPC(t, 2, t0)},
		{"JSON without a content type, as Zipkin takes it", "", "", jsonRPC(t, 3, t0)},
		{"gzipped JSON", "application/json", "gzip", gzipped(t, jsonRPC(t, 4, t0))},
		{"proto", "application/x-protobuf", "", protoRPC(t, 5, t0)},
		{"gzipped proto", "application/x-protobuf", "gzip", gzipped(t, protoRPC(t, 6, t0))},
	}
	for _, b := range bodies {
		resp, body := post(t, srv.URL+"/api/v2/spans", b.contentType, b.encoding, b.body)
		if resp.StatusCode != http.StatusAccepted || len(body) != 0 {
			t.Errorf("%s: %s %q: want 202 Accepted and no body", b.name, resp.Status, body)
		}
	}
	if got := c.Flush(t0.Add(5 * time.Second)); got != len(bodies) {
		t.Errorf("linked %d traces: want %d", got, len(bodies))
	}
	n := uint64(len(bodies))
	if diff := cmp.Diff(map[string]edge{"web@v1->api@v2": {n, 0}}, graphOf(t, store, t0.Add(5*time.Second))); diff != "" {
		t.Errorf("graph (-want +got):\n%s", diff)
	}
	if c.Requests.Load() != n || c.Rejected.Load() != 0 || c.Spans.Load() != 2*n || c.Calls.Load() != n || c.Served.Load() != n {
		t.Errorf("counters: requests %d rejected %d spans %d calls %d served %d", c.Requests.Load(), c.Rejected.Load(), c.Spans.Load(), c.Calls.Load(), c.Served.Load())
	}
}

func TestServeHTTPRejects(t *testing.T) {
	// A gzip bomb: 64 KiB of JSON whitespace in a few hundred bytes.
	bomb := gzipped(t, []byte("["+strings.Repeat(" ", 64<<10)+"]"))
	var twoRPCs bytes.Buffer
	twoRPCs.Write(jsonRPC(t, 1, t0))
	cases := []struct {
		name                  string
		method                string
		contentType, encoding string
		body                  []byte
		chunked               bool
		status                int
		reason                string
		errWant, hintWant     string
	}{
		{"not a POST", http.MethodGet, "", "", nil, false, 405, RejectMethod, "method GET", "POST"},
		{"a content type it does not take", "", "text/plain", "", []byte("[]"), false, 415, RejectMediaType, `"text/plain" is not accepted`, "application/x-protobuf"},
		{"a content type that does not parse", "", "application/json; =", "", []byte("[]"), false, 415, RejectMediaType, "does not parse", "application/json"},
		{"an encoding it does not take", "", "application/json", "br", []byte("[]"), false, 415, RejectMediaType, `Content-Encoding "br"`, "gzip"},
		{"too large as sent", "", "application/json", "", bytes.Repeat([]byte(" "), 5000), false, 413, RejectTooLarge, "over 4096 bytes", "gzip the body"},
		{"too large as sent, chunked", "", "application/json", "", bytes.Repeat([]byte(" "), 5000), true, 413, RejectTooLarge, "over 4096 bytes", "batch size"},
		{"a gzip bomb", "", "application/json", "gzip", bomb, false, 413, RejectTooLarge, "decompressed is over 8192 bytes", "batch size"},
		{"too many spans", "", "", "", twoRPCs.Bytes(), false, 413, RejectTooLarge, "more than 1 spans", "at most 1 spans"},
		{"not JSON", "", "application/json", "", []byte("spans"), false, 400, RejectMalformed, "not JSON", "JSON array"},
		{"not gzip", "", "application/json", "gzip", []byte("[]"), false, 400, RejectMalformed, "not valid gzip", "Content-Encoding"},
		{"cut-off gzip", "", "application/json", "gzip", gzipped(t, []byte("[]"))[:12], false, 400, RejectMalformed, "not valid gzip", "Content-Encoding"},
		{"JSON sent as proto", "", "application/x-protobuf", "", jsonRPC(t, 1, t0), false, 400, RejectMalformed, "not a zipkin.proto3 ListOfSpans", "application/x-protobuf"},
		{"a bad trace id", "", "application/json", "", []byte(`[{"traceId":"xyz","id":"1"}]`), false, 400, RejectMalformed, `span 0: traceId "xyz" is not hex`, "hex characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := topology.New(topology.Options{})
			c := NewCollector(store, nil, Options{MaxBodyBytes: 4096, MaxDecodedBytes: 8192, MaxRequestSpans: 1})
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			var body io.Reader = bytes.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // hides the length: sent chunked
			}
			req := httptest.NewRequestWithContext(t.Context(), method, "/api/v2/spans", body)
			if tc.chunked {
				req.ContentLength = -1
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			w := httptest.NewRecorder()
			c.ServeHTTP(w, req)
			if w.Code != tc.status || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s: want %d with a JSON body", w.Code, w.Header().Get("Content-Type"), tc.status)
			}
			var got errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if !strings.Contains(got.Error, tc.errWant) || !strings.Contains(got.Hint, tc.hintWant) {
				t.Errorf("body %+v: want error ~ %q, hint ~ %q", got, tc.errWant, tc.hintWant)
			}
			if tc.status == 405 && w.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow %q: want POST", w.Header().Get("Allow"))
			}
			if c.Rejected.Load() != 1 || c.RejectedFor(tc.reason) != 1 || c.Spans.Load() != 0 {
				t.Errorf("rejected %d, for %s %d, spans %d: want 1, 1, 0", c.Rejected.Load(), tc.reason, c.RejectedFor(tc.reason), c.Spans.Load())
			}
			if traces, _ := c.Pending(); traces != 0 {
				t.Errorf("%d traces pending from a refused request", traces)
			}
		})
	}
}

// TestOpenTelemetryExporter posts spans with OpenTelemetry's Zipkin
// exporter, as an instrumented app does: web calls api, which fails.
func TestOpenTelemetryExporter(t *testing.T) {
	store := topology.New(topology.Options{})
	c := NewCollector(store, nil, Options{})
	srv := httptest.NewServer(c)
	defer srv.Close()

	export := func(service, version string, f func(trace.Tracer)) {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(resource.NewSchemaless(
			attribute.String("service.name", service), attribute.String("service.version", version))))
		f(tp.Tracer("test"))
		if err := tp.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		exp, err := otelzipkin.New(srv.URL + "/api/v2/spans")
		if err != nil {
			t.Fatal(err)
		}
		if err := exp.ExportSpans(t.Context(), rec.Ended()); err != nil {
			t.Fatalf("%s exports: %v", service, err)
		}
	}
	var call trace.SpanContext
	export("web", "v1", func(tr trace.Tracer) {
		ctx, in := tr.Start(t.Context(), "GET /", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.Int("http.response.status_code", 200)))
		_, out := tr.Start(ctx, "GET /users", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.Int("http.response.status_code", 500)))
		call = out.SpanContext()
		out.End()
		in.End()
	})
	export("api", "v2", func(tr trace.Tracer) {
		_, s := tr.Start(trace.ContextWithRemoteSpanContext(context.Background(), call), "GET /users",
			trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.Int("http.response.status_code", 500)))
		s.SetStatus(codes.Error, "database down")
		s.End()
	})

	now := time.Now()
	if n := c.Flush(now.Add(5 * time.Second)); n != 1 {
		t.Fatalf("linked %d traces: want 1", n)
	}
	if diff := cmp.Diff(map[string]edge{"web@v1->api@v2": {1, 1}}, graphOf(t, store, now)); diff != "" {
		t.Errorf("graph (-want +got):\n%s", diff)
	}
	vc := versionCounts(t, store, "api", now)
	if vc.Callers["v2"].Requests != 1 || vc.Callers["v2"].Errors != 1 || vc.Self["v2"].Requests != 1 || vc.Self["v2"].Errors != 1 {
		t.Errorf("version counts %+v: want one failed request to api@v2 from both sides", vc)
	}
	web := versionCounts(t, store, "web", now)
	if web.Self["v1"].Requests != 1 || len(web.Callers) != 0 {
		t.Errorf("web's counts %+v: served once, no known caller", web)
	}
}
