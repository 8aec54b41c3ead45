package server

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/signalbox/signalbox/e2e/adsclient"
)

// A service deregistered from Consul stops being served: its listener and
// route at once, its clusters and endpoints after the removal grace. The
// catalog's proxy-only services (the *-sidecar-proxy registrations) are never
// built, so they must not hide a removal: with one of them in the catalog, a
// single deregistration leaves as many built services as catalog entries.
func TestDeregisteredServiceIsRemoved(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sidecars bool
	}{{"without sidecar registrations", false}, {"with a sidecar registration", true}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := New(Options{Quiet: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond, RemovalGrace: time.Second})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go func() { _ = s.Run(ctx) }()

				cat := meshCatalog() // web, web-sidecar-proxy, api, db
				if !tc.sidecars {
					cat = cat.With(time.Now(), "web-sidecar-proxy", nil)
				}
				s.SetCatalog(cat)
				advance(10 * time.Millisecond)
				if !isClosed(s.Ready()) || !served(s, resourcev3.ListenerType, "db") {
					t.Fatal("db is not served after the first apply")
				}

				s.SetCatalog(cat.With(time.Now(), "db", nil))
				advance(10 * time.Millisecond)
				for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType} {
					if served(s, typ, "db") {
						t.Errorf("%s db still served after db left the catalog", shortType(typ))
					}
				}
				if n := s.Status().Services; n != 2 {
					t.Errorf("status counts %d services, want 2 (web, api)", n)
				}
				if !served(s, resourcev3.ClusterType, "outbound|db") {
					t.Error("cluster outbound|db removed before the grace period")
				}
				advance(time.Second)
				if served(s, resourcev3.ClusterType, "outbound|db") || served(s, resourcev3.EndpointType, "outbound|db") {
					t.Error("cluster or endpoints outbound|db still served after the grace period")
				}
			})
		})
	}
}

// A sidecar without a registration has every service as an upstream; when
// one is deregistered (with a sidecar registration elsewhere in the catalog),
// the sidecar's snapshot is rebuilt without it.
func TestSidecarLosesDeregisteredUpstream(t *testing.T) {
	h := newHarness(t, Options{})
	cat := meshCatalog()
	h.srv.SetCatalog(cat)
	<-h.srv.Ready()
	c := dialSidecar(t, h, adsclient.Options{NodeID: "api-1-envoy", Cluster: "api", UserAgent: "envoy"})
	if err := c.Subscribe(resourcev3.ClusterType); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c, "cluster outbound|db", func(c *adsclient.Client) bool {
		return slices.Contains(c.Names(resourcev3.ClusterType), "outbound|db")
	})
	h.srv.SetCatalog(cat.With(time.Now(), "db", nil))
	waitFor(t, c, "outbound|db removed from the sidecar", func(c *adsclient.Client) bool {
		return !slices.Contains(c.Names(resourcev3.ClusterType), "outbound|db")
	})
}

func served(s *Server, typeURL, name string) bool {
	_, ok := s.caches[typeURL].lc.GetResources()[name]
	return ok
}
