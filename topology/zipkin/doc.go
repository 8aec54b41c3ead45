// Package zipkin ingests Zipkin v2 spans (POST /api/v2/spans, JSON or
// proto3, as Envoy's Zipkin tracer and OpenTelemetry's Zipkin exporter send
// them) and turns them into topology observations.
//
// # Linking
//
// Spans of one trace come from several services, in separate requests and
// in any order, so the Collector buffers them per trace and links a trace
// once no span of it has arrived for Options.Settle. Linking follows
// Zipkin's DependencyLinker (see LinkTrace): a client and server pair is
// one call, recorded once on the edge caller → callee (Recorder.Record),
// and every server and consumer span is also recorded as served by its own
// service (Recorder.RecordServed). A trace is its trace id's low 64 bits,
// so that 64- and 128-bit reporters of one trace meet (as Zipkin with
// STRICT_TRACE_ID=false). Service names are lower case, as Zipkin stores
// them.
//
// An observation's time is its span's timestamp, or the span's arrival when
// it has none or one more than 5 minutes off (a host with a wrong clock).
//
// # Bounds
//
// Pending traces, pending spans, spans per trace and the memory of linked
// traces all have hard caps (Options). When the buffer is full the trace
// idle longest is linked early rather than dropped, and counted
// (EarlyLinkedFor). A request body is capped as sent and after gunzip, and
// in spans.
//
// # Late spans
//
// A span may arrive after its trace was linked (one sender's batch came
// late). The collector remembers the spans of recently linked traces, with
// what was recorded from each, in an LRU bounded by Options.RecentSpans and
// Options.Remember. A late span joins them and the trace is linked again
// once it settles; only what was not recorded before is recorded. So a
// late server span still finds its caller's service and version, a late
// client span lets its already-linked server name its caller, and spans
// sent twice count once. One loss remains: a client span linked alone that
// named its callee (a remote endpoint) counted the call then, with the
// callee's version unknown; its late server span is only recorded as
// served. Past Remember a late span is linked on its own.
package zipkin
