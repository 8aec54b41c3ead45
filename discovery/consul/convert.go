package consul

import (
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/signalbox/signalbox/discovery"
)

// zoneKey is the service or node meta key that names an instance's zone.
const zoneKey = "zone"

// toService converts one /v1/health/service answer into a discovery.Service.
// Entries without a service are skipped.
func toService(name string, entries []*api.ServiceEntry) *discovery.Service {
	inst := make([]discovery.Instance, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		inst = append(inst, toInstance(e))
	}
	return discovery.NewService(name, inst)
}

// toInstance converts one health entry. It copies everything it keeps, so the
// result shares no memory with the entry.
func toInstance(e *api.ServiceEntry) discovery.Instance {
	svc := e.Service
	node := e.Node
	if node == nil {
		node = &api.Node{}
	}
	in := discovery.Instance{
		ID:         svc.ID,
		Node:       node.Node,
		Address:    svc.Address,
		Port:       svc.Port,
		Health:     aggregateHealth(e.Checks),
		Datacenter: node.Datacenter,
	}
	if in.Address == "" {
		in.Address = node.Address
	}
	if len(svc.Tags) > 0 {
		in.Tags = slices.Clone(svc.Tags)
	}
	if len(svc.Meta) > 0 {
		in.Meta = maps.Clone(svc.Meta)
	}
	in.Kind = string(svc.Kind)
	if p := svc.Proxy; p != nil && svc.Kind == api.ServiceKindConnectProxy {
		in.Proxy = &discovery.Proxy{
			DestinationServiceName: p.DestinationServiceName,
			DestinationServiceID:   p.DestinationServiceID,
			LocalServiceAddress:    p.LocalServiceAddress,
			LocalServicePort:       p.LocalServicePort,
		}
		for _, u := range p.Upstreams {
			// Only service upstreams: prepared queries are not routed.
			if u.DestinationType != "" && u.DestinationType != api.UpstreamDestTypeService {
				continue
			}
			in.Proxy.Upstreams = append(in.Proxy.Upstreams, discovery.Upstream{
				DestinationName:  u.DestinationName,
				LocalBindAddress: u.LocalBindAddress,
				LocalBindPort:    u.LocalBindPort,
			})
		}
	}
	in.Version = discovery.VersionOf(in.Tags, in.Meta)
	in.Zone = strings.TrimSpace(svc.Meta[zoneKey])
	if in.Zone == "" {
		in.Zone = strings.TrimSpace(node.Meta[zoneKey])
	}
	return in
}

// aggregateHealth folds the node and service checks of one instance into one
// Health: a critical maintenance check wins, then any critical check, then
// any warning; no checks at all is Passing (Consul's own reading). A status
// Consul does not document counts as critical, so an unknown state is never
// routable.
func aggregateHealth(checks api.HealthChecks) discovery.Health {
	h := discovery.Passing
	for _, c := range checks {
		if c == nil {
			continue
		}
		switch c.Status {
		case api.HealthPassing:
		case api.HealthWarning:
			h = max(h, discovery.Warning)
		case api.HealthMaint:
			return discovery.Maintenance
		default: // api.HealthCritical and anything unknown
			if isMaintenanceCheck(c.CheckID) {
				return discovery.Maintenance
			}
			h = max(h, discovery.Critical)
		}
	}
	return h
}

// isMaintenanceCheck reports whether id is the check Consul adds for node or
// service maintenance mode.
func isMaintenanceCheck(id string) bool {
	return id == api.NodeMaint || strings.HasPrefix(id, api.ServiceMaintPrefix)
}
