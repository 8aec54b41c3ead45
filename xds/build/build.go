// Package build turns the catalog and the rollout plans into the xDS IR. It is
// pure: no I/O, no clock, deterministic output, so that every routing rule is
// tested with plain tables.
//
// Routing rule: a service with no Plan sends traffic to the cluster
// "outbound|<service>", which holds every routable instance of every version,
// so requests spread evenly over all of them. A service with a Plan sends
// traffic to the version-subset clusters "outbound|<service>|<subset>" with
// the Plan's weights; subsets with weight 0 are left out of the route. The
// Plan's header matches come before that weighted route, each to its
// subset's cluster, and its mirror rides on the weighted route. A subset
// that only a match or the mirror names still gets its cluster and
// endpoints.
package build

import (
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/ir"
)

// Policy holds the build settings that are not per service.
type Policy struct {
	// AllowWarning makes instances whose checks warn routable.
	AllowWarning bool
	// ConnectTimeoutMs of every cluster; 0 means ir.DefaultConnectTimeoutMs.
	ConnectTimeoutMs uint32
	// Services gives each service's telemetry and traffic policy for
	// sidecars; nil means DefaultServicePolicy.
	Services ServicePolicy
	// Built, when set, returns a service's build from the same catalog and
	// plans, so that sidecars reuse the server loop's per-service builds
	// instead of redoing them per sidecar.
	Built func(service string) (ServiceConfig, bool)
}

// ServiceConfig is the part of the IR that one service contributes.
type ServiceConfig struct {
	Service   ir.Service
	Clusters  []ir.Cluster
	Endpoints []ir.ClusterEndpoints
	// Warnings are instances left out and why, for the debug view.
	Warnings []string
}

// Service builds the IR of one service. plan may be nil. An instance fronted
// by a sidecar (a Consul registration in proxies, or the meta
// ir.InstanceMetaInboundPort) is reached through its sidecar, and only while both are
// routable.
func Service(svc *discovery.Service, plan *rollout.Plan, pol Policy, proxies *Proxies) ServiceConfig {
	timeout := pol.ConnectTimeoutMs
	var out ServiceConfig
	bySubset := map[string][]discovery.Instance{}
	var all []discovery.Instance
	for _, in := range svc.Instances {
		if !in.Routable(pol.AllowWarning) {
			continue
		}
		if front, ok := proxies.Fronting(in); ok {
			if !front.Routable(pol.AllowWarning) {
				continue
			}
			in.Address, in.Port = front.Address, front.Port
		} else if v, ok := in.Meta[ir.InstanceMetaInboundPort]; ok {
			p, err := strconv.Atoi(v)
			if err != nil || p <= 0 || p > 65535 {
				out.Warnings = append(out.Warnings, fmt.Sprintf("instance %s of %s: meta %s=%q is not a port; calling the app directly", in.ID, svc.Name, ir.InstanceMetaInboundPort, v))
			} else {
				in.Port = p
			}
		}
		if net.ParseIP(in.Address) == nil {
			out.Warnings = append(out.Warnings, fmt.Sprintf("instance %s of %s: address %q is not an IP address; left out", in.ID, svc.Name, in.Address))
			continue
		}
		if in.Port <= 0 || in.Port > 65535 {
			out.Warnings = append(out.Warnings, fmt.Sprintf("instance %s of %s: port %d out of range; left out", in.ID, svc.Name, in.Port))
			continue
		}
		all = append(all, in)
		bySubset[in.Version] = append(bySubset[in.Version], in)
	}
	// Subset clusters exist for every version present in the catalog, routable
	// or not, and for every subset the plan names: a route never points at a
	// missing cluster, and a subset that comes back needs no new cluster.
	subsets := map[string]bool{}
	for _, v := range svc.Versions() {
		subsets[v] = true
	}
	var routes []ir.WeightedCluster
	var matches []ir.HeaderRoute
	var mirror *ir.Mirror
	if plan != nil {
		p := plan.Normalized()
		for _, w := range p.Weights {
			subsets[w.Subset] = true
			routes = append(routes, ir.WeightedCluster{Cluster: ir.ClusterName(svc.Name, w.Subset), Weight: w.Weight})
		}
		matches, mirror = planMatches(svc.Name, p, subsets, &out.Warnings)
	}
	if len(routes) == 0 {
		routes = []ir.WeightedCluster{{Cluster: ir.ClusterName(svc.Name, ""), Weight: 1}}
	}
	out.Service = ir.Service{Name: svc.Name, Routes: routes, Matches: matches, Mirror: mirror}

	names := make([]string, 0, len(subsets))
	for s := range subsets {
		names = append(names, s)
	}
	sort.Strings(names)
	out.Clusters = append(out.Clusters, cluster(svc.Name, "", timeout))
	out.Endpoints = append(out.Endpoints, endpoints(ir.ClusterName(svc.Name, ""), all))
	for _, s := range names {
		out.Clusters = append(out.Clusters, cluster(svc.Name, s, timeout))
		out.Endpoints = append(out.Endpoints, endpoints(ir.ClusterName(svc.Name, s), bySubset[s]))
	}
	return out
}

// planMatches turns a normalized plan's header matches and mirror into IR,
// adding the subsets they name to subsets (they need clusters even at weight
// 0). The server does not validate plans, so what Envoy or gRPC would reject,
// or what could never be taken, is left out with a warning instead of
// failing the whole service.
func planMatches(service string, p rollout.Plan, subsets map[string]bool, warnings *[]string) ([]ir.HeaderRoute, *ir.Mirror) {
	var matches []ir.HeaderRoute
	type key struct{ header, value string }
	seen := map[key]bool{}
	for _, m := range p.Matches {
		if err := m.Validate(); err != nil {
			*warnings = append(*warnings, fmt.Sprintf("plan of %s: header match left out: %v", service, err))
			continue
		}
		k := key{m.Header, m.Value}
		if seen[k] {
			*warnings = append(*warnings, fmt.Sprintf("plan of %s: header match %s=%q to %s left out: it is matched to another subset first", service, m.Header, m.Value, m.Subset))
			continue
		}
		seen[k] = true
		subsets[m.Subset] = true
		matches = append(matches, ir.HeaderRoute{Header: m.Header, Value: m.Value, Cluster: ir.ClusterName(service, m.Subset)})
	}
	if m := p.Mirror; m != nil {
		if err := m.Validate(); err != nil {
			*warnings = append(*warnings, fmt.Sprintf("plan of %s: mirror left out: %v", service, err))
			return matches, nil
		}
		subsets[m.Subset] = true
		return matches, &ir.Mirror{Cluster: ir.ClusterName(service, m.Subset), Percent: m.Percent}
	}
	return matches, nil
}

// Config builds the whole IR. plans maps a service name to its plan.
func Config(cat *discovery.Catalog, plans map[string]rollout.Plan, pol Policy) *ir.Config {
	cfg := &ir.Config{}
	proxies := IndexProxies(cat)
	for _, name := range cat.Names() {
		if proxies.IsProxyService(name) {
			continue
		}
		svc, _ := cat.Service(name)
		var plan *rollout.Plan
		if p, ok := plans[name]; ok {
			plan = &p
		}
		sc := Service(svc, plan, pol, proxies)
		cfg.Services = append(cfg.Services, sc.Service)
		cfg.Clusters = append(cfg.Clusters, sc.Clusters...)
		cfg.Endpoints = append(cfg.Endpoints, sc.Endpoints...)
	}
	return cfg
}

func cluster(service, subset string, timeoutMs uint32) ir.Cluster {
	return ir.Cluster{
		Name:             ir.ClusterName(service, subset),
		Service:          service,
		Subset:           subset,
		LBPolicy:         ir.RoundRobin,
		ConnectTimeoutMs: timeoutMs,
	}
}

// endpoints groups instances by (datacenter, zone). A locality's weight is its
// number of endpoints, so that traffic spreads evenly per instance across
// localities (gRPC picks a locality by weight, then balances inside it).
func endpoints(clusterName string, instances []discovery.Instance) ir.ClusterEndpoints {
	type key struct{ region, zone string }
	groups := map[key][]ir.Endpoint{}
	for _, in := range instances {
		k := key{in.Datacenter, in.Zone}
		groups[k] = append(groups[k], ir.Endpoint{Address: in.Address, Port: uint32(in.Port), Instance: in.ID})
	}
	keys := make([]key, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if keys[a].region != keys[b].region {
			return keys[a].region < keys[b].region
		}
		return keys[a].zone < keys[b].zone
	})
	out := ir.ClusterEndpoints{Cluster: clusterName}
	for _, k := range keys {
		eps := groups[k]
		sort.Slice(eps, func(a, b int) bool {
			if eps[a].Address != eps[b].Address {
				return eps[a].Address < eps[b].Address
			}
			if eps[a].Port != eps[b].Port {
				return eps[a].Port < eps[b].Port
			}
			return eps[a].Instance < eps[b].Instance
		})
		out.Localities = append(out.Localities, ir.Locality{Region: k.region, Zone: k.zone, Weight: uint32(len(eps)), Endpoints: eps})
	}
	return out
}
