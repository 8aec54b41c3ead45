// Package bootstrap writes the Envoy v3 bootstrap of a signalbox sidecar:
// the node (id, cluster = the Consul service, locality and the metadata keys
// of xds/ir that tell the control plane what the sidecar is), the admin API
// on loopback, ADS over gRPC/HTTP2 to the control plane with keepalive and a
// reconnect backoff, optional TLS to the control plane, and fixed stats tags.
//
// Build is pure and deterministic; Render writes YAML or JSON; Parse reads
// a bootstrap back strictly and validates it, typed configs included, with
// Envoy's own proto validation.
package bootstrap

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/signalbox/signalbox/xds/ir"
)

// Fixed settings of the connection to the control plane.
const (
	// KeepaliveInterval and KeepaliveTimeout are the HTTP/2 PINGs on the
	// xDS connection, so a dead control plane is noticed without traffic.
	// The interval stays above the server's keepalive enforcement minimum
	// (10s in `signalbox serve`), or the server would close the connection.
	KeepaliveInterval = 30 * time.Second
	KeepaliveTimeout  = 5 * time.Second
	// ReconnectBaseInterval and ReconnectMaxInterval are the jittered
	// exponential backoff between attempts to re-open the ADS stream.
	ReconnectBaseInterval = 500 * time.Millisecond
	ReconnectMaxInterval  = 30 * time.Second
)

const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// Build returns the bootstrap for o. It fails with the errors of
// o.Validate (each a *FieldError) when the options are not valid.
func Build(o Options) (*bootstrapv3.Bootstrap, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	cluster, err := controlPlaneCluster(o)
	if err != nil {
		return nil, err
	}
	adminIP, adminPort, _ := splitAdmin(o.adminAddr())
	b := &bootstrapv3.Bootstrap{
		Node: node(o),
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*clusterv3.Cluster{cluster},
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             corev3.ApiConfigSource_GRPC,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
						ClusterName: ir.ControlPlaneCluster,
						// Honoured for xDS streams from an ApiConfigSource
						// with envoy_grpc (Envoy ≥ 1.35); older Envoys use
						// the same defaults, 500ms to 30s.
						RetryPolicy: &corev3.RetryPolicy{RetryBackOff: &corev3.BackoffStrategy{
							BaseInterval: durationpb.New(ReconnectBaseInterval),
							MaxInterval:  durationpb.New(ReconnectMaxInterval),
						}},
					}},
				}},
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: adsSource(),
			CdsConfig: adsSource(),
		},
		Admin: &bootstrapv3.Admin{
			Address: socketAddress(adminIP.String(), adminPort),
		},
		StatsConfig: statsConfig(o),
	}
	if err := validateDeep(b); err != nil {
		return nil, fmt.Errorf("bootstrap: generated config does not validate (a signalbox bug): %w", err)
	}
	return b, nil
}

func node(o Options) *corev3.Node {
	n := &corev3.Node{Id: o.NodeID, Cluster: o.Service}
	if o.Zone != "" || o.Datacenter != "" {
		n.Locality = &corev3.Locality{Region: o.Datacenter, Zone: o.Zone}
	}
	md := map[string]*structpb.Value{
		ir.NodeMetaSidecar: structpb.NewBoolValue(true),
	}
	str := func(k, v string) {
		if v != "" {
			md[k] = structpb.NewStringValue(v)
		}
	}
	num := func(k string, v int) {
		if v != 0 {
			md[k] = structpb.NewNumberValue(float64(v))
		}
	}
	str(ir.NodeMetaVersion, o.Version)
	str(ir.NodeMetaZone, o.Zone)
	str(ir.NodeMetaInstance, o.Instance)
	num(ir.NodeMetaAppPort, o.AppPort)
	num(ir.NodeMetaInboundPort, o.InboundPort)
	num(ir.NodeMetaOutboundPort, o.OutboundPort)
	if len(o.Upstreams) > 0 {
		str(ir.NodeMetaUpstreams, strings.Join(slices.Sorted(slices.Values(o.Upstreams)), ","))
	}
	n.Metadata = &structpb.Struct{Fields: md}
	return n
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func socketAddress(host string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

// controlPlaneCluster is the static cluster ADS runs on: HTTP/2 with
// keepalive, STATIC for an IP address and STRICT_DNS for a name.
func controlPlaneCluster(o Options) (*clusterv3.Cluster, error) {
	host, port, _ := splitXDS(o.XDSAddr)
	discovery := clusterv3.Cluster_STRICT_DNS
	if _, err := netip.ParseAddr(host); err == nil {
		discovery = clusterv3.Cluster_STATIC
	}
	protocol, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
				ConnectionKeepalive: &corev3.KeepaliveSettings{
					Interval: durationpb.New(KeepaliveInterval),
					Timeout:  durationpb.New(KeepaliveTimeout),
				},
			}},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: http protocol options: %w", err)
	}
	c := &clusterv3.Cluster{
		Name:                 ir.ControlPlaneCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: discovery},
		ConnectTimeout:       durationpb.New(o.connectTimeout()),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			httpProtocolOptionsKey: protocol,
		},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: ir.ControlPlaneCluster,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress(host, port),
					}},
				}},
			}},
		},
	}
	if o.TLS.Enabled() {
		ts, err := transportSocket(o.TLS, host)
		if err != nil {
			return nil, err
		}
		c.TransportSocket = ts
	}
	return c, nil
}

// transportSocket is TLS to the control plane. Envoy checks a server
// certificate against the CA only; the subject alt name matcher makes it
// check that the certificate is the control plane's too.
func transportSocket(t TLS, host string) (*corev3.TransportSocket, error) {
	name := t.ServerName
	if name == "" {
		name = host
	}
	san := &tlsv3.SubjectAltNameMatcher{
		SanType: tlsv3.SubjectAltNameMatcher_DNS,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: name}},
	}
	sni := name
	if ip, err := netip.ParseAddr(name); err == nil {
		san.SanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
		san.Matcher.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: ip.String()}
		sni = "" // SNI never carries an IP address (RFC 6066)
	}
	common := &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa:                 fileSource(t.CAFile),
			MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{san},
		}},
		// gRPC servers negotiate HTTP/2 with ALPN.
		AlpnProtocols: []string{"h2"},
	}
	if t.CertFile != "" {
		common.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: fileSource(t.CertFile),
			PrivateKey:       fileSource(t.KeyFile),
		}}
	}
	tc, err := anypb.New(&tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: sni})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: tls context: %w", err)
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tc},
	}, nil
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

// statsConfig tags every stat with the service and version (and the extra
// fixed tags), keeping Envoy's default tag extraction.
func statsConfig(o Options) *metricsv3.StatsConfig {
	tags := map[string]string{TagService: o.Service}
	if o.Version != "" {
		tags[TagVersion] = o.Version
	}
	maps.Copy(tags, o.StatsTags)
	sc := &metricsv3.StatsConfig{UseAllDefaultTags: wrapperspb.Bool(true)}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		sc.StatsTags = append(sc.StatsTags, &metricsv3.TagSpecifier{
			TagName:  k,
			TagValue: &metricsv3.TagSpecifier_FixedValue{FixedValue: tags[k]},
		})
	}
	return sc
}
