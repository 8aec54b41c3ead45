package e2e

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/signalbox/signalbox/discovery/consul"
	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/server"
)

// TestPlanWeightsWithConsul: a 90/10 plan between two version subsets of a
// service discovered in Consul gives 90/10 ± 3% over 2,000 calls; 0/100
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
	_, bv, total, failures, _ = tallyCalls(cc, 300).Snapshot()
	if bv["v1"] != 0 || failures != 0 {
		t.Fatalf("after the ACK of 0/100: %d calls to v1, %d failures of %d; want all on v2", bv["v1"], failures, total)
	}
}
