// Package translate turns the xDS IR into Envoy v3 resources. It is pure and
// deterministic: the same IR gives byte-identical, name-sorted resources,
// pinned by the golden files in testdata/.
package translate

import (
	"fmt"
	"sort"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/signalbox/signalbox/xds/ir"
)

// Resources are the Envoy resources of a Config, each list sorted by name.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// Translate converts a validated Config.
func Translate(cfg *ir.Config) (Resources, error) {
	if err := cfg.Validate(); err != nil {
		return Resources{}, fmt.Errorf("translate: invalid IR: %w", err)
	}
	var r Resources
	for _, s := range cfg.Services {
		l, err := APIListener(s)
		if err != nil {
			return Resources{}, err
		}
		r.Listeners = append(r.Listeners, l)
		r.Routes = append(r.Routes, RouteConfiguration(s))
	}
	for _, c := range cfg.Clusters {
		r.Clusters = append(r.Clusters, Cluster(c))
	}
	for _, e := range cfg.Endpoints {
		r.Endpoints = append(r.Endpoints, LoadAssignment(e))
	}
	sort.Slice(r.Listeners, func(a, b int) bool { return r.Listeners[a].Name < r.Listeners[b].Name })
	sort.Slice(r.Routes, func(a, b int) bool { return r.Routes[a].Name < r.Routes[b].Name })
	sort.Slice(r.Clusters, func(a, b int) bool { return r.Clusters[a].Name < r.Clusters[b].Name })
	sort.Slice(r.Endpoints, func(a, b int) bool { return r.Endpoints[a].ClusterName < r.Endpoints[b].ClusterName })
	return r, nil
}

// adsSource points a resource at the ADS stream it came from.
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// APIListener is the listener a proxyless gRPC client asks for when it dials
// xds:///<service>: an api_listener whose HTTP connection manager fetches the
// route configuration of the same name over RDS. gRPC rejects it without the
// router filter ("http filters list is empty").
func APIListener(s ir.Service) (*listenerv3.Listener, error) {
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, fmt.Errorf("translate: listener %s: router filter: %w", s.Name, err)
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: s.Name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: s.Name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	}
	anyHCM, err := anypb.New(hcm)
	if err != nil {
		return nil, fmt.Errorf("translate: listener %s: connection manager: %w", s.Name, err)
	}
	return &listenerv3.Listener{
		Name:        s.Name,
		ApiListener: &listenerv3.ApiListener{ApiListener: anyHCM},
	}, nil
}

// RouteConfiguration routes the requests that carry a matched header to
// that match's cluster, and every other request to the weighted clusters.
// The mirror is left out: gRPC-Go ignores request_mirror_policies, and a
// policy nobody applies would only mislead whoever reads the config.
func RouteConfiguration(s ir.Service) *routev3.RouteConfiguration {
	action := &routev3.RouteAction{}
	if len(s.Routes) == 1 {
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: s.Routes[0].Cluster}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, r := range s.Routes {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
				Name:   r.Cluster,
				Weight: wrapperspb.UInt32(r.Weight),
			})
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	var routes []*routev3.Route
	for _, m := range s.Matches {
		routes = append(routes, &routev3.Route{
			Match: headerMatch(m),
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: m.Cluster},
			}},
		})
	}
	routes = append(routes, &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: action},
	})
	return &routev3.RouteConfiguration{
		Name: s.Name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name: s.Name,
			// The route configuration is per service, so any authority the
			// client dials (with or without a port) matches.
			Domains: []string{"*"},
			Routes:  routes,
		}},
	}
}

// headerMatch matches every path whose request carries the header with
// exactly the value. It uses string_match, which Envoy and gRPC-Go both
// read, rather than the deprecated exact_match.
func headerMatch(m ir.HeaderRoute) *routev3.RouteMatch {
	return &routev3.RouteMatch{
		PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
		Headers: []*routev3.HeaderMatcher{{
			Name: m.Header,
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m.Value},
			}},
		}},
	}
}

// Cluster is an EDS cluster fed over ADS.
func Cluster(c ir.Cluster) *clusterv3.Cluster {
	lb := clusterv3.Cluster_ROUND_ROBIN
	if c.LBPolicy == ir.LeastRequest {
		lb = clusterv3.Cluster_LEAST_REQUEST
	}
	return &clusterv3.Cluster{
		Name:                 c.Name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   adsSource(),
			ServiceName: c.Name,
		},
		ConnectTimeout: durationpb.New(connectTimeout(c.ConnectTimeoutMs)),
		LbPolicy:       lb,
	}
}

// LoadAssignment is the EDS resource of a cluster. Every locality carries a
// weight (>= 1, checked by ir.Validate): gRPC drops localities without one.
func LoadAssignment(e ir.ClusterEndpoints) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: e.Cluster}
	for _, l := range e.Localities {
		le := &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Region: l.Region, Zone: l.Zone},
			LoadBalancingWeight: wrapperspb.UInt32(l.Weight),
		}
		for _, ep := range l.Endpoints {
			le.LbEndpoints = append(le.LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Protocol:      corev3.SocketAddress_TCP,
						Address:       ep.Address,
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: ep.Port},
					}}},
				}},
				HealthStatus: corev3.HealthStatus_HEALTHY,
			})
		}
		cla.Endpoints = append(cla.Endpoints, le)
	}
	return cla
}

// connectTimeout is the cluster's timeout, or ir.DefaultConnectTimeoutMs.
func connectTimeout(ms uint32) time.Duration {
	if ms == 0 {
		ms = ir.DefaultConnectTimeoutMs
	}
	return time.Duration(ms) * time.Millisecond
}
