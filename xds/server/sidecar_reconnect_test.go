package server

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/e2e/adsclient"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/build"
	"github.com/signalbox/signalbox/xds/ir"
)

// stallPolicy holds the Run loop inside the first build of a sidecar of
// service "stall" until released: it stands for a loop busy rebuilding
// thousands of sidecars, and lets a test order stream events against it.
type stallPolicy struct {
	blocked, release    chan struct{}
	blockOnce, freeOnce sync.Once
}

func newStallPolicy() *stallPolicy {
	return &stallPolicy{blocked: make(chan struct{}), release: make(chan struct{})}
}

func (p *stallPolicy) services(svc *discovery.Service, inst *discovery.Instance) (ir.Telemetry, ir.TrafficPolicy, []string) {
	if svc.Name == "stall" {
		p.blockOnce.Do(func() {
			close(p.blocked)
			<-p.release
		})
	}
	return build.DefaultServicePolicy(svc, inst)
}

func (p *stallPolicy) free() { p.freeOnce.Do(func() { close(p.release) }) }

// A sidecar whose stream drops and comes back while the loop is busy: the
// loop handles the old stream's departure after the new stream has been
// served from the existing snapshot. The new stream must keep getting
// updates, and the sidecar must stay in the debug view.
func TestSidecarReconnectWhileLoopBusyKeepsUpdates(t *testing.T) {
	stall := newStallPolicy()
	h := newHarness(t, Options{Policy: build.Policy{Services: stall.services}})
	t.Cleanup(stall.free) // before the harness stops, so Run can return
	h.srv.SetCatalog(meshCatalog())
	<-h.srv.Ready()
	opts := adsclient.Options{NodeID: "web-1-sidecar-proxy", Cluster: "web", Metadata: map[string]any{ir.NodeMetaSidecar: true}}

	ctxA, cancelA := context.WithCancel(context.Background())
	t.Cleanup(cancelA)
	a, err := adsclient.Dial(ctxA, h.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Subscribe(resourcev3.RouteType, "outbound"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, "first stream gets its route", func(c *adsclient.Client) bool { return len(c.Names(resourcev3.RouteType)) == 1 })

	// Another sidecar arrives and its build holds the loop.
	other := dialSidecar(t, h, adsclient.Options{NodeID: "stall-1", Cluster: "stall", Metadata: map[string]any{ir.NodeMetaSidecar: true}})
	if err := other.Subscribe(resourcev3.RouteType, "outbound"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stall.blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop never built the stalling sidecar")
	}

	// The first stream ends; its departure waits for the loop.
	cancelA()
	a.Close()
	eventually(t, 5*time.Second, "first stream closed", func() bool {
		_, open := h.client(opts.NodeID)
		return !open
	})
	// The new stream is served from the existing snapshot, and its ACK
	// leaves a watch open in the snapshot cache.
	b := dialSidecar(t, h, opts)
	if err := b.Subscribe(resourcev3.RouteType, "outbound"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b, "new stream gets the route", func(c *adsclient.Client) bool { return len(c.Names(resourcev3.RouteType)) == 1 })
	eventually(t, 5*time.Second, "new stream's watch open", func() bool {
		info := h.srv.sidecars.GetStatusInfo(opts.NodeID)
		return info != nil && info.GetNumWatches() > 0
	})
	stall.free()

	// The loop handles the departure before this plan (it was queued
	// first), and every sidecar calling api must then get new weights.
	h.srv.SetPlans(map[string]rollout.Plan{"api": {Service: "api", Weights: []rollout.SubsetWeight{{Subset: "v1", Weight: 50}, {Subset: "v2", Weight: 50}}}})
	waitFor(t, b, "reconnected sidecar gets the new route", func(c *adsclient.Client) bool { return c.Responses(resourcev3.RouteType) >= 2 })
	found := false
	for _, v := range h.srv.Sidecars() {
		found = found || v.Node == opts.NodeID
	}
	if !found {
		t.Fatalf("reconnected sidecar missing from the debug view: %+v", h.srv.Sidecars())
	}
}

// A new stream of a node that presents a changed bootstrap (here a fixed
// inbound port) while the old stream is still open gets config built from
// the new metadata, and the debug view drops the old metadata's problems.
func TestSidecarNewStreamWithChangedMetadata(t *testing.T) {
	h := newHarness(t, Options{})
	h.srv.SetCatalog(meshCatalog())
	<-h.srv.Ready()
	inboundPort := func(c *adsclient.Client) uint32 {
		var l listenerv3.Listener
		if c.Get(resourcev3.ListenerType, "inbound", &l) != nil {
			return 0
		}
		return l.GetAddress().GetSocketAddress().GetPortValue()
	}
	opts := adsclient.Options{NodeID: "db-1-envoy", Cluster: "db", UserAgent: "envoy",
		Metadata: map[string]any{ir.NodeMetaAppPort: "5432", ir.NodeMetaInboundPort: "not-a-port"}}
	a := dialSidecar(t, h, opts)
	if err := a.Subscribe(resourcev3.ListenerType); err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, "inbound listener on the default port", func(c *adsclient.Client) bool { return inboundPort(c) == ir.DefaultInboundPort })

	opts.Metadata = map[string]any{ir.NodeMetaAppPort: "5432", ir.NodeMetaInboundPort: "15999"}
	b := dialSidecar(t, h, opts)
	if err := b.Subscribe(resourcev3.ListenerType); err != nil {
		t.Fatal(err)
	}
	waitFor(t, b, "inbound listener on the new stream's port", func(c *adsclient.Client) bool { return inboundPort(c) == 15999 })
	eventually(t, 5*time.Second, "debug view without the old metadata's problem", func() bool {
		v := h.srv.Sidecars()
		return len(v) == 1 && !strings.Contains(strings.Join(v[0].Problems, ";"), "not-a-port")
	})
}
