package server

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signalbox/signalbox/discovery"
)

func svcN(name string, n int) *discovery.Service {
	var in []discovery.Instance
	for i := 0; i < n; i++ {
		in = append(in, discovery.Instance{ID: fmt.Sprintf("%s-%d", name, i), Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 80, Version: "v1"})
	}
	return discovery.NewService(name, in)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// advance moves the bubble's fake clock by d and lets every goroutine settle.
func advance(d time.Duration) {
	<-time.After(d)
	synctest.Wait()
}

func TestLoopTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Options{Quiet: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond, RemovalGrace: time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = s.Run(ctx) }()
		full := func() float64 { return testutil.ToFloat64(s.m.applies.WithLabelValues("full")) }

		// The first config waits for the quiet period, then makes the server ready.
		cat := discovery.NewCatalog(time.Now(), svcN("a", 2))
		s.SetCatalog(cat)
		synctest.Wait()
		if isClosed(s.Ready()) {
			t.Fatal("ready before the quiet period ended")
		}
		advance(9 * time.Millisecond)
		if isClosed(s.Ready()) {
			t.Fatal("ready before the quiet period ended")
		}
		advance(time.Millisecond)
		if !isClosed(s.Ready()) || full() != 1 {
			t.Fatalf("after the quiet period: ready=%v full applies=%v, want ready after 1", isClosed(s.Ready()), full())
		}

		// An endpoint change of a served cluster goes out at once.
		cat = cat.With(time.Now(), "a", svcN("a", 3))
		s.SetCatalog(cat)
		synctest.Wait()
		if n := endpointsIn(t, s, "outbound|a"); n != 3 {
			t.Fatalf("without any time passing, outbound|a has %d endpoints, want 3 (fast path)", n)
		}
		if full() != 1 {
			t.Fatalf("an endpoint change caused a full apply")
		}

		// A steady stream of structural changes (a new service every 5ms)
		// is pushed at least every MaxDelay, never held back forever.
		for i := 0; i < 40; i++ {
			cat = cat.With(time.Now(), fmt.Sprintf("s%02d", i), svcN(fmt.Sprintf("s%02d", i), 1))
			s.SetCatalog(cat)
			advance(5 * time.Millisecond)
		}
		// 200ms of changes: applies at 100ms and 200ms, not one per change.
		if got := full() - 1; got < 1 || got > 2 {
			t.Fatalf("%v full applies during 200ms of changes every 5ms, want 1-2 (bounded by MaxDelay 100ms)", got)
		}
		advance(10 * time.Millisecond)
		if got := s.Status().Resources["lds"]; got != 41 {
			t.Fatalf("after the changes settled, %d listeners served, want 41", got)
		}

		// A removed service's listener goes at once; its clusters stay for
		// the removal grace period.
		cat = cat.With(time.Now(), "s00", nil)
		s.SetCatalog(cat)
		advance(10 * time.Millisecond)
		if _, ok := s.caches[resourcev3.ListenerType].lc.GetResources()["s00"]; ok {
			t.Fatal("listener of a removed service still served")
		}
		if _, ok := s.caches[resourcev3.ClusterType].lc.GetResources()["outbound|s00"]; !ok {
			t.Fatal("cluster of a removed service dropped before the grace period")
		}
		advance(time.Second)
		if _, ok := s.caches[resourcev3.ClusterType].lc.GetResources()["outbound|s00"]; ok {
			t.Fatal("cluster of a removed service still served after the grace period")
		}
	})
}

func endpointsIn(t *testing.T, s *Server, cluster string) int {
	t.Helper()
	res, ok := s.caches[resourcev3.EndpointType].lc.GetResources()[cluster]
	if !ok {
		t.Fatalf("no endpoints resource %s", cluster)
	}
	n := 0
	for _, l := range res.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}
