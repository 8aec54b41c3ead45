// Package ir is the small, serialisable model of what signalbox serves over
// xDS. xds/build produces it from the catalog and the rollout plans;
// xds/translate turns it into Envoy resources. Keeping this step explicit lets
// golden files pin the translation and lets the server diff cheap values
// instead of protos.
package ir

import (
	"errors"
	"fmt"
	"net"
	"strings"
)

// Config is everything signalbox serves, keyed by what it is built from.
type Config struct {
	// Services are the proxyless gRPC targets: one API listener and one route
	// configuration per service, named after the service.
	Services []Service `json:"services,omitempty"`
	// Clusters are every upstream cluster: one per service and one per
	// version subset of it.
	Clusters []Cluster `json:"clusters,omitempty"`
	// Endpoints are the load assignments, one per cluster, same names.
	Endpoints []ClusterEndpoints `json:"endpoints,omitempty"`
}

// Service is a routing target reached as xds:///<Name>.
type Service struct {
	Name string `json:"name"`
	// Routes are the weighted destinations of the default route. A single
	// destination with weight 0 routes everything there.
	Routes []WeightedCluster `json:"routes"`
	// Matches are header routes, tried in order before the default route.
	Matches []HeaderRoute `json:"matches,omitempty"`
	// Mirror shadows the default route's requests. Only sidecars get it:
	// gRPC-Go does not mirror, so the proxyless route leaves it out.
	Mirror *Mirror `json:"mirror,omitempty"`
}

// HeaderRoute sends requests whose Header equals Value to Cluster.
type HeaderRoute struct {
	// Header is a lower-case header name (gRPC metadata key).
	Header  string `json:"header"`
	Value   string `json:"value"`
	Cluster string `json:"cluster"`
}

// Mirror copies Percent of a route's requests to Cluster; Envoy discards
// the copies' responses.
type Mirror struct {
	Cluster string `json:"cluster"`
	// Percent is in (0, 100], to a millionth of the requests.
	Percent float64 `json:"percent"`
}

// WeightedCluster is one destination of a route.
type WeightedCluster struct {
	Cluster string `json:"cluster"`
	Weight  uint32 `json:"weight"`
}

// LBPolicy is a cluster's load-balancing policy.
type LBPolicy string

const (
	RoundRobin   LBPolicy = "ROUND_ROBIN"
	LeastRequest LBPolicy = "LEAST_REQUEST"
)

// Cluster is an EDS cluster for one service, or one version subset of it.
type Cluster struct {
	Name    string `json:"name"`
	Service string `json:"service"`
	// Subset is the version subset, or "" for every instance of the service.
	Subset   string   `json:"subset,omitempty"`
	LBPolicy LBPolicy `json:"lbPolicy,omitempty"`
	// ConnectTimeoutMs is 0 for DefaultConnectTimeoutMs.
	ConnectTimeoutMs uint32 `json:"connectTimeoutMs,omitempty"`
}

// DefaultConnectTimeoutMs is a cluster's connect timeout when none is set.
const DefaultConnectTimeoutMs = 2000

// ClusterEndpoints is the load assignment of one cluster, grouped by locality.
type ClusterEndpoints struct {
	Cluster    string     `json:"cluster"`
	Localities []Locality `json:"localities,omitempty"`
}

// Locality is a group of endpoints in one region (datacenter) and zone.
type Locality struct {
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// Weight must be >= 1: gRPC clients silently drop weightless localities.
	Weight    uint32     `json:"weight"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one routable instance.
type Endpoint struct {
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	// Instance is the Consul service ID, kept for debugging and attribution.
	Instance string `json:"instance,omitempty"`
}

// ClusterName names the cluster of a service subset. Names encode the service
// and the subset so that telemetry that carries the cluster name can be
// attributed: "outbound|<service>" for every instance, and
// "outbound|<service>|<subset>" for one version subset. Consul service names
// cannot contain '|'.
func ClusterName(service, subset string) string {
	if subset == "" {
		return "outbound|" + service
	}
	return "outbound|" + service + "|" + subset
}

// ParseClusterName is the inverse of ClusterName.
func ParseClusterName(name string) (service, subset string, ok bool) {
	rest, found := strings.CutPrefix(name, "outbound|")
	if !found || rest == "" {
		return "", "", false
	}
	service, subset, _ = strings.Cut(rest, "|")
	if service == "" {
		return "", "", false
	}
	return service, subset, true
}

// Validate checks the invariants translate relies on: names present and
// unique, every route, match and mirror target a known cluster, header
// matches complete and unique, mirror shares in range, locality weights >= 1,
// ports and addresses valid.
func (c *Config) Validate() error {
	var errs []error
	clusters := map[string]bool{}
	for _, cl := range c.Clusters {
		if cl.Name == "" {
			errs = append(errs, errors.New("cluster with empty name"))
			continue
		}
		if clusters[cl.Name] {
			errs = append(errs, fmt.Errorf("cluster %q: defined twice", cl.Name))
		}
		clusters[cl.Name] = true
	}
	services := map[string]bool{}
	for _, s := range c.Services {
		if s.Name == "" {
			errs = append(errs, errors.New("service with empty name"))
			continue
		}
		if services[s.Name] {
			errs = append(errs, fmt.Errorf("service %q: defined twice", s.Name))
		}
		services[s.Name] = true
		if len(s.Routes) == 0 {
			errs = append(errs, fmt.Errorf("service %q: no route destination", s.Name))
		}
		var total uint64
		for _, r := range s.Routes {
			if !clusters[r.Cluster] {
				errs = append(errs, fmt.Errorf("service %q: route to unknown cluster %q", s.Name, r.Cluster))
			}
			total += uint64(r.Weight)
		}
		if len(s.Routes) > 1 && total == 0 {
			errs = append(errs, fmt.Errorf("service %q: weighted routes add up to 0", s.Name))
		}
		errs = append(errs, validateMatches(s.Name, s.Matches, s.Mirror, clusters)...)
	}
	eps := map[string]bool{}
	for _, e := range c.Endpoints {
		if !clusters[e.Cluster] {
			errs = append(errs, fmt.Errorf("endpoints for unknown cluster %q", e.Cluster))
		}
		if eps[e.Cluster] {
			errs = append(errs, fmt.Errorf("endpoints for cluster %q: defined twice", e.Cluster))
		}
		eps[e.Cluster] = true
		for _, l := range e.Localities {
			if l.Weight == 0 {
				errs = append(errs, fmt.Errorf("endpoints for cluster %q: locality %s/%s has weight 0", e.Cluster, l.Region, l.Zone))
			}
			for _, ep := range l.Endpoints {
				// Envoy only accepts IP addresses in EDS endpoints.
				if net.ParseIP(ep.Address) == nil {
					errs = append(errs, fmt.Errorf("endpoints for cluster %q: bad address %q", e.Cluster, ep.Address))
				}
				if ep.Port == 0 || ep.Port > 65535 {
					errs = append(errs, fmt.Errorf("endpoints for cluster %q: bad port %d for %s", e.Cluster, ep.Port, ep.Address))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// validateMatches checks a service's header routes and mirror against the
// cluster names that exist.
func validateMatches(service string, matches []HeaderRoute, mirror *Mirror, clusters map[string]bool) []error {
	var errs []error
	type key struct{ header, value string }
	seen := map[key]bool{}
	for _, m := range matches {
		if m.Header == "" || m.Header != strings.ToLower(m.Header) {
			errs = append(errs, fmt.Errorf("service %q: header match on %q: want a non-empty lower-case name", service, m.Header))
		}
		if m.Value == "" {
			errs = append(errs, fmt.Errorf("service %q: header match on %q: empty value", service, m.Header))
		}
		// A second route for the same header and value could never be taken.
		if k := (key{m.Header, m.Value}); seen[k] {
			errs = append(errs, fmt.Errorf("service %q: header match %s=%q: defined twice", service, m.Header, m.Value))
		} else {
			seen[k] = true
		}
		if !clusters[m.Cluster] {
			errs = append(errs, fmt.Errorf("service %q: header match %s=%q to unknown cluster %q", service, m.Header, m.Value, m.Cluster))
		}
	}
	if mirror != nil {
		if !clusters[mirror.Cluster] {
			errs = append(errs, fmt.Errorf("service %q: mirror to unknown cluster %q", service, mirror.Cluster))
		}
		// Written so that NaN fails too.
		if !(mirror.Percent > 0 && mirror.Percent <= 100) {
			errs = append(errs, fmt.Errorf("service %q: mirror percent %v: want (0, 100]", service, mirror.Percent))
		}
	}
	return errs
}
