package ir

import "strconv"

// Node metadata keys. `signalbox bootstrap` writes them into an Envoy
// sidecar's bootstrap; the server reads them to know what the node is. The
// node's cluster is the Consul service the sidecar fronts, and its id must be
// unique per sidecar.
const (
	// NodeMetaSidecar is true for an Envoy sidecar (a node without it is
	// served as a proxyless gRPC client, unless its user agent is "envoy").
	NodeMetaSidecar = "signalbox.sidecar"
	// NodeMetaVersion is the version subset of the instance the sidecar fronts.
	NodeMetaVersion = "version"
	// NodeMetaZone is the zone of the host (optional).
	NodeMetaZone = "zone"
	// NodeMetaInstance is the Consul service ID of the app instance, whose port
	// becomes the inbound listener's target.
	NodeMetaInstance = "signalbox.instance"
	// NodeMetaAppPort is the app's port, when no Consul instance is named.
	NodeMetaAppPort = "signalbox.app_port"
	// NodeMetaInboundPort overrides the inbound listener's port (default 15006).
	NodeMetaInboundPort = "signalbox.inbound_port"
	// NodeMetaOutboundPort overrides the outbound listener's port (default 15001).
	NodeMetaOutboundPort = "signalbox.outbound_port"
	// NodeMetaUpstreams narrows the upstreams to a comma-separated list of
	// service names (default: every service, or the Consul sidecar
	// registration's upstreams).
	NodeMetaUpstreams = "signalbox.upstreams"
)

// InstanceMetaInboundPort is the Consul instance meta key that says the
// instance is fronted by a sidecar listening on that port (for sidecars
// without a Consul registration): callers are sent there instead of to the
// app's port.
const InstanceMetaInboundPort = "signalbox-inbound-port"

// DownstreamClusterHeader names the caller's service on requests that leave
// a sidecar (Envoy's add_user_agent on the outbound connection manager); the
// inbound access log records it, so a request is counted once, by its caller.
const DownstreamClusterHeader = "x-envoy-downstream-service-cluster"

// SpanTagALS is the literal span tag every sidecar connection manager with
// tracing adds: SpanTagALSOn when that listener's access logs go to
// signalbox's Access Log Service, SpanTagALSOff when they do not (file logs
// only, or none). The Zipkin collector (topology/zipkin) reads it so that a
// call ALS counted already is not counted again from its spans. signalbox
// sets it on the inbound and outbound listeners separately; a configured
// tag of the same name is overridden.
const (
	SpanTagALS    = "signalbox.als"
	SpanTagALSOn  = "on"
	SpanTagALSOff = "off"
)

// Default sidecar ports.
const (
	DefaultInboundPort  = 15006
	DefaultOutboundPort = 15001
)

// Cluster names of the telemetry sinks a sidecar sends to. The bootstrap
// defines ControlPlaneCluster (the xDS server, which also takes access logs
// over gRPC); the others are served over CDS when tracing needs them.
const (
	ControlPlaneCluster = "signalbox"
	ZipkinCluster       = "signalbox-zipkin"
	OTelCluster         = "signalbox-otel"
)

// TracingProvider names a tracer.
type TracingProvider string

const (
	Zipkin        TracingProvider = "zipkin"
	OpenTelemetry TracingProvider = "opentelemetry"
)

// Telemetry is what a sidecar records for one service's traffic.
type Telemetry struct {
	// Tracing is nil when tracing is off.
	Tracing   *Tracing  `json:"tracing,omitempty"`
	AccessLog AccessLog `json:"accessLog"`
}

// Tracing configures the HTTP connection managers' tracer. Sampling values
// are percentages (0–100) and are always set explicitly: Envoy's defaults
// are 100%.
type Tracing struct {
	Provider TracingProvider `json:"provider"`
	// Collector is where spans go: for Zipkin an HTTP endpoint (Path and
	// Encoding "json" or "proto"), for OpenTelemetry a gRPC OTLP endpoint.
	Collector       Collector `json:"collector"`
	RandomSampling  float64   `json:"randomSampling"`
	ClientSampling  float64   `json:"clientSampling"`
	OverallSampling float64   `json:"overallSampling"`
	// Tags are literal custom tags added to every span (service, version,
	// host, datacenter, and any configured extra).
	Tags map[string]string `json:"tags,omitempty"`
	// Propagation is the trace-context formats to read and write: "b3",
	// "w3c" or both.
	Propagation []string `json:"propagation,omitempty"`
}

// Collector is a telemetry endpoint.
type Collector struct {
	Host     string `json:"host"`
	Port     uint32 `json:"port"`
	Path     string `json:"path,omitempty"`
	Encoding string `json:"encoding,omitempty"`
	// TLS: connect with TLS, verifying the host name against the system CAs
	// (an https:// Zipkin URL).
	TLS bool `json:"tls,omitempty"`
}

// AccessLog configures access logging.
type AccessLog struct {
	// ALS sends every request to signalbox's Access Log Service, with log
	// name "inbound" or "outbound" so each request is counted once.
	ALS bool `json:"als"`
	// File writes a JSON line per request, when set.
	File *FileLog `json:"file,omitempty"`
}

// FileLog is a file access log with optional filters (all must hold).
type FileLog struct {
	Path string `json:"path"`
	// MinStatus logs only responses with status >= MinStatus (0: all).
	MinStatus uint32 `json:"minStatus,omitempty"`
	// MinDurationMs logs only requests that took at least this long (0: all).
	MinDurationMs uint32 `json:"minDurationMs,omitempty"`
	// SkipHealthChecks leaves out requests Envoy marks as health checks.
	SkipHealthChecks bool `json:"skipHealthChecks,omitempty"`
}

// Protocol is what a service speaks, as its sidecars proxy it.
type Protocol string

const (
	// ProtocolHTTP (the default, also for "") is HTTP/1.1 and HTTP/2,
	// gRPC included: routed by host name on the shared outbound listener,
	// with retries, tracing and request-level access logs.
	ProtocolHTTP Protocol = "http"
	// ProtocolTCP is opaque TCP: proxied by connection (tcp_proxy), only on
	// a local-bind listener when calling it (a TCP stream names no host),
	// with connection-level access logs and no tracing.
	ProtocolTCP Protocol = "tcp"
)

// TrafficPolicy is how a sidecar calls a service (and, for the inbound
// side, how it calls its local app).
type TrafficPolicy struct {
	// Protocol is what the service speaks ("": HTTP).
	Protocol         Protocol `json:"protocol,omitempty"`
	ConnectTimeoutMs uint32   `json:"connectTimeoutMs"`
	// RequestTimeoutMs is the route timeout (0: none).
	RequestTimeoutMs uint32 `json:"requestTimeoutMs"`
	// Retries is the number of retries on RetryOn conditions.
	Retries uint32 `json:"retries"`
	// RetryOn is Envoy's retry_on list, e.g. "connect-failure,refused-stream,unavailable".
	RetryOn string `json:"retryOn,omitempty"`
	// RetryBudgetPercent caps concurrent retries as a share of active
	// requests (Envoy's retry budget).
	RetryBudgetPercent float64 `json:"retryBudgetPercent"`
	// Outlier detection: eject a host after Consecutive5xx errors.
	Outlier Outlier `json:"outlier"`
}

// Outlier is outlier detection for a cluster (Consecutive5xx 0: off).
type Outlier struct {
	Consecutive5xx     uint32 `json:"consecutive5xx"`
	IntervalMs         uint32 `json:"intervalMs"`
	BaseEjectionMs     uint32 `json:"baseEjectionMs"`
	MaxEjectionPercent uint32 `json:"maxEjectionPercent"`
}

// Sidecar is everything one Envoy sidecar is served, apart from endpoints
// (shared with every client by cluster name).
type Sidecar struct {
	Node    string `json:"node"`
	Service string `json:"service"`
	Version string `json:"version,omitempty"`
	// Telemetry is the sidecar's own service's policy; it applies to both
	// its inbound and outbound listeners.
	Telemetry Telemetry `json:"telemetry"`
	// Inbound is nil when the app's port is unknown.
	Inbound  *Inbound `json:"inbound,omitempty"`
	Outbound Outbound `json:"outbound"`
	// LocalBinds are extra outbound listeners, one per upstream that asks
	// for a local port (Consul sidecar registrations).
	LocalBinds []LocalBind `json:"localBinds,omitempty"`
	// Clusters are the upstream clusters, with each upstream's traffic policy.
	Clusters []SidecarCluster `json:"clusters,omitempty"`
	// Problems are what was wrong with the node metadata or a policy
	// override, and what was used instead.
	Problems []string `json:"problems,omitempty"`
}

// Inbound is the listener in front of the local app.
type Inbound struct {
	Port       uint32        `json:"port"`
	AppAddress string        `json:"appAddress"`
	AppPort    uint32        `json:"appPort"`
	Traffic    TrafficPolicy `json:"traffic"`
}

// Outbound is the loopback listener the app sends its calls to.
type Outbound struct {
	Port         uint32        `json:"port"`
	VirtualHosts []VirtualHost `json:"virtualHosts"`
}

// VirtualHost routes calls to one upstream service.
type VirtualHost struct {
	Service string            `json:"service"`
	Domains []string          `json:"domains"`
	Routes  []WeightedCluster `json:"routes"`
	// Matches and Mirror are as in Service.
	Matches []HeaderRoute `json:"matches,omitempty"`
	Mirror  *Mirror       `json:"mirror,omitempty"`
	Traffic TrafficPolicy `json:"traffic"`
}

// LocalBind is a loopback listener dedicated to one upstream.
type LocalBind struct {
	Service string `json:"service"`
	Address string `json:"address"`
	Port    uint32 `json:"port"`
}

// SidecarCluster is an upstream cluster as a sidecar sees it.
type SidecarCluster struct {
	Cluster
	Traffic TrafficPolicy `json:"traffic"`
}

// InboundClusterName names the cluster of a sidecar's local app.
func InboundClusterName(service string, port uint32) string {
	return "inbound|" + service + "|" + strconv.FormatUint(uint64(port), 10)
}

// Listener and route names of a sidecar.
const (
	InboundListenerName  = "inbound"
	OutboundListenerName = "outbound"
	// OutboundRouteName is the route configuration of the outbound listener.
	OutboundRouteName = "outbound"
)

// LocalBindName names a local-bind listener and its route configuration.
func LocalBindName(service string, port uint32) string {
	return "bind|" + service + "|" + strconv.FormatUint(uint64(port), 10)
}
