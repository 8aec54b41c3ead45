package server

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/e2e/demo"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/ir"
	"github.com/signalbox/signalbox/xds/translate"
)

// harness runs a Server on a loopback port with demo backends behind it.
type harness struct {
	t        *testing.T
	srv      *Server
	addr     string
	backends map[string]*demo.Backend
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := New(opts)
	g := grpc.NewServer()
	srv.Register(ctx, g)
	go func() { _ = g.Serve(lis) }()
	done := make(chan struct{})
	go func() { _ = srv.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		g.Stop()
		<-done
	})
	return &harness{t: t, srv: srv, addr: lis.Addr().String(), backends: map[string]*demo.Backend{}}
}

func (h *harness) backend(id, version string) discovery.Instance {
	h.t.Helper()
	b, err := demo.StartBackend("127.0.0.1:0", id, version)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(b.Stop)
	h.backends[id] = b
	return discovery.Instance{ID: id, Node: "node-" + id, Address: "127.0.0.1", Port: b.Addr().Port, Version: version, Datacenter: "dc1"}
}

func (h *harness) setCatalog(services ...*discovery.Service) {
	h.srv.SetCatalog(discovery.NewCatalog(time.Now(), services...))
}

func (h *harness) dial(nodeID, service string) *grpc.ClientConn {
	h.t.Helper()
	cc, err := demo.Dial(demo.Bootstrap(h.addr, nodeID, "test"), service)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { cc.Close() })
	return cc
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not a wait for an outcome
	}
}

// calls makes n calls and tallies them.
func calls(t *testing.T, cc *grpc.ClientConn, n int) *demo.Tally {
	t.Helper()
	var tally demo.Tally
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		tally.Add(demo.Call(ctx, cc))
		cancel()
	}
	return &tally
}

func TestProxylessClientFollowsInstances(t *testing.T) {
	h := newHarness(t, Options{})
	a, b, c := h.backend("a", "v1"), h.backend("b", "v1"), h.backend("c", "v2")
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{a, b, c}))
	cc := h.dial("client-1", "greeter")

	seen := map[string]bool{}
	eventually(t, 10*time.Second, "client reaches every instance", func() bool {
		r := demo.Call(context.Background(), cc)
		if r.Err == nil {
			seen[r.ServerID] = true
		}
		return seen["a"] && seen["b"] && seen["c"]
	})

	// A new instance gets traffic.
	d := h.backend("d", "v2")
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{a, b, c, d}))
	eventually(t, 2*time.Second, "new instance d gets traffic", func() bool {
		return demo.Call(context.Background(), cc).ServerID == "d"
	})

	// A failed check stops traffic within 1s.
	failed := b
	failed.Health = discovery.Critical
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{a, failed, c, d}))
	start := time.Now()
	eventually(t, time.Second, "traffic to b stops", func() bool {
		tally := calls(t, cc, 12)
		bs, _, _, failures, _ := tally.Snapshot()
		return bs["b"] == 0 && failures == 0
	})
	t.Logf("traffic left the failed instance after %v", time.Since(start))

	// Deregistration stops traffic too.
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{a, c}))
	eventually(t, time.Second, "traffic to d stops", func() bool {
		bs, _, _, failures, _ := calls(t, cc, 12).Snapshot()
		return bs["d"] == 0 && bs["b"] == 0 && failures == 0
	})
}

func TestPlanWeightsAndSwitch(t *testing.T) {
	h := newHarness(t, Options{})
	v1a, v1b, v2 := h.backend("v1a", "v1"), h.backend("v1b", "v1"), h.backend("v2a", "v2")
	// The plan first, as signalbox serve does: a first build without it
	// would send unweighted routes that the count below could catch.
	h.srv.SetPlans(map[string]rollout.Plan{"greeter": {Service: "greeter", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 90}, {Subset: "v2", Weight: 10}}}})
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{v1a, v1b, v2}))
	cc := h.dial("client-w", "greeter")
	eventually(t, 10*time.Second, "client reaches both subsets", func() bool {
		_, bv, _, _, _ := calls(t, cc, 50).Snapshot()
		return bv["v1"] > 0 && bv["v2"] > 0
	})
	_, bv, total, failures, lastErr := calls(t, cc, 2000).Snapshot()
	if failures > 0 {
		t.Fatalf("%d of %d calls failed: %v", failures, total, lastErr)
	}
	share := float64(bv["v2"]) / float64(total)
	t.Logf("v2 share over %d calls: %.2f%% (want 10%% ± 3%%)", total, share*100)
	if share < 0.07 || share > 0.13 {
		t.Fatalf("v2 got %.2f%% of calls, want 10%% ± 3%% (v1=%d v2=%d)", share*100, bv["v1"], bv["v2"])
	}

	// Switch to 0/100 and wait for the client's ACK of the new route.
	before := h.routeAcked("client-w")
	h.srv.SetPlans(map[string]rollout.Plan{"greeter": {Service: "greeter", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 0}, {Subset: "v2", Weight: 100}}}})
	eventually(t, 2*time.Second, "client ACKs the new route", func() bool {
		v := h.routeAcked("client-w")
		return v != "" && v != before
	})
	// gRPC-Go ACKs an update before its balancer applies it (tens of ms
	// later, more on a loaded machine): within a second of the ACK calls
	// move to v2, and from then on every call stays there.
	eventually(t, time.Second, "calls move to v2 after the ACK", func() bool {
		_, bv, total, failures, _ := calls(t, cc, 20).Snapshot()
		return bv["v2"] == total && failures == 0
	})
	_, bv, total, failures, _ = calls(t, cc, 200).Snapshot()
	if bv["v1"] != 0 || failures != 0 || bv["v2"] != total {
		t.Fatalf("after the switch to 0/100: v1=%d v2=%d failures=%d of %d; want every call on v2", bv["v1"], bv["v2"], failures, total)
	}
}

// routeAcked is the RDS version the node has acknowledged.
func (h *harness) routeAcked(node string) string {
	for _, c := range h.srv.Clients() {
		if c.NodeID == node {
			return c.Types["rds"].AckedVersion
		}
	}
	return ""
}

func (h *harness) client(node string) (ClientStatus, bool) {
	for _, c := range h.srv.Clients() {
		if c.NodeID == node {
			return c, true
		}
	}
	return ClientStatus{}, false
}

func TestRejectedConfigIsNotResent(t *testing.T) {
	h := newHarness(t, Options{})
	a := h.backend("a", "v1")
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{a}))
	<-h.srv.Ready()

	// Force a listener gRPC rejects: no router filter.
	broken := &listenerv3.Listener{Name: "greeter", ApiListener: &listenerv3.ApiListener{}}
	lds := h.srv.caches[resourcev3.ListenerType]
	if err := lds.update(map[string]types.Resource{"greeter": broken}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}

	// A client whose very first LDS response is rejected (it sends version "").
	cc := h.dial("client-nack", "greeter")
	go demo.Call(context.Background(), cc) // start the channel; it cannot succeed
	var nacked ClientStatus
	eventually(t, 5*time.Second, "the NACK shows in the debug view", func() bool {
		c, ok := h.client("client-nack")
		nacked = c
		return ok && c.Types["lds"].LastNack != nil
	})
	if msg := nacked.Types["lds"].LastNack.Message; msg == "" {
		t.Fatal("the NACK carries no error message")
	}
	if got := testutil.ToFloat64(h.srv.m.nacks.WithLabelValues("lds")); got < 1 {
		t.Fatalf("signalbox_xds_nacks_total{type=lds} = %v, want >= 1", got)
	}

	// Fix the listener and wait for the client to accept it: a NACK loop
	// would have resent the broken one thousands of times by then.
	good, err := translate.APIListener(ir.Service{Name: "greeter"})
	if err != nil {
		t.Fatal(err)
	}
	if err := lds.update(map[string]types.Resource{"greeter": good}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the client accepts the fixed listener", func() bool {
		c, _ := h.client("client-nack")
		return c.Types["lds"].AckedVersion != ""
	})
	c, _ := h.client("client-nack")
	if p := c.Types["lds"].Pushes; p != 2 {
		t.Fatalf("listener pushed %d times to the client, want 2 (the rejected one once, then the fix)", p)
	}
	if n := c.Types["lds"].Nacks; n != 1 {
		t.Fatalf("client NACKed %d times, want 1", n)
	}
	eventually(t, 5*time.Second, "the client then calls successfully", func() bool {
		return demo.Call(context.Background(), cc).Err == nil
	})
}

func TestDeltaClientGetsResourcesAndRemovals(t *testing.T) {
	h := newHarness(t, Options{RemovalGrace: 50 * time.Millisecond})
	a, b := h.backend("a", "v1"), h.backend("b", "v2")
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{a, b}))
	<-h.srv.Ready()

	d := newDeltaClient(t, h.addr, "delta-1")
	d.subscribe(resourcev3.ClusterType, "outbound|greeter", "outbound|greeter|v1", "outbound|greeter|v2")
	got := d.recvUntil(resourcev3.ClusterType, func(s deltaState) bool { return len(s) == 3 })
	for _, name := range []string{"outbound|greeter", "outbound|greeter|v1", "outbound|greeter|v2"} {
		if _, ok := got[name]; !ok {
			t.Fatalf("delta client lacks cluster %s: %v", name, keys(got))
		}
	}
	d.subscribe(resourcev3.EndpointType, "outbound|greeter|v2")
	eds := d.recvUntil(resourcev3.EndpointType, func(s deltaState) bool { return len(s) == 1 })
	if n := countEndpoints(t, eds["outbound|greeter|v2"]); n != 1 {
		t.Fatalf("v2 endpoints: %d, want 1", n)
	}

	// The v2 instance goes away: its subset cluster is removed (after the
	// grace period) and its endpoints change.
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{a}))
	d.recvUntil(resourcev3.ClusterType, func(s deltaState) bool {
		_, still := s["outbound|greeter|v2"]
		return !still && len(s) == 2
	})
}

func TestDebounceCoalescesStructuralChanges(t *testing.T) {
	h := newHarness(t, Options{Quiet: 200 * time.Millisecond, MaxDelay: 400 * time.Millisecond})
	a := h.backend("a", "v1")
	h.setCatalog(discovery.NewService("greeter", []discovery.Instance{a}))
	<-h.srv.Ready()
	fullBefore := testutil.ToFloat64(h.srv.m.applies.WithLabelValues("full"))
	// Ten new services in quick succession give one full apply, not ten.
	var svcs []*discovery.Service
	svcs = append(svcs, discovery.NewService("greeter", []discovery.Instance{a}))
	for i := 0; i < 10; i++ {
		svcs = append(svcs, discovery.NewService("svc-"+strconv.Itoa(i), []discovery.Instance{a}))
		h.setCatalog(svcs...)
	}
	eventually(t, 2*time.Second, "all ten services served", func() bool {
		return h.srv.Status().Resources["lds"] == 11
	})
	if n := testutil.ToFloat64(h.srv.m.applies.WithLabelValues("full")) - fullBefore; n > 2 {
		t.Fatalf("%v full applies for a burst of ten changes, want them coalesced", n)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
