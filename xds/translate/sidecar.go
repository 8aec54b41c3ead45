package translate

import (
	"fmt"
	"math"
	"net"
	"sort"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filelogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	grpclogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/signalbox/signalbox/xds/ir"
)

// SidecarResources are one sidecar's listeners, routes and clusters, each
// sorted by name. Its endpoints are the shared load assignments.
type SidecarResources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
}

// AccessLogFields is the JSON field set of file access logs.
var accessLogFields = map[string]string{
	"start_time":       "%START_TIME%",
	"method":           "%REQ(:METHOD)%",
	"path":             "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
	"authority":        "%REQ(:AUTHORITY)%",
	"protocol":         "%PROTOCOL%",
	"status":           "%RESPONSE_CODE%",
	"grpc_status":      "%GRPC_STATUS_NUMBER%",
	"response_flags":   "%RESPONSE_FLAGS%",
	"duration_ms":      "%DURATION%",
	"bytes_received":   "%BYTES_RECEIVED%",
	"bytes_sent":       "%BYTES_SENT%",
	"upstream_cluster": "%UPSTREAM_CLUSTER%",
	"upstream_host":    "%UPSTREAM_HOST%",
	"downstream":       "%DOWNSTREAM_REMOTE_ADDRESS%",
	"request_id":       "%REQ(X-REQUEST-ID)%",
	"trace_id":         "%TRACE_ID%",
	"user_agent":       "%REQ(USER-AGENT)%",
}

// Sidecar translates one sidecar.
func Sidecar(sc ir.Sidecar) (SidecarResources, error) {
	var r SidecarResources
	tel := sc.Telemetry
	if in := sc.Inbound; in != nil && in.Traffic.Protocol == ir.ProtocolTCP {
		cluster := ir.InboundClusterName(sc.Service, in.AppPort)
		tp := tcpProxy(ir.InboundListenerName, sc, tel, []ir.WeightedCluster{{Cluster: cluster, Weight: 1}}, ir.TrafficPolicy{})
		l, err := tcpListener(ir.InboundListenerName, "0.0.0.0", in.Port, corev3.TrafficDirection_INBOUND, tp)
		if err != nil {
			return r, err
		}
		r.Listeners = append(r.Listeners, l)
		r.Clusters = append(r.Clusters, staticCluster(cluster, in.AppAddress, in.AppPort, in.Traffic.ConnectTimeoutMs, nil))
	} else if in != nil {
		cluster := ir.InboundClusterName(sc.Service, in.AppPort)
		rc := &routev3.RouteConfiguration{
			Name: ir.InboundListenerName,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    sc.Service,
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  prefixMatch(),
					Action: &routev3.Route_Route{Route: routeAction([]ir.WeightedCluster{{Cluster: cluster, Weight: 1}}, in.Traffic, false)},
				}},
			}},
		}
		hcm := connectionManager(ir.InboundListenerName, sc, tel, &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc})
		l, err := httpListener(ir.InboundListenerName, "0.0.0.0", in.Port, corev3.TrafficDirection_INBOUND, hcm)
		if err != nil {
			return r, err
		}
		r.Listeners = append(r.Listeners, l)
		r.Clusters = append(r.Clusters, staticCluster(cluster, in.AppAddress, in.AppPort, in.Traffic.ConnectTimeoutMs, downstreamProtocol()))
	}

	out := &routev3.RouteConfiguration{Name: ir.OutboundRouteName, IgnorePortInHostMatching: true}
	for _, vh := range sc.Outbound.VirtualHosts {
		if vh.Traffic.Protocol == ir.ProtocolTCP {
			continue // reached on its local-bind listeners only
		}
		out.VirtualHosts = append(out.VirtualHosts, &routev3.VirtualHost{
			Name:    vh.Service,
			Domains: vh.Domains,
			Routes:  outboundRoutes(vh),
		})
	}
	r.Routes = append(r.Routes, out)
	hcm := connectionManager(ir.OutboundListenerName, sc, tel, rds(ir.OutboundRouteName))
	l, err := httpListener(ir.OutboundListenerName, "127.0.0.1", sc.Outbound.Port, corev3.TrafficDirection_OUTBOUND, hcm)
	if err != nil {
		return r, err
	}
	r.Listeners = append(r.Listeners, l)

	for _, b := range sc.LocalBinds {
		name := ir.LocalBindName(b.Service, b.Port)
		var vh *ir.VirtualHost
		for i := range sc.Outbound.VirtualHosts {
			if sc.Outbound.VirtualHosts[i].Service == b.Service {
				vh = &sc.Outbound.VirtualHosts[i]
			}
		}
		if vh == nil {
			return r, fmt.Errorf("translate: sidecar %s: local bind for %s has no upstream", sc.Node, b.Service)
		}
		if vh.Traffic.Protocol == ir.ProtocolTCP {
			l, err := tcpListener(name, b.Address, b.Port, corev3.TrafficDirection_OUTBOUND, tcpProxy(ir.OutboundListenerName, sc, tel, vh.Routes, vh.Traffic))
			if err != nil {
				return r, err
			}
			r.Listeners = append(r.Listeners, l)
			continue
		}
		r.Routes = append(r.Routes, &routev3.RouteConfiguration{
			Name: name,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    b.Service,
				Domains: []string{"*"},
				Routes:  outboundRoutes(*vh),
			}},
		})
		l, err := httpListener(name, b.Address, b.Port, corev3.TrafficDirection_OUTBOUND, connectionManager(ir.OutboundListenerName, sc, tel, rds(name)))
		if err != nil {
			return r, err
		}
		r.Listeners = append(r.Listeners, l)
	}

	for _, c := range sc.Clusters {
		r.Clusters = append(r.Clusters, sidecarCluster(c))
	}
	if t := tel.Tracing; t != nil {
		switch t.Provider {
		case ir.Zipkin:
			c := staticCluster(ir.ZipkinCluster, t.Collector.Host, t.Collector.Port, 0, nil)
			if t.Collector.TLS {
				c.TransportSocket = upstreamTLS(t.Collector.Host)
			}
			r.Clusters = append(r.Clusters, c)
		case ir.OpenTelemetry:
			r.Clusters = append(r.Clusters, staticCluster(ir.OTelCluster, t.Collector.Host, t.Collector.Port, 0, http2Only()))
		}
	}
	sort.Slice(r.Listeners, func(a, b int) bool { return r.Listeners[a].Name < r.Listeners[b].Name })
	sort.Slice(r.Routes, func(a, b int) bool { return r.Routes[a].Name < r.Routes[b].Name })
	sort.Slice(r.Clusters, func(a, b int) bool { return r.Clusters[a].Name < r.Clusters[b].Name })
	return r, nil
}

func prefixMatch() *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
}

func rds(name string) *hcmv3.HttpConnectionManager_Rds {
	return &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: adsSource(), RouteConfigName: name}}
}

// outboundRoutes are an upstream's routes: its header matches first, each
// to one cluster, then the weighted route, which alone carries the mirror
// (a matched request goes where it was sent, and is not copied). All take
// the upstream's timeout and retries.
func outboundRoutes(vh ir.VirtualHost) []*routev3.Route {
	var routes []*routev3.Route
	for _, m := range vh.Matches {
		routes = append(routes, &routev3.Route{
			Match:  headerMatch(m),
			Action: &routev3.Route_Route{Route: routeAction([]ir.WeightedCluster{{Cluster: m.Cluster, Weight: 1}}, vh.Traffic, true)},
		})
	}
	def := routeAction(vh.Routes, vh.Traffic, true)
	if m := vh.Mirror; m != nil {
		def.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{
			Cluster: m.Cluster,
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{
				Numerator:   uint32(math.Round(m.Percent * 1e4)),
				Denominator: typev3.FractionalPercent_MILLION,
			}},
		}}
	}
	return append(routes, &routev3.Route{Match: prefixMatch(), Action: &routev3.Route_Route{Route: def}})
}

// routeAction sends to one cluster or weighted clusters, with the traffic
// policy's timeout, and its retries when retry is set (outbound only: the
// inbound side never retries into the local app).
func routeAction(dests []ir.WeightedCluster, t ir.TrafficPolicy, retry bool) *routev3.RouteAction {
	a := &routev3.RouteAction{Timeout: durationpb.New(ms(t.RequestTimeoutMs))}
	if len(dests) == 1 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: dests[0].Cluster}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, d := range dests {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: d.Cluster, Weight: wrapperspb.UInt32(d.Weight)})
		}
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	if retry && t.Retries > 0 && t.RetryOn != "" {
		a.RetryPolicy = &routev3.RetryPolicy{
			RetryOn:    t.RetryOn,
			NumRetries: wrapperspb.UInt32(t.Retries),
			// Retry on another host than the one that failed.
			RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
				Name:       "envoy.retry_host_predicates.previous_hosts",
				ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(previousHosts())},
			}},
		}
	}
	return a
}

// connectionManager is the HTTP connection manager of a sidecar listener:
// HTTP/1.1 and HTTP/2 (gRPC) by auto-detection, request ids, tracing and
// access logs named after the direction, so each request is counted once.
// Its spans say whether its access logs go to signalbox's ALS (tag
// ir.SpanTagALS), so that the Zipkin collector does not count again what
// ALS counted.
func connectionManager(direction string, sc ir.Sidecar, tel ir.Telemetry, routes any) *hcmv3.HttpConnectionManager {
	logs := accessLogs(direction, sc, tel.AccessLog)
	h := &hcmv3.HttpConnectionManager{
		StatPrefix:        direction,
		CodecType:         hcmv3.HttpConnectionManager_AUTO,
		GenerateRequestId: wrapperspb.Bool(true),
		HttpFilters:       []*hcmv3.HttpFilter{routerFilter()},
		Tracing:           tracing(sc, tel.Tracing, logsToALS(logs)),
		AccessLog:         logs,
	}
	if direction == ir.OutboundListenerName {
		// Requests leaving a sidecar carry x-envoy-downstream-service-cluster
		// (the caller's service), so the callee's inbound access log can tell
		// them from calls of callers without a sidecar and count each once.
		h.AddUserAgent = wrapperspb.Bool(true)
	}
	switch r := routes.(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		h.RouteSpecifier = r
	case *hcmv3.HttpConnectionManager_RouteConfig:
		h.RouteSpecifier = r
	}
	return h
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(routerConfig())}}
}

// alsAccessLogger is the name of the gRPC access logger that streams to
// signalbox's Access Log Service.
const alsAccessLogger = "envoy.access_loggers.http_grpc"

// logsToALS reports whether a connection manager's access logs include the
// stream to signalbox's Access Log Service.
func logsToALS(logs []*accesslogv3.AccessLog) bool {
	for _, l := range logs {
		if l.GetName() == alsAccessLogger {
			return true
		}
	}
	return false
}

// tracing is a connection manager's tracing: the sampling, the literal tags
// of t, and tag ir.SpanTagALS, which says whether this connection manager's
// access logs go to signalbox's ALS (als). signalbox's value of that tag
// wins over a configured tag of the same name: the collector relies on it
// to count each call once.
func tracing(sc ir.Sidecar, t *ir.Tracing, als bool) *hcmv3.HttpConnectionManager_Tracing {
	if t == nil {
		return nil
	}
	tr := &hcmv3.HttpConnectionManager_Tracing{
		RandomSampling:  &typev3.Percent{Value: t.RandomSampling},
		ClientSampling:  &typev3.Percent{Value: t.ClientSampling},
		OverallSampling: &typev3.Percent{Value: t.OverallSampling},
	}
	tags := make(map[string]string, len(t.Tags)+1)
	for k, v := range t.Tags {
		tags[k] = v
	}
	tags[ir.SpanTagALS] = ir.SpanTagALSOff
	if als {
		tags[ir.SpanTagALS] = ir.SpanTagALSOn
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		tr.CustomTags = append(tr.CustomTags, &tracingv3.CustomTag{Tag: k, Type: &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: tags[k]}}})
	}
	switch t.Provider {
	case ir.Zipkin:
		z := &tracev3.ZipkinConfig{
			CollectorCluster:         ir.ZipkinCluster,
			CollectorEndpoint:        t.Collector.Path,
			CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON,
			CollectorHostname:        t.Collector.Host,
			TraceId_128Bit:           true,
			SharedSpanContext:        wrapperspb.Bool(true),
			TraceContextOption:       tracev3.ZipkinConfig_USE_B3,
		}
		if t.Collector.Encoding == "proto" {
			z.CollectorEndpointVersion = tracev3.ZipkinConfig_HTTP_PROTO
		}
		for _, p := range t.Propagation {
			if p == "w3c" {
				z.TraceContextOption = tracev3.ZipkinConfig_USE_B3_WITH_W3C_PROPAGATION
			}
		}
		tr.Provider = &tracev3.Tracing_Http{Name: "envoy.tracers.zipkin", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(z)}}
	case ir.OpenTelemetry:
		o := &tracev3.OpenTelemetryConfig{
			GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ir.OTelCluster}}},
			ServiceName: sc.Service,
		}
		tr.Provider = &tracev3.Tracing_Http{Name: "envoy.tracers.opentelemetry", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(o)}}
	}
	return tr
}

func accessLogs(direction string, sc ir.Sidecar, a ir.AccessLog) []*accesslogv3.AccessLog {
	var out []*accesslogv3.AccessLog
	if a.ALS {
		out = append(out, &accesslogv3.AccessLog{
			Name: alsAccessLogger,
			ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&grpclogv3.HttpGrpcAccessLogConfig{
				CommonConfig: &grpclogv3.CommonGrpcAccessLogConfig{
					LogName:             direction,
					GrpcService:         &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ir.ControlPlaneCluster}}},
					TransportApiVersion: corev3.ApiVersion_V3,
				},
				// gRPC status arrives in trailers, or in headers for
				// trailers-only responses.
				AdditionalRequestHeadersToLog:   requestHeadersToLog(direction),
				AdditionalResponseHeadersToLog:  []string{"grpc-status"},
				AdditionalResponseTrailersToLog: []string{"grpc-status"},
			})},
		})
	}
	if f := a.File; f != nil {
		out = append(out, fileAccessLog(f.Path, fileLogFilter(f), accessLogFields,
			map[string]any{"direction": direction, "service": sc.Service, "version": sc.Version}))
	}
	return out
}

// fileAccessLog writes a JSON line per entry to path: the fields (Envoy
// format strings) and the literal ones.
func fileAccessLog(path string, filter *accesslogv3.AccessLogFilter, fields map[string]string, literal map[string]any) *accesslogv3.AccessLog {
	for k, v := range fields {
		literal[k] = v
	}
	st, err := structpb.NewStruct(literal)
	if err != nil {
		panic(err) // only strings: cannot fail
	}
	return &accesslogv3.AccessLog{
		Name:   "envoy.access_loggers.file",
		Filter: filter,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&filelogv3.FileAccessLog{
			Path: path,
			AccessLogFormat: &filelogv3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
				Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: st},
			}},
		})},
	}
}

func requestHeadersToLog(direction string) []string {
	if direction == ir.InboundListenerName {
		return []string{ir.DownstreamClusterHeader}
	}
	return nil
}

func fileLogFilter(f *ir.FileLog) *accesslogv3.AccessLogFilter {
	var fs []*accesslogv3.AccessLogFilter
	ge := func(v uint32) *accesslogv3.ComparisonFilter {
		return &accesslogv3.ComparisonFilter{Op: accesslogv3.ComparisonFilter_GE, Value: &corev3.RuntimeUInt32{DefaultValue: v, RuntimeKey: "signalbox.access_log.unused"}}
	}
	if f.MinStatus > 0 {
		fs = append(fs, &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_StatusCodeFilter{StatusCodeFilter: &accesslogv3.StatusCodeFilter{Comparison: ge(f.MinStatus)}}})
	}
	if f.MinDurationMs > 0 {
		fs = append(fs, &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_DurationFilter{DurationFilter: &accesslogv3.DurationFilter{Comparison: ge(f.MinDurationMs)}}})
	}
	if f.SkipHealthChecks {
		fs = append(fs, &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_NotHealthCheckFilter{NotHealthCheckFilter: &accesslogv3.NotHealthCheckFilter{}}})
	}
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0]
	}
	return &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_AndFilter{AndFilter: &accesslogv3.AndFilter{Filters: fs}}}
}

// tcpProxy proxies connections to dests (weighted when several: a
// connection, not a request, picks its cluster), with direction's access
// logs. Retries of t are extra connect attempts: nothing was sent yet.
func tcpProxy(direction string, sc ir.Sidecar, tel ir.Telemetry, dests []ir.WeightedCluster, t ir.TrafficPolicy) *tcpproxyv3.TcpProxy {
	p := &tcpproxyv3.TcpProxy{StatPrefix: direction, AccessLog: tcpAccessLogs(direction, sc, tel.AccessLog)}
	if len(dests) == 1 {
		p.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: dests[0].Cluster}
	} else {
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, d := range dests {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: d.Cluster, Weight: d.Weight})
		}
		p.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	if t.Retries > 0 {
		p.MaxConnectAttempts = wrapperspb.UInt32(1 + t.Retries)
	}
	return p
}

// tcpAccessLogFields is the JSON field set of file access logs of TCP
// listeners, a line per connection: the HTTP set's fields that a
// connection has.
var tcpAccessLogFields = func() map[string]string {
	out := map[string]string{}
	for _, k := range []string{"start_time", "response_flags", "duration_ms", "bytes_received", "bytes_sent", "upstream_cluster", "upstream_host", "downstream"} {
		out[k] = accessLogFields[k]
	}
	return out
}()

// tcpAccessLogs are a TCP listener's access logs: a connection each, to
// signalbox's ALS under the direction's log name (the graph counts outbound
// connections; connect failures are errors) and to the file, whose status
// and health-check filters do not apply to connections.
func tcpAccessLogs(direction string, sc ir.Sidecar, a ir.AccessLog) []*accesslogv3.AccessLog {
	var out []*accesslogv3.AccessLog
	if a.ALS {
		out = append(out, &accesslogv3.AccessLog{
			Name: "envoy.access_loggers.tcp_grpc",
			ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&grpclogv3.TcpGrpcAccessLogConfig{
				CommonConfig: &grpclogv3.CommonGrpcAccessLogConfig{
					LogName:             direction,
					GrpcService:         &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: ir.ControlPlaneCluster}}},
					TransportApiVersion: corev3.ApiVersion_V3,
				},
			})},
		})
	}
	if f := a.File; f != nil {
		out = append(out, fileAccessLog(f.Path, fileLogFilter(&ir.FileLog{MinDurationMs: f.MinDurationMs}), tcpAccessLogFields,
			map[string]any{"direction": direction, "service": sc.Service, "version": sc.Version, "protocol": "tcp"}))
	}
	return out
}

func tcpListener(name, addr string, port uint32, dir corev3.TrafficDirection, p *tcpproxyv3.TcpProxy) (*listenerv3.Listener, error) {
	return listener(name, addr, port, dir, "envoy.filters.network.tcp_proxy", p)
}

func httpListener(name, addr string, port uint32, dir corev3.TrafficDirection, hcm *hcmv3.HttpConnectionManager) (*listenerv3.Listener, error) {
	return listener(name, addr, port, dir, "envoy.filters.network.http_connection_manager", hcm)
}

// listener is a listener with one network filter.
func listener(name, addr string, port uint32, dir corev3.TrafficDirection, filter string, config proto.Message) (*listenerv3.Listener, error) {
	a, err := anypb.New(config)
	if err != nil {
		return nil, fmt.Errorf("translate: listener %s: %w", name, err)
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(addr, port),
		TrafficDirection: dir,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{Name: filter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}},
		}},
	}, nil
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol: corev3.SocketAddress_TCP, Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// staticCluster is a cluster of one host: STATIC for an IP, STRICT_DNS for a
// name. opts, when set, selects the upstream HTTP protocol.
func staticCluster(name, host string, port, timeoutMs uint32, opts *httpv3.HttpProtocolOptions) *clusterv3.Cluster {
	kind := clusterv3.Cluster_STATIC
	if net.ParseIP(host) == nil {
		kind = clusterv3.Cluster_STRICT_DNS
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: kind},
		ConnectTimeout:       durationpb.New(connectTimeout(timeoutMs)),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)}},
			}}}},
		},
	}
	if opts != nil {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(opts)}
	}
	return c
}

// sidecarCluster is an upstream EDS cluster with the upstream's traffic
// policy: outlier detection and a retry budget.
func sidecarCluster(sc ir.SidecarCluster) *clusterv3.Cluster {
	c := Cluster(sc.Cluster)
	t := sc.Traffic
	if t.ConnectTimeoutMs > 0 {
		c.ConnectTimeout = durationpb.New(ms(t.ConnectTimeoutMs))
	}
	tcp := t.Protocol == ir.ProtocolTCP
	if !tcp {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(downstreamProtocol())}
	}
	// For TCP, Envoy counts connect failures as 5xx here.
	if o := t.Outlier; o.Consecutive5xx > 0 {
		c.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx:    wrapperspb.UInt32(o.Consecutive5xx),
			Interval:           durationpb.New(ms(o.IntervalMs)),
			BaseEjectionTime:   durationpb.New(ms(o.BaseEjectionMs)),
			MaxEjectionPercent: wrapperspb.UInt32(o.MaxEjectionPercent),
		}
	}
	if t.RetryBudgetPercent > 0 && !tcp {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority: corev3.RoutingPriority_DEFAULT,
			RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
				BudgetPercent:       &typev3.Percent{Value: t.RetryBudgetPercent},
				MinRetryConcurrency: wrapperspb.UInt32(3),
			},
		}}}
	}
	return c
}

// downstreamProtocol makes a cluster speak to its upstream in the protocol
// the request came in: HTTP/1.1 stays HTTP/1.1, gRPC stays HTTP/2.
func downstreamProtocol() *httpv3.HttpProtocolOptions {
	return &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
		UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		},
	}}
}

func http2Only() *httpv3.HttpProtocolOptions {
	return &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
		ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		},
	}}
}

// SystemCAFile is where Debian-like hosts keep the CA bundle Envoy verifies
// TLS collectors against.
const SystemCAFile = "/etc/ssl/certs/ca-certificates.crt"

// upstreamTLS verifies a collector's certificate against the system CAs and
// its host: a DNS name (also sent as SNI), or an IP address, which a
// certificate lists among its IP SANs and SNI cannot carry.
func upstreamTLS(host string) *corev3.TransportSocket {
	sni, sanType := host, tlsv3.SubjectAltNameMatcher_DNS
	if net.ParseIP(host) != nil {
		sni, sanType = "", tlsv3.SubjectAltNameMatcher_IP_ADDRESS
	}
	return &corev3.TransportSocket{
		Name: "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.UpstreamTlsContext{
			Sni: sni,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: SystemCAFile}},
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: sanType,
						Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}},
					}},
				}},
			},
		})},
	}
}

func ms(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

// mustAny packs a message we built ourselves; it cannot fail.
func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(fmt.Sprintf("translate: pack %T: %v", m, err))
	}
	return a
}

func routerConfig() proto.Message { return &routerv3.Router{} }

func previousHosts() proto.Message { return &previoushostsv3.PreviousHostsPredicate{} }
