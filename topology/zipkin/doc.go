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
// # Access logs
//
// signalbox's sidecars also stream access logs to signalbox (ALS, see
// topology/als), into the same graph: ALS where there are sidecars, the
// services' own spans where there are none. So a call ALS counted is not
// counted again from its spans. Each sidecar listener tags its spans
// signalbox.als=on when its access logs go to signalbox, off when they do
// not (Span.ALS). ALS counts a call on the caller's sidecar's outbound side,
// or on the callee's sidecar's inbound side when the caller has no
// sidecar; and every inbound entry as served. Mirroring that, the linker
// leaves out (and the Collector counts in CallsByALS and ServedByALS):
//   - a call whose caller's side — the client half of a server span, or a
//     leaf client span — says on;
//   - a call whose server span says on when its client half is missing or
//     carries no signalbox.als tag (it was not sent by a signalbox sidecar);
//   - the served view of a server span that says on, and so of the app's
//     own server span under it or sharing its id (the same request).
//
// A caller's sidecar that says off with a callee's that says on is counted
// from the spans: the callee's sidecar saw the caller's sidecar header and
// ALS counted the call nowhere. Messaging and backfilled links are not
// affected. A call left to ALS is marked done like one recorded, so a
// re-link does not record it.
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
// served. Likewise a server span that says signalbox.als=on, whose caller
// was known only from an ancestor (its client half missing), is left to
// ALS; a late client half that says off does not bring it back. Past
// Remember a late span is linked on its own.
package zipkin
