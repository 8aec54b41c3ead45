package main

import (
	"maps"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

func lbEndpoint(addr string, port uint32, h corev3.HealthStatus) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HealthStatus: h,
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
			}}},
		}},
	}
}

func TestEndpointSet(t *testing.T) {
	cla := &endpointv3.ClusterLoadAssignment{
		ClusterName: "outbound|svc-0001",
		Endpoints: []*endpointv3.LocalityLbEndpoints{
			{LbEndpoints: []*endpointv3.LbEndpoint{
				lbEndpoint("10.0.0.1", 8080, corev3.HealthStatus_HEALTHY),
				lbEndpoint("10.0.0.2", 8080, corev3.HealthStatus_UNHEALTHY), // Consul keeps critical instances, marked
				lbEndpoint("10.0.0.3", 21000, corev3.HealthStatus_UNKNOWN),
			}},
			{LbEndpoints: []*endpointv3.LbEndpoint{
				lbEndpoint("10.0.0.4", 8080, corev3.HealthStatus_DEGRADED),
				lbEndpoint("10.0.0.5", 8080, corev3.HealthStatus_DRAINING),
				{HealthStatus: corev3.HealthStatus_HEALTHY}, // no address at all
			}},
		},
	}
	got := slices.Sorted(maps.Keys(endpointSet(cla)))
	if want := []string{"10.0.0.1", "10.0.0.3", "10.0.0.4"}; !slices.Equal(got, want) {
		t.Fatalf("endpointSet = %v, want %v", got, want)
	}
	if n := len(endpointSet(&endpointv3.ClusterLoadAssignment{})); n != 0 {
		t.Fatalf("empty assignment gives %d endpoints", n)
	}
}

func TestConsulService(t *testing.T) {
	for in, want := range map[string]string{
		"svc-0001.default.dc1.internal.6d1f4c2e.consul": "svc-0001",
		"local_app": "",
		"":          "",
	} {
		if got := consulService(in); got != want {
			t.Errorf("consulService(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLayout(t *testing.T) {
	l := newLayout(1000, 10, 200, 10)
	if got := l.service(7); got != "svc-0007" {
		t.Fatalf("service(7) = %q", got)
	}
	if got := newLayout(20000, 1, 0, 1).service(7); got != "svc-00007" {
		t.Fatalf("service(7) of 20000 = %q", got)
	}
	seen := map[string]bool{}
	for s := range 1000 {
		for i := range 10 {
			a := l.addr(s, i)
			if seen[a] {
				t.Fatalf("address %s given twice", a)
			}
			seen[a] = true
		}
	}
	if l.addr(0, 0) != "10.0.0.1" || l.addr(999, 9) != "10.0.39.16" {
		t.Fatalf("addresses %s .. %s", l.addr(0, 0), l.addr(999, 9))
	}
}

// TestTracker drives one change through the tracker with hand-made clients.
func TestTracker(t *testing.T) {
	l := newLayout(4, 2, 0, 2)
	tr := &tracker{}
	f := newFleet(l, tr)
	a := f.add(sbSotW, "a", []int{1, 2}, nil)
	b := f.add(sbDelta, "b", []int{1}, nil)
	c := f.add(consulDelta, "c", []int{1}, nil)
	other := f.add(sbSotW, "o", []int{2}, nil)
	t0 := time.Now()
	both := epSet{l.addr(1, 0): {}, l.addr(1, 1): {}}
	one := epSet{l.addr(1, 1): {}}
	for _, cl := range []*client{a, b, c} {
		cl.setEDS(1, both, t0)
	}
	other.setEDS(2, epSet{}, t0)

	var subs [numKinds][]*client
	for k := range numKinds {
		subs[k] = f.subs[k][1]
	}
	ch := tr.begin(1, l.addr(1, 0), false, subs) // instance 0 goes critical
	start := ch.t0
	select {
	case <-ch.all:
		t.Fatal("done before any client has the change")
	default:
	}
	// Unrelated updates and the old state count for nothing.
	other.setEDS(2, epSet{}, start.Add(time.Millisecond))
	a.setEDS(1, both, start.Add(time.Millisecond))
	a.setEDS(1, one, start.Add(3*time.Millisecond))
	a.setEDS(1, one, start.Add(9*time.Millisecond)) // a second copy is not a later arrival
	c.setEDS(1, one, start.Add(200*time.Millisecond))
	select {
	case <-ch.done[sbSotW]:
	default:
		t.Fatal("SotW not done after its only subscriber has it")
	}
	select {
	case <-ch.all:
		t.Fatal("done while the delta client lacks it")
	default:
	}
	b.setEDS(1, one, start.Add(5*time.Millisecond))
	<-ch.all
	tr.end()
	r := ch.result()
	if r.last[sbSotW] != 3*time.Millisecond || r.last[sbDelta] != 5*time.Millisecond || r.last[consulDelta] != 200*time.Millisecond {
		t.Fatalf("last = %v", r.last)
	}
	if r.subs != [numKinds]int{1, 1, 1} || r.stale != [numKinds]int{} || r.timedOut != [numKinds]bool{} {
		t.Fatalf("result = %+v", r)
	}

	// Flip back: b never gets it (a timeout), a already holds it (stale).
	a.setEDS(1, both, time.Now())
	ch = tr.begin(1, l.addr(1, 0), true, subs)
	c.setEDS(1, both, ch.t0.Add(time.Millisecond))
	tr.end()
	r = ch.result()
	if r.stale[sbSotW] != 1 || !r.timedOut[sbDelta] || r.missing[sbDelta] != 1 || r.timedOut[consulDelta] {
		t.Fatalf("result = %+v", r)
	}
}
