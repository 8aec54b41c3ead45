package consul

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/consul/api"

	"github.com/signalbox/signalbox/discovery"
)

func check(id, status string) *api.HealthCheck {
	return &api.HealthCheck{CheckID: id, Status: status}
}

func TestAggregateHealth(t *testing.T) {
	tests := []struct {
		name   string
		checks api.HealthChecks
		want   discovery.Health
	}{
		{"no checks", nil, discovery.Passing},
		{"all passing", api.HealthChecks{check("serfHealth", "passing"), check("service:a", "passing")}, discovery.Passing},
		{"one warning", api.HealthChecks{check("serfHealth", "passing"), check("service:a", "warning")}, discovery.Warning},
		{"critical beats warning", api.HealthChecks{check("x", "warning"), check("y", "critical"), check("z", "warning")}, discovery.Critical},
		{"node check critical", api.HealthChecks{check("serfHealth", "critical"), check("service:a", "passing")}, discovery.Critical},
		{"service maintenance", api.HealthChecks{check("service:a", "passing"), check("_service_maintenance:a", "critical")}, discovery.Maintenance},
		{"node maintenance", api.HealthChecks{check("_node_maintenance", "critical"), check("service:a", "passing")}, discovery.Maintenance},
		{"maintenance beats critical", api.HealthChecks{check("service:a", "critical"), check("_node_maintenance", "critical")}, discovery.Maintenance},
		{"maintenance beats critical (order)", api.HealthChecks{check("_service_maintenance:a", "critical"), check("service:a", "critical")}, discovery.Maintenance},
		{"passing maintenance-named check is just passing", api.HealthChecks{check("_node_maintenance", "passing")}, discovery.Passing},
		{"maintenance status", api.HealthChecks{check("x", "maintenance")}, discovery.Maintenance},
		{"unknown status is critical", api.HealthChecks{check("x", "bogus")}, discovery.Critical},
		{"empty status is critical", api.HealthChecks{check("x", "")}, discovery.Critical},
		{"nil check ignored", api.HealthChecks{nil, check("x", "warning")}, discovery.Warning},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := aggregateHealth(tt.checks); got != tt.want {
				t.Errorf("aggregateHealth = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestToInstance(t *testing.T) {
	node := func(addr string, meta map[string]string) *api.Node {
		return &api.Node{Node: "n1", Address: addr, Datacenter: "dc1", Meta: meta}
	}
	tests := []struct {
		name  string
		entry *api.ServiceEntry
		want  discovery.Instance
	}{
		{
			name: "service address, version from meta, zone from service meta",
			entry: &api.ServiceEntry{
				Node: node("10.0.0.1", map[string]string{"zone": "node-zone"}),
				Service: &api.AgentService{ID: "web-1", Service: "web", Address: "10.1.1.1", Port: 8080,
					Tags: []string{"version=v1", "x"}, Meta: map[string]string{"version": "v2", "zone": "z-a"}},
				Checks: api.HealthChecks{check("service:web-1", "passing")},
			},
			want: discovery.Instance{ID: "web-1", Node: "n1", Address: "10.1.1.1", Port: 8080, Health: discovery.Passing,
				Version: "v2", Tags: []string{"version=v1", "x"}, Meta: map[string]string{"version": "v2", "zone": "z-a"},
				Datacenter: "dc1", Zone: "z-a"},
		},
		{
			name: "node address fallback, version from tag, zone from node meta",
			entry: &api.ServiceEntry{
				Node:    node("10.0.0.1", map[string]string{"zone": "node-zone"}),
				Service: &api.AgentService{ID: "web-2", Service: "web", Port: 80, Tags: []string{"version=canary"}},
				Checks:  api.HealthChecks{check("service:web-2", "warning")},
			},
			want: discovery.Instance{ID: "web-2", Node: "n1", Address: "10.0.0.1", Port: 80, Health: discovery.Warning,
				Version: "canary", Tags: []string{"version=canary"}, Datacenter: "dc1", Zone: "node-zone"},
		},
		{
			name: "default version, no zone, empty tags and meta become nil",
			entry: &api.ServiceEntry{
				Node:    node("10.0.0.2", nil),
				Service: &api.AgentService{ID: "db", Service: "db", Port: 5432, Tags: []string{}, Meta: map[string]string{}},
				Checks:  api.HealthChecks{check("serfHealth", "critical")},
			},
			want: discovery.Instance{ID: "db", Node: "n1", Address: "10.0.0.2", Port: 5432, Health: discovery.Critical,
				Version: discovery.DefaultVersion, Datacenter: "dc1"},
		},
		{
			name: "blank service zone falls back to node zone",
			entry: &api.ServiceEntry{
				Node:    node("10.0.0.2", map[string]string{"zone": "b"}),
				Service: &api.AgentService{ID: "db", Service: "db", Meta: map[string]string{"zone": " "}},
			},
			want: discovery.Instance{ID: "db", Node: "n1", Address: "10.0.0.2", Health: discovery.Passing,
				Version: discovery.DefaultVersion, Meta: map[string]string{"zone": " "}, Datacenter: "dc1", Zone: "b"},
		},
		{
			name: "sidecar registration keeps its proxy and service upstreams only",
			entry: &api.ServiceEntry{
				Node: node("10.0.0.3", nil),
				Service: &api.AgentService{ID: "web-1-sidecar-proxy", Service: "web-sidecar-proxy", Kind: api.ServiceKindConnectProxy, Port: 21000,
					Proxy: &api.AgentServiceConnectProxyConfig{
						DestinationServiceName: "web", DestinationServiceID: "web-1", LocalServicePort: 8080,
						Upstreams: []api.Upstream{
							{DestinationName: "api", LocalBindPort: 9191},
							{DestinationType: api.UpstreamDestTypePreparedQuery, DestinationName: "geo-db", LocalBindPort: 9192},
						},
					}},
			},
			want: discovery.Instance{ID: "web-1-sidecar-proxy", Node: "n1", Address: "10.0.0.3", Port: 21000, Health: discovery.Passing,
				Version: discovery.DefaultVersion, Datacenter: "dc1", Kind: "connect-proxy",
				Proxy: &discovery.Proxy{DestinationServiceName: "web", DestinationServiceID: "web-1", LocalServicePort: 8080,
					Upstreams: []discovery.Upstream{{DestinationName: "api", LocalBindPort: 9191}}}},
		},
		{
			name:  "missing node",
			entry: &api.ServiceEntry{Service: &api.AgentService{ID: "x", Service: "x", Address: "1.2.3.4", Port: 1}},
			want:  discovery.Instance{ID: "x", Address: "1.2.3.4", Port: 1, Health: discovery.Passing, Version: discovery.DefaultVersion},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toInstance(tt.entry)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("toInstance (-want +got):\n%s", diff)
			}
		})
	}
}

func TestToInstanceCopies(t *testing.T) {
	e := &api.ServiceEntry{
		Node:    &api.Node{Node: "n"},
		Service: &api.AgentService{ID: "a", Tags: []string{"t"}, Meta: map[string]string{"k": "v"}},
	}
	in := toInstance(e)
	e.Service.Tags[0] = "changed"
	e.Service.Meta["k"] = "changed"
	if in.Tags[0] != "t" || in.Meta["k"] != "v" {
		t.Fatalf("instance shares memory with the entry: %+v", in)
	}
}

func TestToServiceSortsAndHashes(t *testing.T) {
	entry := func(id, node, status string) *api.ServiceEntry {
		return &api.ServiceEntry{
			Node:    &api.Node{Node: node, Address: "10.0.0.1"},
			Service: &api.AgentService{ID: id, Service: "web", Port: 80},
			Checks:  api.HealthChecks{check("service:"+id, status)},
		}
	}
	a := toService("web", []*api.ServiceEntry{entry("b", "n2", "passing"), entry("a", "n1", "passing"), nil, {Node: &api.Node{}}})
	b := toService("web", []*api.ServiceEntry{entry("a", "n1", "passing"), entry("b", "n2", "passing")})
	if a.Hash != b.Hash {
		t.Errorf("same instances in another order hash differently")
	}
	if got := []string{a.Instances[0].ID, a.Instances[1].ID}; !cmp.Equal(got, []string{"a", "b"}) || len(a.Instances) != 2 {
		t.Errorf("instances = %+v, want a, b", a.Instances)
	}
	c := toService("web", []*api.ServiceEntry{entry("a", "n1", "passing"), entry("b", "n2", "critical")})
	if c.Hash == b.Hash {
		t.Errorf("a health change did not change the hash")
	}
}
