package build

import (
	"time"

	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/ir"
)

func inst(id, version, zone string, h discovery.Health) discovery.Instance {
	return discovery.Instance{ID: id, Node: "n-" + id, Address: "10.0.0." + id[len(id)-1:], Port: 8080, Version: version, Datacenter: "dc1", Zone: zone, Health: h}
}

func TestServiceRouting(t *testing.T) {
	svc := discovery.NewService("greeter", []discovery.Instance{
		inst("a1", "v1", "", discovery.Passing),
		inst("a2", "v1", "", discovery.Warning),
		inst("b3", "v2", "", discovery.Passing),
		inst("c4", "v2", "", discovery.Critical),
		inst("d5", "v3", "", discovery.Maintenance),
	})
	cases := []struct {
		name       string
		plan       *rollout.Plan
		pol        Policy
		wantRoutes []ir.WeightedCluster
		// endpoints by cluster name: instance ids
		wantEndpoints map[string][]string
	}{
		{
			name:       "no plan spreads over every routable instance",
			pol:        Policy{AllowWarning: true},
			wantRoutes: []ir.WeightedCluster{{Cluster: "outbound|greeter", Weight: 1}},
			wantEndpoints: map[string][]string{
				"outbound|greeter":    {"a1", "a2", "b3"},
				"outbound|greeter|v1": {"a1", "a2"},
				"outbound|greeter|v2": {"b3"},
				"outbound|greeter|v3": nil,
			},
		},
		{
			name:       "warning instances left out when not allowed",
			wantRoutes: []ir.WeightedCluster{{Cluster: "outbound|greeter", Weight: 1}},
			wantEndpoints: map[string][]string{
				"outbound|greeter":    {"a1", "b3"},
				"outbound|greeter|v1": {"a1"},
				"outbound|greeter|v2": {"b3"},
				"outbound|greeter|v3": nil,
			},
		},
		{
			name: "plan weights, zero weight left out of the route",
			plan: &rollout.Plan{Service: "greeter", Weights: []rollout.SubsetWeight{{Subset: "v2", Weight: 10}, {Subset: "v1", Weight: 90}, {Subset: "v3", Weight: 0}}},
			pol:  Policy{AllowWarning: true},
			wantRoutes: []ir.WeightedCluster{
				{Cluster: "outbound|greeter|v1", Weight: 90},
				{Cluster: "outbound|greeter|v2", Weight: 10},
			},
		},
		{
			name:       "plan naming a subset with no instances still gets its cluster",
			plan:       &rollout.Plan{Service: "greeter", Weights: []rollout.SubsetWeight{{Subset: "v9", Weight: 100}}},
			wantRoutes: []ir.WeightedCluster{{Cluster: "outbound|greeter|v9", Weight: 100}},
			wantEndpoints: map[string][]string{
				"outbound|greeter|v9": nil,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Service(svc, tc.plan, tc.pol, nil)
			if diff := cmp.Diff(tc.wantRoutes, got.Service.Routes); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			cfg := &ir.Config{Services: []ir.Service{got.Service}, Clusters: got.Clusters, Endpoints: got.Endpoints}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("built IR does not validate: %v", err)
			}
			byCluster := map[string][]string{}
			for _, e := range got.Endpoints {
				var ids []string
				for _, l := range e.Localities {
					for _, ep := range l.Endpoints {
						ids = append(ids, ep.Instance)
					}
				}
				byCluster[e.Cluster] = ids
			}
			for cluster, want := range tc.wantEndpoints {
				ids, ok := byCluster[cluster]
				if !ok {
					t.Errorf("no cluster %s; have %v", cluster, byCluster)
					continue
				}
				if diff := cmp.Diff(want, ids); diff != "" {
					t.Errorf("endpoints of %s (-want +got):\n%s", cluster, diff)
				}
			}
		})
	}
}

func TestLocalitiesWeighPerInstance(t *testing.T) {
	svc := discovery.NewService("api", []discovery.Instance{
		inst("a1", "v1", "zone-b", discovery.Passing),
		inst("a2", "v1", "zone-a", discovery.Passing),
		inst("a3", "v1", "zone-b", discovery.Passing),
	})
	got := Service(svc, nil, Policy{}, nil)
	all := got.Endpoints[0]
	if all.Cluster != "outbound|api" {
		t.Fatalf("first endpoints are %s, want outbound|api", all.Cluster)
	}
	want := []struct {
		zone   string
		weight uint32
	}{{"zone-a", 1}, {"zone-b", 2}}
	if len(all.Localities) != len(want) {
		t.Fatalf("localities: %+v", all.Localities)
	}
	for i, w := range want {
		l := all.Localities[i]
		if l.Zone != w.zone || l.Weight != w.weight || l.Region != "dc1" {
			t.Errorf("locality %d = %s/%s weight %d, want dc1/%s weight %d", i, l.Region, l.Zone, l.Weight, w.zone, w.weight)
		}
	}
}

func TestUnusableRegistrationsAreReportedNotServed(t *testing.T) {
	bad := inst("a1", "v1", "", discovery.Passing)
	bad.Address = "db.internal"
	port := inst("a2", "v1", "", discovery.Passing)
	port.Port = 0
	got := Service(discovery.NewService("db", []discovery.Instance{bad, port, inst("a3", "v1", "", discovery.Passing)}), nil, Policy{}, nil)
	if len(got.Warnings) != 2 {
		t.Fatalf("warnings: %q, want one per unusable instance", got.Warnings)
	}
	for _, e := range got.Endpoints {
		for _, l := range e.Localities {
			for _, ep := range l.Endpoints {
				if ep.Instance != "a3" {
					t.Errorf("%s serves unusable instance %s", e.Cluster, ep.Instance)
				}
			}
		}
	}
}

func TestConfigIsDeterministic(t *testing.T) {
	cat := discovery.NewCatalog(time.Time{},
		discovery.NewService("b", []discovery.Instance{inst("b1", "v1", "", discovery.Passing)}),
		discovery.NewService("a", []discovery.Instance{inst("a1", "v2", "z", discovery.Passing), inst("a2", "v1", "y", discovery.Passing)}),
	)
	first := Config(cat, nil, Policy{})
	for i := 0; i < 10; i++ {
		if diff := cmp.Diff(first, Config(cat, nil, Policy{})); diff != "" {
			t.Fatalf("Config differs between runs:\n%s", diff)
		}
	}
	if first.Services[0].Name != "a" {
		t.Fatalf("services not sorted: %s first", first.Services[0].Name)
	}
}

func TestServiceMatchesAndMirror(t *testing.T) {
	svc := discovery.NewService("greeter", []discovery.Instance{
		inst("a1", "v1", "", discovery.Passing),
		inst("b2", "v2", "", discovery.Passing),
	})
	preview := rollout.HeaderRoute{Header: "x-signalbox-preview", Value: "1", Subset: "v2"}
	cases := []struct {
		name        string
		plan        rollout.Plan
		wantRoutes  []ir.WeightedCluster
		wantMatches []ir.HeaderRoute
		wantMirror  *ir.Mirror
		// endpoints by cluster name: instance ids; the cluster must exist.
		wantEndpoints map[string][]string
		wantWarnings  []string
	}{
		{
			name:       "preview: weight-0 candidate reached by a match, with its endpoints",
			plan:       rollout.Plan{Service: "greeter", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 100}, {Subset: "v2", Weight: 0}}, Matches: []rollout.HeaderRoute{preview}},
			wantRoutes: []ir.WeightedCluster{{Cluster: "outbound|greeter|v1", Weight: 100}},
			wantMatches: []ir.HeaderRoute{
				{Header: "x-signalbox-preview", Value: "1", Cluster: "outbound|greeter|v2"},
			},
			wantEndpoints: map[string][]string{"outbound|greeter|v1": {"a1"}, "outbound|greeter|v2": {"b2"}},
		},
		{
			name: "subsets only a match or the mirror names get clusters",
			plan: rollout.Plan{Service: "greeter", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 1}},
				Matches: []rollout.HeaderRoute{{Header: "x-tenant", Value: "beta", Subset: "v8"}},
				Mirror:  &rollout.Mirror{Subset: "v9", Percent: 0.5}},
			wantRoutes:    []ir.WeightedCluster{{Cluster: "outbound|greeter|v1", Weight: 1}},
			wantMatches:   []ir.HeaderRoute{{Header: "x-tenant", Value: "beta", Cluster: "outbound|greeter|v8"}},
			wantMirror:    &ir.Mirror{Cluster: "outbound|greeter|v9", Percent: 0.5},
			wantEndpoints: map[string][]string{"outbound|greeter|v8": nil, "outbound|greeter|v9": nil},
		},
		{
			name: "matches in normalized order, header names lower-cased",
			plan: rollout.Plan{Service: "greeter", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 90}, {Subset: "v2", Weight: 10}},
				Matches: []rollout.HeaderRoute{{Header: "x-user-group", Value: "beta", Subset: "v2"}, {Header: "X-Signalbox-Preview", Value: "1", Subset: "v2"}}},
			wantRoutes: []ir.WeightedCluster{{Cluster: "outbound|greeter|v1", Weight: 90}, {Cluster: "outbound|greeter|v2", Weight: 10}},
			wantMatches: []ir.HeaderRoute{
				{Header: "x-signalbox-preview", Value: "1", Cluster: "outbound|greeter|v2"},
				{Header: "x-user-group", Value: "beta", Cluster: "outbound|greeter|v2"},
			},
		},
		{
			name: "unusable matches and mirror are left out with a warning, not served",
			plan: rollout.Plan{Service: "greeter", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 1}},
				Matches: []rollout.HeaderRoute{
					preview,
					{Header: "x-signalbox-preview", Value: "1", Subset: "v3"},
					{Header: "grpc-timeout", Value: "1S", Subset: "v2"},
					{Header: "x-a", Value: "", Subset: "v2"},
				},
				Mirror: &rollout.Mirror{Subset: "v4", Percent: 150}},
			wantRoutes:  []ir.WeightedCluster{{Cluster: "outbound|greeter|v1", Weight: 1}},
			wantMatches: []ir.HeaderRoute{{Header: "x-signalbox-preview", Value: "1", Cluster: "outbound|greeter|v2"}},
			wantWarnings: []string{
				`plan of greeter: header match left out: header "grpc-timeout": grpc- headers are reserved by gRPC`,
				`plan of greeter: header match left out: header x-a: value is empty; give the exact value to match`,
				`plan of greeter: header match x-signalbox-preview="1" to v3 left out: it is matched to another subset first`,
				`plan of greeter: mirror left out: percent 150: want more than 0 (at least 0.0001) and at most 100`,
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Service(svc, &tc.plan, Policy{}, nil)
			if diff := cmp.Diff(tc.wantRoutes, got.Service.Routes); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantMatches, got.Service.Matches); diff != "" {
				t.Errorf("matches (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantMirror, got.Service.Mirror); diff != "" {
				t.Errorf("mirror (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWarnings, got.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			cfg := &ir.Config{Services: []ir.Service{got.Service}, Clusters: got.Clusters, Endpoints: got.Endpoints}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("built IR does not validate: %v", err)
			}
			for _, c := range []string{"outbound|greeter|v3", "outbound|greeter|v4"} {
				for _, have := range got.Clusters {
					if have.Name == c {
						t.Errorf("cluster %s built for a left-out match or mirror", c)
					}
				}
			}
			byCluster := map[string][]string{}
			for _, e := range got.Endpoints {
				byCluster[e.Cluster] = []string{}
				for _, l := range e.Localities {
					for _, ep := range l.Endpoints {
						byCluster[e.Cluster] = append(byCluster[e.Cluster], ep.Instance)
					}
				}
			}
			for cluster, want := range tc.wantEndpoints {
				ids, ok := byCluster[cluster]
				if !ok {
					t.Errorf("no cluster %s; have %v", cluster, byCluster)
					continue
				}
				if diff := cmp.Diff(want, ids, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("endpoints of %s (-want +got):\n%s", cluster, diff)
				}
			}
		})
	}
}

func TestSidecarUpstreamCarriesMatchesAndMirror(t *testing.T) {
	cat := discovery.NewCatalog(time.Time{},
		discovery.NewService("web", []discovery.Instance{inst("w1", "v1", "", discovery.Passing)}),
		discovery.NewService("api", []discovery.Instance{inst("a1", "v1", "", discovery.Passing), inst("a2", "v2", "", discovery.Passing)}),
	)
	plans := map[string]rollout.Plan{"api": {Service: "api", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 100}},
		Matches: []rollout.HeaderRoute{{Header: "x-signalbox-preview", Value: "1", Subset: "v2"}},
		Mirror:  &rollout.Mirror{Subset: "v3", Percent: 10}}}
	sc := Sidecar(cat, plans, Policy{}, nil, Node{ID: "web-1", Service: "web", AppPort: 8080, Upstreams: []string{"api"}})
	if len(sc.Outbound.VirtualHosts) != 1 {
		t.Fatalf("virtual hosts: %+v", sc.Outbound.VirtualHosts)
	}
	vh := sc.Outbound.VirtualHosts[0]
	if diff := cmp.Diff([]ir.HeaderRoute{{Header: "x-signalbox-preview", Value: "1", Cluster: "outbound|api|v2"}}, vh.Matches); diff != "" {
		t.Errorf("matches (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&ir.Mirror{Cluster: "outbound|api|v3", Percent: 10}, vh.Mirror); diff != "" {
		t.Errorf("mirror (-want +got):\n%s", diff)
	}
	var names []string
	for _, c := range sc.Clusters {
		names = append(names, c.Name)
	}
	if diff := cmp.Diff([]string{"outbound|api", "outbound|api|v1", "outbound|api|v2", "outbound|api|v3"}, names); diff != "" {
		t.Errorf("sidecar clusters (-want +got):\n%s", diff)
	}
}
