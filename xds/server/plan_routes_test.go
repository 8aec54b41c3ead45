package server

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/e2e/adsclient"
	"github.com/signalbox/signalbox/e2e/demo"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/ir"
)

const previewHeader = "x-signalbox-preview"

// callsWith makes n calls carrying the metadata kv (name, value, ...) and
// tallies them.
func callsWith(t *testing.T, cc *grpc.ClientConn, n int, kv ...string) *demo.Tally {
	t.Helper()
	var tally demo.Tally
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		tally.Add(demo.Call(metadata.AppendToOutgoingContext(ctx, kv...), cc))
		cancel()
	}
	return &tally
}

// allOn fails the test unless every call of the tally succeeded on version.
func allOn(t *testing.T, what string, tally *demo.Tally, version string) {
	t.Helper()
	_, bv, total, failures, lastErr := tally.Snapshot()
	if failures > 0 || bv[version] != total {
		t.Fatalf("%s: want all %d calls on %s, got %s (last error: %v)", what, total, version, tally, lastErr)
	}
}

// servedRoute is the proxyless route configuration the server serves now.
func servedRoute(t *testing.T, s *Server, name string) *routev3.RouteConfiguration {
	t.Helper()
	res, ok := s.caches[resourcev3.RouteType].lc.GetResources()[name]
	if !ok {
		t.Fatalf("no route configuration %s served", name)
	}
	return res.(*routev3.RouteConfiguration)
}

// TestPreviewHeaderReachesWeightZeroCandidate is a blue-green preview with
// real gRPC xDS clients: weights 100/0 keep every call on the stable
// version, and only calls carrying x-signalbox-preview: 1 reach the
// candidate.
func TestPreviewHeaderReachesWeightZeroCandidate(t *testing.T) {
	h := newHarness(t, Options{})
	s1, s2, c1 := h.backend("stable-1", "v1"), h.backend("stable-2", "v1"), h.backend("candidate-1", "v2")
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{s1, s2, c1}))
	preview := rollout.Plan{
		Service: "greeter",
		Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 100}, {Subset: "v2", Weight: 0}},
		Matches: []rollout.HeaderRoute{{Header: previewHeader, Value: "1", Subset: "v2"}},
	}
	if err := preview.Validate(); err != nil {
		t.Fatal(err)
	}
	h.srv.SetPlans(map[string]rollout.Plan{"greeter": preview})
	// The client connects once the plan's route is served, so that every
	// route it ever holds has the match: a preview call that reaches v2
	// then says the route arrived, not that the plan-less route spread it.
	eventually(t, 5*time.Second, "the preview route is served", func() bool {
		res, ok := h.srv.caches[resourcev3.RouteType].lc.GetResources()["greeter"]
		return ok && len(res.(*routev3.RouteConfiguration).GetVirtualHosts()[0].GetRoutes()) == 2
	})
	cc := h.dial("client-preview", "greeter")
	eventually(t, 10*time.Second, "a preview call reaches the candidate", func() bool {
		_, bv, _, _, _ := callsWith(t, cc, 1, previewHeader, "1").Snapshot()
		return bv["v2"] == 1
	})
	allOn(t, "calls with the preview header", callsWith(t, cc, 200, previewHeader, "1"), "v2")
	allOn(t, "calls without it", calls(t, cc, 200), "v1")
	allOn(t, "calls with another value", callsWith(t, cc, 100, previewHeader, "2"), "v1")
	if n := h.backends["candidate-1"].Calls(); n < 201 {
		t.Fatalf("the candidate backend counted %d calls, want the 201 preview calls", n)
	}

	// The plan moves the preview to a version with no instance yet: its
	// cluster is served at once, and its first instance gets the preview
	// calls as soon as it registers.
	moved := preview
	moved.Matches = []rollout.HeaderRoute{{Header: previewHeader, Value: "1", Subset: "v3"}}
	h.srv.SetPlans(map[string]rollout.Plan{"greeter": moved})
	eventually(t, 5*time.Second, "the cluster of v3 is served before any v3 instance", func() bool {
		_, ok := h.srv.caches[resourcev3.ClusterType].lc.GetResources()["outbound|greeter|v3"]
		return ok && servedRoute(t, h.srv, "greeter").GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster() == "outbound|greeter|v3"
	})
	n1 := h.backend("next-1", "v3")
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{s1, s2, c1, n1}))
	eventually(t, 5*time.Second, "a preview call reaches v3", func() bool {
		_, bv, _, _, _ := callsWith(t, cc, 1, previewHeader, "1").Snapshot()
		return bv["v3"] == 1
	})
	allOn(t, "calls with the preview header after the move", callsWith(t, cc, 100, previewHeader, "1"), "v3")
	allOn(t, "calls without it after the move", calls(t, cc, 100), "v1")

	// Without the match, the header no longer routes.
	before := h.routeAcked("client-preview")
	h.srv.SetPlans(map[string]rollout.Plan{"greeter": {Service: "greeter", Weights: preview.Weights}})
	eventually(t, 5*time.Second, "the client ACKs the route without the match", func() bool {
		v := h.routeAcked("client-preview")
		return v != "" && v != before
	})
	// gRPC-Go applies an update just after it ACKs it.
	eventually(t, time.Second, "the header stops routing after the ACK", func() bool {
		_, bv, _, _, _ := callsWith(t, cc, 10, previewHeader, "1").Snapshot()
		return bv["v1"] == 10
	})
	allOn(t, "calls with the preview header once the match is gone", callsWith(t, cc, 100, previewHeader, "1"), "v1")
}

// TestPlanOnlySubsetClustersFollowThePlan: subsets that only a match or the
// mirror names (no instance, weight 0) get clusters and endpoints while the
// plan names them, and lose them after the removal grace once it does not.
// A mirror-only change pushes nothing to proxyless clients.
func TestPlanOnlySubsetClustersFollowThePlan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Options{Quiet: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond, RemovalGrace: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = s.Run(ctx) }()

		s.SetCatalog(discovery.NewCatalog(time.Now(), svcN("a", 2)))
		plan := rollout.Plan{
			Service: "a",
			Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 100}, {Subset: "v8", Weight: 0}},
			Matches: []rollout.HeaderRoute{{Header: "x-tenant", Value: "beta", Subset: "v8"}},
			Mirror:  &rollout.Mirror{Subset: "v9", Percent: 10},
		}
		s.SetPlans(map[string]rollout.Plan{"a": plan})
		advance(100 * time.Millisecond)
		served := func(typeURL, name string) bool {
			_, ok := s.caches[typeURL].lc.GetResources()[name]
			return ok
		}
		for _, c := range []string{"outbound|a|v8", "outbound|a|v9"} {
			if !served(resourcev3.ClusterType, c) || !served(resourcev3.EndpointType, c) {
				t.Fatalf("cluster %s of the plan: cluster served %v, endpoints served %v; want both", c,
					served(resourcev3.ClusterType, c), served(resourcev3.EndpointType, c))
			}
		}
		routes := servedRoute(t, s, "a").GetVirtualHosts()[0].GetRoutes()
		if len(routes) != 2 || routes[0].GetRoute().GetCluster() != "outbound|a|v8" || routes[0].GetMatch().GetHeaders()[0].GetName() != "x-tenant" {
			t.Fatalf("proxyless routes: %v, want the x-tenant match to v8 first", routes)
		}
		for _, r := range routes {
			if len(r.GetRoute().GetRequestMirrorPolicies()) > 0 {
				t.Fatalf("the proxyless route carries the sidecars' mirror: %v", r)
			}
		}

		version := func(typeURL string) uint64 {
			c := s.caches[typeURL]
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.version
		}
		lds, rds := version(resourcev3.ListenerType), version(resourcev3.RouteType)
		plan.Mirror = &rollout.Mirror{Subset: "v9", Percent: 20}
		s.SetPlans(map[string]rollout.Plan{"a": plan})
		advance(100 * time.Millisecond)
		if version(resourcev3.ListenerType) != lds || version(resourcev3.RouteType) != rds {
			t.Fatal("a mirror-only change was pushed to proxyless clients, which do not mirror")
		}

		s.SetPlans(map[string]rollout.Plan{"a": {Service: "a", Weights: plan.Weights}})
		advance(100 * time.Millisecond)
		if n := len(servedRoute(t, s, "a").GetVirtualHosts()[0].GetRoutes()); n != 1 {
			t.Fatalf("%d proxyless routes after the plan dropped its match, want 1", n)
		}
		for _, c := range []string{"outbound|a|v8", "outbound|a|v9"} {
			if !served(resourcev3.ClusterType, c) || !served(resourcev3.EndpointType, c) {
				t.Fatalf("cluster %s removed before the grace period: a client on the older route would lose it", c)
			}
		}
		advance(time.Second)
		for _, c := range []string{"outbound|a|v8", "outbound|a|v9"} {
			if served(resourcev3.ClusterType, c) || served(resourcev3.EndpointType, c) {
				t.Fatalf("cluster %s still served after the grace period, though no plan names it", c)
			}
		}
		if !served(resourcev3.ClusterType, "outbound|a|v1") {
			t.Fatal("the cluster of the catalog's own version went too")
		}
	})
}

// TestSidecarGetsMirrorAndMatches: a sidecar's outbound and local-bind
// routes carry the match and, on the weighted route only, the mirror; its
// CDS has the mirror's cluster.
func TestSidecarGetsMirrorAndMatches(t *testing.T) {
	h := newHarness(t, Options{})
	h.srv.SetCatalog(meshCatalog())
	h.srv.SetPlans(map[string]rollout.Plan{"api": {
		Service: "api",
		Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 100}},
		Matches: []rollout.HeaderRoute{{Header: previewHeader, Value: "1", Subset: "v2"}},
		Mirror:  &rollout.Mirror{Subset: "v3", Percent: 10},
	}})
	<-h.srv.Ready()

	c := dialSidecar(t, h, adsclient.Options{NodeID: "web-1-sidecar-proxy", Cluster: "web",
		Metadata: map[string]any{ir.NodeMetaSidecar: true, ir.NodeMetaVersion: "v1"}})
	if err := c.Subscribe(resourcev3.ClusterType); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "clusters with the mirror's", func(c *adsclient.Client) bool {
		return strings.Join(c.Names(resourcev3.ClusterType), ",") == "inbound|web|8080,outbound|api,outbound|api|v1,outbound|api|v2,outbound|api|v3"
	})
	if err := c.Subscribe(resourcev3.RouteType, "outbound", "bind|api|9191"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "both route configurations", func(c *adsclient.Client) bool { return len(c.Names(resourcev3.RouteType)) == 2 })
	for _, name := range []string{"outbound", "bind|api|9191"} {
		var rc routev3.RouteConfiguration
		if err := c.Get(resourcev3.RouteType, name, &rc); err != nil {
			t.Fatal(err)
		}
		routes := rc.GetVirtualHosts()[0].GetRoutes()
		if len(routes) != 2 {
			t.Fatalf("%s: %d routes, want the match and the weighted route", name, len(routes))
		}
		if m := routes[0]; m.GetMatch().GetHeaders()[0].GetName() != previewHeader || m.GetRoute().GetCluster() != "outbound|api|v2" || len(m.GetRoute().GetRequestMirrorPolicies()) != 0 {
			t.Fatalf("%s: first route %v, want the preview match to v2, not mirrored", name, m)
		}
		mp := routes[1].GetRoute().GetRequestMirrorPolicies()
		if len(mp) != 1 || mp[0].GetCluster() != "outbound|api|v3" || mp[0].GetRuntimeFraction().GetDefaultValue().GetNumerator() != 100000 {
			t.Fatalf("%s: mirror policies %v, want 10%% to outbound|api|v3", name, mp)
		}
	}
	for _, r := range servedRoute(t, h.srv, "api").GetVirtualHosts()[0].GetRoutes() {
		if len(r.GetRoute().GetRequestMirrorPolicies()) > 0 {
			t.Fatalf("the proxyless route of api carries the mirror: %v", r)
		}
	}
}
