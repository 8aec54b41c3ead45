package build

import (
	"slices"
	"testing"
	"time"

	"github.com/signalbox/signalbox/discovery"
)

func sidecarOf(app, node string, port int, h discovery.Health) discovery.Instance {
	return discovery.Instance{ID: app + "-sidecar-proxy", Node: node, Address: "10.0.0.9", Port: port, Health: h, Kind: discovery.KindConnectProxy,
		Proxy: &discovery.Proxy{DestinationServiceName: "web", DestinationServiceID: app}}
}

func TestProxiesUpdateIsIncremental(t *testing.T) {
	app := discovery.Instance{ID: "web-1", Node: "n1", Address: "10.0.0.1", Port: 8080}
	web := discovery.NewService("web", []discovery.Instance{app})
	p := NewProxies()
	if d := p.Update("web", web); len(d) != 0 {
		t.Fatalf("a service without sidecars changed destinations %v", d)
	}
	if d := p.Update("web", web); d != nil {
		t.Fatalf("re-indexing the same value changed %v", d)
	}
	proxies := discovery.NewService("web-sidecar-proxy", []discovery.Instance{sidecarOf("web-1", "n1", 21000, discovery.Passing)})
	if d := p.Update("web-sidecar-proxy", proxies); !slices.Equal(d, []string{"web"}) {
		t.Fatalf("adding a sidecar changed %v, want [web]", d)
	}
	if !p.IsProxyService("web-sidecar-proxy") || p.IsProxyService("web") {
		t.Fatal("proxy-only services misclassified")
	}
	got := Service(web, nil, Policy{}, p)
	if ep := got.Endpoints[0].Localities[0].Endpoints[0]; ep.Address != "10.0.0.9" || ep.Port != 21000 {
		t.Fatalf("web is reached at %s:%d, want its sidecar 10.0.0.9:21000", ep.Address, ep.Port)
	}

	// The sidecar goes critical: web must be rebuilt, and then has no endpoint.
	critical := discovery.NewService("web-sidecar-proxy", []discovery.Instance{sidecarOf("web-1", "n1", 21000, discovery.Critical)})
	if d := p.Update("web-sidecar-proxy", critical); !slices.Equal(d, []string{"web"}) {
		t.Fatalf("a sidecar health change changed %v, want [web]", d)
	}
	if got := Service(web, nil, Policy{}, p); len(got.Endpoints[0].Localities) != 0 {
		t.Fatalf("web still routable through a critical sidecar: %+v", got.Endpoints[0])
	}

	// The registration goes away: web is reached directly again.
	if d := p.Update("web-sidecar-proxy", nil); !slices.Equal(d, []string{"web"}) {
		t.Fatalf("removing the sidecar changed %v, want [web]", d)
	}
	if _, ok := p.Fronting(app); ok || p.IsProxyService("web-sidecar-proxy") {
		t.Fatal("the removed sidecar is still indexed")
	}
	cat := discovery.NewCatalog(time.Time{}, web)
	if gone := p.Gone(cat); len(gone) != 0 {
		t.Fatalf("Gone = %v for a catalog that has every indexed service", gone)
	}
	if gone := p.Gone(discovery.NewCatalog(time.Time{})); !slices.Equal(gone, []string{"web"}) {
		t.Fatalf("Gone = %v, want [web]", gone)
	}
}
