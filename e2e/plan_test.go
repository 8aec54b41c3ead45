package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"

	"github.com/signalbox/signalbox/discovery/consul"
	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/e2e/adsclient"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/ir"
	"github.com/signalbox/signalbox/xds/server"
)

// TestPlanWeightsWithConsul: a 90/10 plan between two version subsets of a
// service discovered in Consul gives 90/10 ± 3% over 2,000 calls, and an
// Envoy sidecar's outbound route carries the same weights; 0/100
// sends no further call to the old subset once the client has ACKed. Plans
// have no API until releases arrive, so the watcher and the xDS server run
// in the test process, wired as `signalbox serve` wires them.
func TestPlanWeightsWithConsul(t *testing.T) {
	c := consultest.Start(t)
	backend(t, c, "greeter", "p1", "v1")
	backend(t, c, "greeter", "p2", "v1")
	backend(t, c, "greeter", "p3", "v2")

	ctx, cancel := context.WithCancel(context.Background())
	client, err := consul.NewClient(c.HTTPAddr(), "")
	if err != nil {
		t.Fatal(err)
	}
	w := consul.New(client, consul.Options{WaitTime: 10 * time.Second})
	srv := server.New(server.Options{})
	g := grpc.NewServer()
	srv.Register(ctx, g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 3)
	go func() { _ = w.Run(ctx); done <- struct{}{} }()
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	go func() {
		select {
		case <-w.Synced():
		case <-ctx.Done():
		}
		for {
			select {
			case <-ctx.Done():
				done <- struct{}{}
				return
			case cat := <-w.Updates():
				srv.SetCatalog(cat)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		g.Stop()
		for i := 0; i < 3; i++ {
			<-done
		}
	})
	srv.SetPlans(map[string]rollout.Plan{"greeter": {Service: "greeter", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 90}, {Subset: "v2", Weight: 10}}}})
	<-srv.Ready()
	go func() { _ = g.Serve(lis) }()

	cc := dial(t, lis.Addr().String(), "e2e-plan", "greeter")
	eventually(t, 10*time.Second, "the client reaches both subsets", func() bool {
		_, bv, _, _, _ := tallyCalls(cc, 50).Snapshot()
		return bv["v1"] > 0 && bv["v2"] > 0
	})
	_, bv, total, failures, lastErr := tallyCalls(cc, 2000).Snapshot()
	if failures > 0 {
		t.Fatalf("%d of %d calls failed: %v", failures, total, lastErr)
	}
	share := float64(bv["v2"]) / float64(total)
	t.Logf("90/10 plan: v2 got %.2f%% of %d calls", share*100, total)
	if share < 0.07 || share > 0.13 {
		t.Fatalf("v2 got %.2f%% of calls, want 10%% ± 3%%", share*100)
	}

	// An Envoy sidecar of a caller gets the same 90/10 split in its outbound route.
	ads, err := adsclient.Dial(ctx, lis.Addr().String(), adsclient.Options{NodeID: "caller-1-envoy", Cluster: "caller", UserAgent: "envoy",
		Metadata: map[string]any{ir.NodeMetaSidecar: true, ir.NodeMetaAppPort: "7000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ads.Close()
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if err := ads.Subscribe(typ); err != nil {
			t.Fatal(err)
		}
	}
	if err := ads.Subscribe(resourcev3.RouteType, ir.OutboundRouteName); err != nil {
		t.Fatal(err)
	}
	if err := ads.Subscribe(resourcev3.EndpointType, "outbound|greeter|v1", "outbound|greeter|v2"); err != nil {
		t.Fatal(err)
	}
	if err := ads.WaitFor(10*time.Second, func(a *adsclient.Client) bool {
		return len(a.Names(resourcev3.RouteType)) == 1 && len(a.Names(resourcev3.EndpointType)) == 2 && len(a.Names(resourcev3.ListenerType)) == 2
	}); err != nil {
		t.Fatalf("sidecar config: %v (routes %v, endpoints %v)", err, ads.Names(resourcev3.RouteType), ads.Names(resourcev3.EndpointType))
	}
	var rc routev3.RouteConfiguration
	if err := ads.Get(resourcev3.RouteType, ir.OutboundRouteName, &rc); err != nil {
		t.Fatal(err)
	}
	var weights []string
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() == "greeter" {
			for _, wc := range vh.GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters() {
				weights = append(weights, fmt.Sprintf("%s=%d", wc.GetName(), wc.GetWeight().GetValue()))
			}
		}
	}
	if got := strings.Join(weights, ","); got != "outbound|greeter|v1=90,outbound|greeter|v2=10" {
		t.Fatalf("sidecar's greeter route weights %q, want 90/10", got)
	}

	acked := func() string {
		for _, cl := range srv.Clients() {
			if cl.NodeID == "e2e-plan" {
				return cl.Types["rds"].AckedVersion
			}
		}
		return ""
	}
	before := acked()
	srv.SetPlans(map[string]rollout.Plan{"greeter": {Service: "greeter", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 0}, {Subset: "v2", Weight: 100}}}})
	eventually(t, 2*time.Second, "the client ACKs the 0/100 route", func() bool { a := acked(); return a != "" && a != before })
	// gRPC-Go ACKs before its balancer applies the update: calls move
	// within a second of the ACK, and then stay.
	eventually(t, time.Second, "calls move to v2 after the ACK", func() bool {
		_, bv, total, failures, _ := tallyCalls(cc, 20).Snapshot()
		return bv["v2"] == total && failures == 0
	})
	_, bv, total, failures, _ = tallyCalls(cc, 300).Snapshot()
	if bv["v1"] != 0 || failures != 0 {
		t.Fatalf("after the switch to 0/100: %d calls to v1, %d failures of %d; want all on v2", bv["v1"], failures, total)
	}
}
