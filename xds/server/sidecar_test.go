package server

import (
	"context"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/e2e/adsclient"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/ir"
)

// meshCatalog: web (fronted by a Consul sidecar registration with a local
// bind for api), api with two versions, and db.
func meshCatalog() *discovery.Catalog {
	return discovery.NewCatalog(time.Now(),
		discovery.NewService("web", []discovery.Instance{{ID: "web-1", Node: "host-1", Address: "10.0.0.1", Port: 8080, Version: "v1"}}),
		discovery.NewService("web-sidecar-proxy", []discovery.Instance{{
			ID: "web-1-sidecar-proxy", Node: "host-1", Address: "10.0.0.1", Port: 21000, Version: "default", Kind: discovery.KindConnectProxy,
			Proxy: &discovery.Proxy{DestinationServiceName: "web", DestinationServiceID: "web-1", LocalServicePort: 8080,
				Upstreams: []discovery.Upstream{{DestinationName: "api", LocalBindPort: 9191}}},
		}}),
		discovery.NewService("api", []discovery.Instance{
			{ID: "api-1", Node: "host-2", Address: "10.0.0.2", Port: 9000, Version: "v1"},
			{ID: "api-2", Node: "host-3", Address: "10.0.0.3", Port: 9000, Version: "v2"},
		}),
		discovery.NewService("db", []discovery.Instance{{ID: "db-1", Node: "host-4", Address: "10.0.0.4", Port: 5432, Version: "v1"}}),
	)
}

func dialSidecar(t *testing.T, h *harness, o adsclient.Options) *adsclient.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := adsclient.Dial(ctx, h.addr, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); c.Close() })
	return c
}

func waitFor(t *testing.T, c *adsclient.Client, what string, cond func(*adsclient.Client) bool) {
	t.Helper()
	if err := c.WaitFor(5*time.Second, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestSidecarFromConsulRegistration(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			h := newHarness(t, Options{})
			h.srv.SetCatalog(meshCatalog())
			h.srv.SetPlans(map[string]rollout.Plan{"api": {Service: "api", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 80}, {Subset: "v2", Weight: 20}}}})
			<-h.srv.Ready()

			c := dialSidecar(t, h, adsclient.Options{NodeID: "web-1-sidecar-proxy", Cluster: "web", Delta: delta,
				Metadata: map[string]any{ir.NodeMetaSidecar: true, ir.NodeMetaVersion: "v1"}})
			if err := c.Subscribe(resourcev3.ClusterType); err != nil {
				t.Fatal(err)
			}
			if err := c.Subscribe(resourcev3.ListenerType); err != nil {
				t.Fatal(err)
			}
			waitFor(t, c, "listeners: inbound, outbound and the local bind for api", func(c *adsclient.Client) bool {
				return strings.Join(c.Names(resourcev3.ListenerType), ",") == "bind|api|9191,inbound,outbound"
			})
			// Upstreams come from the registration: api only, not db.
			waitFor(t, c, "clusters of the registration's upstreams and the local app", func(c *adsclient.Client) bool {
				return strings.Join(c.Names(resourcev3.ClusterType), ",") == "inbound|web|8080,outbound|api,outbound|api|v1,outbound|api|v2"
			})
			var inbound listenerv3.Listener
			if err := c.Get(resourcev3.ListenerType, "inbound", &inbound); err != nil {
				t.Fatal(err)
			}
			if p := inbound.GetAddress().GetSocketAddress().GetPortValue(); p != 21000 {
				t.Fatalf("inbound listener on port %d, want the registration's 21000", p)
			}
			if err := c.Subscribe(resourcev3.RouteType, "outbound", "bind|api|9191"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, c, "both route configurations", func(c *adsclient.Client) bool { return len(c.Names(resourcev3.RouteType)) == 2 })
			var rc routev3.RouteConfiguration
			if err := c.Get(resourcev3.RouteType, "outbound", &rc); err != nil {
				t.Fatal(err)
			}
			if len(rc.GetVirtualHosts()) != 1 || rc.GetVirtualHosts()[0].GetName() != "api" {
				t.Fatalf("outbound virtual hosts: %v", rc.GetVirtualHosts())
			}
			wc := rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters()
			if len(wc) != 2 || wc[0].GetWeight().GetValue() != 80 || wc[1].GetWeight().GetValue() != 20 {
				t.Fatalf("api route weights: %v, want 80/20", wc)
			}
			if err := c.Subscribe(resourcev3.EndpointType, "outbound|api|v2"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, c, "endpoints of api v2", func(c *adsclient.Client) bool { return len(c.Names(resourcev3.EndpointType)) == 1 })

			// Callers of web are sent to its sidecar, not to the app.
			res := h.srv.caches[resourcev3.EndpointType].lc.GetResources()["outbound|web"].(*endpointv3.ClusterLoadAssignment)
			if p := res.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue(); p != 21000 {
				t.Fatalf("outbound|web endpoint port %d, want the sidecar's 21000", p)
			}
			if v := h.srv.Sidecars(); len(v) != 1 || v[0].Node != "web-1-sidecar-proxy" || v[0].Snapshot == "" {
				t.Fatalf("debug view of sidecars: %+v", v)
			}
		})
	}
}

func TestSidecarWithoutRegistrationAndBadMetadata(t *testing.T) {
	h := newHarness(t, Options{})
	h.srv.SetCatalog(meshCatalog())
	<-h.srv.Ready()
	c := dialSidecar(t, h, adsclient.Options{NodeID: "db-1-envoy", Cluster: "db", UserAgent: "envoy",
		Metadata: map[string]any{ir.NodeMetaAppPort: "5432", ir.NodeMetaInboundPort: "not-a-port"}})
	if err := c.Subscribe(resourcev3.ClusterType); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(resourcev3.ListenerType); err != nil {
		t.Fatal(err)
	}
	// Every other service is an upstream; the sidecar registration service is not.
	waitFor(t, c, "clusters of every service", func(c *adsclient.Client) bool {
		return strings.Join(c.Names(resourcev3.ClusterType), ",") == "inbound|db|5432,outbound|api,outbound|api|v1,outbound|api|v2,outbound|web,outbound|web|v1"
	})
	var inbound listenerv3.Listener
	waitFor(t, c, "inbound listener", func(c *adsclient.Client) bool { return c.Get(resourcev3.ListenerType, "inbound", &inbound) == nil })
	if p := inbound.GetAddress().GetSocketAddress().GetPortValue(); p != ir.DefaultInboundPort {
		t.Fatalf("inbound port %d, want the default %d after a bad override", p, ir.DefaultInboundPort)
	}
	v := h.srv.Sidecars()
	if len(v) != 1 || !strings.Contains(strings.Join(v[0].Problems, ";"), `signalbox.inbound_port="not-a-port"`) {
		t.Fatalf("the bad metadata is not reported: %+v", v)
	}
}

func TestSidecarRejectedConfigIsNotResent(t *testing.T) {
	h := newHarness(t, Options{})
	cat := meshCatalog()
	h.srv.SetCatalog(cat)
	<-h.srv.Ready()
	c := dialSidecar(t, h, adsclient.Options{NodeID: "web-1-sidecar-proxy", Cluster: "web",
		Metadata: map[string]any{ir.NodeMetaSidecar: true},
		Reject: func(typeURL string, _ map[string]*anypb.Any) string {
			if typeURL == resourcev3.ListenerType {
				return "forced rejection"
			}
			return ""
		}})
	if err := c.Subscribe(resourcev3.ListenerType); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(resourcev3.EndpointType, "outbound|api"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "endpoints arrive", func(c *adsclient.Client) bool { return len(c.Names(resourcev3.EndpointType)) == 1 })
	// An endpoint-only change: the stream handles it while the rejected
	// listeners must not come back.
	cat = cat.With(time.Now(), "api", discovery.NewService("api", []discovery.Instance{{ID: "api-1", Node: "host-2", Address: "10.0.0.2", Port: 9000, Version: "v1"}}))
	h.srv.SetCatalog(cat)
	waitFor(t, c, "the endpoint change arrives", func(c *adsclient.Client) bool { return c.Responses(resourcev3.EndpointType) >= 2 })
	if n := c.Responses(resourcev3.ListenerType); n != 1 {
		t.Fatalf("rejected listeners sent %d times, want 1", n)
	}
}
