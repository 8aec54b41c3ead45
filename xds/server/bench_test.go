package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/xds/build"
	"github.com/signalbox/signalbox/xds/translate"
)

// benchCatalog is S services × I instances, each instance fronted by a
// Consul sidecar registration (the deployment DESIGN.md describes).
func benchCatalog(s, i int) *discovery.Catalog {
	var svcs []*discovery.Service
	for n := 0; n < s; n++ {
		name := fmt.Sprintf("svc-%04d", n)
		var apps, proxies []discovery.Instance
		for k := 0; k < i; k++ {
			node := fmt.Sprintf("node-%d-%d", n, k)
			addr := fmt.Sprintf("10.%d.%d.%d", n/250, n%250, k+1)
			apps = append(apps, discovery.Instance{ID: fmt.Sprintf("%s-%d", name, k), Node: node, Address: addr, Port: 8080, Version: "v1"})
			proxies = append(proxies, discovery.Instance{ID: fmt.Sprintf("%s-%d-sidecar-proxy", name, k), Node: node, Address: addr, Port: 21000, Kind: discovery.KindConnectProxy,
				Proxy: &discovery.Proxy{DestinationServiceName: name, DestinationServiceID: fmt.Sprintf("%s-%d", name, k), LocalServicePort: 8080}})
		}
		svcs = append(svcs, discovery.NewService(name, apps), discovery.NewService(name+"-sidecar-proxy", proxies))
	}
	return discovery.NewCatalog(time.Now(), svcs...)
}

// BenchmarkEndpointChange is the server's work for one health flip in a
// catalog of 1,000 services × 10 instances with sidecars: ingest the new
// catalog and apply the endpoint fast path. It is what sits between Consul's
// answer and the push to clients (see docs/benchmarks.md).
func BenchmarkEndpointChange(b *testing.B) {
	s := New(Options{})
	st := newLoopState()
	cat := benchCatalog(1000, 10)
	st.ingest(cat, nil, time.Time{}, s.opts.Policy)
	if err := s.apply(st, time.Now(), true); err != nil {
		b.Fatal(err)
	}
	up, _ := cat.Service("svc-0500")
	down := discovery.NewService(up.Name, append([]discovery.Instance{}, up.Instances...))
	down.Instances[3].Health = discovery.Critical
	down = discovery.NewService(up.Name, down.Instances)
	cats := []*discovery.Catalog{cat.With(time.Now(), up.Name, down), cat}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		st.ingest(cats[n%2], nil, time.Time{}, s.opts.Policy)
		if err := s.apply(st, time.Now(), false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSidecarRebuild is one sidecar's build and translation when every
// one of 1,000 services is its upstream (no narrowing): the cost each
// connected sidecar adds to a structural change.
func BenchmarkSidecarRebuild(b *testing.B) {
	cat := benchCatalog(1000, 10)
	s := New(Options{})
	st := newLoopState()
	st.ingest(cat, nil, time.Time{}, s.opts.Policy)
	proxies := st.proxies
	pol := build.Policy{Built: func(name string) (build.ServiceConfig, bool) { b, ok := st.built[name]; return b.cfg, ok }}
	node := build.Node{ID: "svc-0001-envoy", Service: "svc-0001", Instance: "svc-0001-0"} // no registration: every service is an upstream
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		sc := build.Sidecar(cat, nil, pol, proxies, node)
		if _, err := translate.Sidecar(sc); err != nil {
			b.Fatal(err)
		}
	}
}
