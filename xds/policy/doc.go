// Package policy turns signalbox's telemetry and traffic settings into the
// per-service parts of the xDS IR (ir.Telemetry and ir.TrafficPolicy).
//
// Settings come from two places:
//
//   - Global defaults: the telemetry: and traffic: sections of signalbox's
//     YAML config file, read with ParseConfig and checked with
//     Config.Validate. A bad config file is an error that names the field,
//     the value and what is allowed, and signalbox does not start.
//   - Per-service overrides: Consul service meta with the keys below. Consul
//     has no service-level meta, so the meta of a service's instances is
//     combined first with Merge (the value most instances set wins). A bad
//     value never breaks a sidecar's config: ForService records a Problem
//     (for the log, the debug view and a metric) and keeps the default for
//     that one setting.
//
// Everything here is pure: no I/O, no clock, no globals, deterministic output.
//
// # Meta keys
//
// An empty value is the same as no key. Enumerated values are read case
// insensitively; surrounding spaces are ignored. "Default" is the value from
// the config file; the built-in default (DefaultConfig) is shown in brackets.
//
//	key                                 values                                    default
//	signalbox-trace-provider            zipkin | opentelemetry | none             telemetry.tracing.provider [zipkin]
//	signalbox-trace-sampling            percent 0–100, decimals allowed ("0.5")   telemetry.tracing.sampling [1]
//	signalbox-trace-client-sampling     percent 0–100                             telemetry.tracing.clientSampling [100]
//	signalbox-trace-overall-sampling    percent 0–100                             telemetry.tracing.overallSampling [100]
//	signalbox-zipkin-url                http(s)://host[:port][/path]              telemetry.tracing.zipkin.url [signalbox's own endpoint]
//	signalbox-zipkin-encoding           json | proto                              telemetry.tracing.zipkin.encoding [json]
//	signalbox-otel-address              host:port (OTLP over gRPC)                telemetry.tracing.opentelemetry.address [none]
//	signalbox-access-log                off | absolute file path                  telemetry.accessLog.file.path [off]
//	signalbox-access-log-min-status     0 (all) or 100–599                        telemetry.accessLog.file.minStatus [0]
//	signalbox-access-log-min-duration   duration 0–1h, e.g. 250ms (0: all)        telemetry.accessLog.file.minDurationMs [0]
//	signalbox-als                       true | false                              telemetry.accessLog.als [true]
//	signalbox-connect-timeout           duration 1ms–1m                           traffic.connectTimeout [2s]
//	signalbox-request-timeout           duration 0 (none) or 1ms–24h              traffic.requestTimeout [15s]
//	signalbox-retries                   whole number 0–10                         traffic.retries [2]
//	signalbox-retry-on                  comma-separated Envoy retry_on values     traffic.retryOn [connect-failure,refused-stream,unavailable]
//	signalbox-outlier-consecutive-5xx   whole number 0 (off)–1000                 traffic.outlier.consecutive5xx [5]
//	signalbox-protocol                  http | tcp                                http
//
// Details:
//
//   - signalbox-trace-provider: none turns tracing off (ir.Telemetry.Tracing
//     is nil). opentelemetry needs a collector address, from
//     signalbox-otel-address or the config file; zipkin needs a Zipkin URL.
//     Without one the provider is a Problem and the default provider is kept.
//   - Sampling values are percentages and may end in "%". Random sampling
//     picks that share of requests that carry no trace decision; client
//     sampling applies to requests that ask to be traced (x-client-trace-id);
//     overall sampling caps both. All three are always set explicitly, since
//     Envoy's defaults are 100%.
//   - signalbox-zipkin-url: scheme http (port 80 by default) or https (port
//     443); no user info, query or fragment; a missing path means
//     /api/v2/spans.
//   - signalbox-access-log: a path turns the file log on (one JSON line per
//     request); its filters (min status, min duration, skip health checks)
//     start from the config file's file section, if any. off turns it off.
//     signalbox-access-log-min-status and -min-duration need a file log (from
//     the config file or signalbox-access-log); without one they are a
//     Problem and have no effect.
//   - signalbox-retries above 0 needs retry conditions: signalbox-retry-on, or
//     traffic.retryOn in the config file.
//   - signalbox-retry-on accepts 5xx, gateway-error, reset, connect-failure,
//     retriable-4xx, refused-stream, retriable-status-codes,
//     retriable-headers, envoy-ratelimited, http3-post-connect-failure and the
//     gRPC conditions cancelled, deadline-exceeded, internal,
//     resource-exhausted and unavailable. Empty entries and repeats are
//     dropped; one unknown entry rejects the whole value.
//   - signalbox-protocol: http covers HTTP/1.1, HTTP/2 and gRPC. tcp makes
//     the service's sidecars proxy connections, not requests (tcp_proxy):
//     inbound to the app, and outbound only on local-bind listeners (a TCP
//     stream names no host the shared outbound listener could route by). A
//     TCP service's routes follow a release's weights (not its header
//     matches or mirror), and have no request timeout, retries on responses,
//     tracing or status codes: access logs count connections, and connect
//     failures as errors. Retries, when set, are connect attempts.
//   - Any other key that starts with "signalbox-" is reported as a Problem
//     (usually a typo) and ignored.
//
// Spans carry the literal tags service, version, host (the Consul node) and
// datacenter of the instance the sidecar fronts, plus the config file's
// telemetry.tracing.tags; the four built-in names are reserved. The
// translator adds signalbox.als (on or off: whether the listener's access
// logs go to signalbox's ALS, see ir.SpanTagALS), over any configured tag of
// that name.
package policy
