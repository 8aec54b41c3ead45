package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	grpclogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/hashicorp/consul/api"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/e2e/adsclient"
	"github.com/signalbox/signalbox/xds/ir"
)

// registerWithSidecar registers an app instance and its Consul sidecar
// registration on one node.
func registerWithSidecar(t *testing.T, c *consultest.Agent, service, id string, port int, meta map[string]string, upstreams ...api.Upstream) {
	t.Helper()
	node := "host-" + id
	for _, svc := range []*api.AgentService{
		{ID: id, Service: service, Address: "127.0.0.1", Port: port, Meta: meta},
		{ID: id + "-sidecar-proxy", Service: service + "-sidecar-proxy", Kind: api.ServiceKindConnectProxy, Address: "127.0.0.1", Port: port + 10000,
			Proxy: &api.AgentServiceConnectProxyConfig{DestinationServiceName: service, DestinationServiceID: id, LocalServicePort: port, Upstreams: upstreams}},
	} {
		if _, err := c.Client().Catalog().Register(&api.CatalogRegistration{Node: node, Address: "127.0.0.1", Service: svc}, nil); err != nil {
			t.Fatalf("register %s: %v", svc.ID, err)
		}
	}
}

// hcmOf unpacks the HTTP connection manager of a sidecar listener.
func hcmOf(t *testing.T, c *adsclient.Client, listener string) *hcmv3.HttpConnectionManager {
	t.Helper()
	var l listenerv3.Listener
	if err := c.Get(resourcev3.ListenerType, listener, &l); err != nil {
		t.Fatal(err)
	}
	var h hcmv3.HttpConnectionManager
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	return &h
}

func TestSidecarConfiguredFromConsul(t *testing.T) {
	c := consultest.Start(t)
	registerWithSidecar(t, c, "web", "web-1", 8080, map[string]string{"version": "v1", "signalbox-trace-sampling": "10"},
		api.Upstream{DestinationName: "api", LocalBindPort: 9191})
	registerWithSidecar(t, c, "api", "api-1", 9000, map[string]string{"version": "v1"})

	cfg := filepath.Join(t.TempDir(), "signalbox.yaml")
	if err := os.WriteFile(cfg, []byte("telemetry:\n  tracing:\n    provider: zipkin\n    sampling: 1\n  accessLog:\n    als: true\ntraffic:\n  requestTimeout: 5s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb := startSignalbox(t, c.HTTPAddr(), "", "--config", cfg)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ads, err := adsclient.Dial(ctx, sb.XDSAddr, adsclient.Options{NodeID: "web-1-sidecar-proxy", Cluster: "web", UserAgent: "envoy",
		Metadata: map[string]any{ir.NodeMetaSidecar: true, ir.NodeMetaVersion: "v1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ads.Close()
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		if err := ads.Subscribe(typ); err != nil {
			t.Fatal(err)
		}
	}
	if err := ads.WaitFor(10*time.Second, func(a *adsclient.Client) bool {
		return strings.Join(a.Names(resourcev3.ListenerType), ",") == "bind|api|9191,inbound,outbound" && len(a.Names(resourcev3.ClusterType)) == 4
	}); err != nil {
		t.Fatalf("listeners %v, clusters %v: %v", ads.Names(resourcev3.ListenerType), ads.Names(resourcev3.ClusterType), err)
	}
	if got := strings.Join(ads.Names(resourcev3.ClusterType), ","); got != "inbound|web|8080,outbound|api,outbound|api|v1,signalbox-zipkin" {
		t.Fatalf("clusters: %s", got)
	}
	if err := ads.Subscribe(resourcev3.RouteType, "outbound", "bind|api|9191"); err != nil {
		t.Fatal(err)
	}
	if err := ads.Subscribe(resourcev3.EndpointType, "outbound|api"); err != nil {
		t.Fatal(err)
	}
	if err := ads.WaitFor(10*time.Second, func(a *adsclient.Client) bool {
		return len(a.Names(resourcev3.RouteType)) == 2 && len(a.Names(resourcev3.EndpointType)) == 1
	}); err != nil {
		t.Fatal(err)
	}

	for _, dir := range []string{"inbound", "outbound"} {
		h := hcmOf(t, ads, dir)
		tr := h.GetTracing()
		if tr == nil {
			t.Fatalf("%s: no tracing", dir)
		}
		if v := tr.GetRandomSampling().GetValue(); v != 10 {
			t.Errorf("%s: random sampling %v, want web's override 10", dir, v)
		}
		if tr.GetClientSampling() == nil || tr.GetOverallSampling() == nil {
			t.Errorf("%s: client or overall sampling left to Envoy's 100%% default", dir)
		}
		var z tracev3.ZipkinConfig
		if tr.GetProvider().GetName() != "envoy.tracers.zipkin" || tr.GetProvider().GetTypedConfig().UnmarshalTo(&z) != nil || z.GetCollectorCluster() != ir.ZipkinCluster {
			t.Errorf("%s: tracing provider %v, want zipkin to %s", dir, tr.GetProvider(), ir.ZipkinCluster)
		}
		var als grpclogv3.HttpGrpcAccessLogConfig
		if len(h.GetAccessLog()) != 1 || h.GetAccessLog()[0].GetTypedConfig().UnmarshalTo(&als) != nil {
			t.Fatalf("%s: access logs %v, want one gRPC ALS", dir, h.GetAccessLog())
		}
		if als.GetCommonConfig().GetLogName() != dir || als.GetCommonConfig().GetGrpcService().GetEnvoyGrpc().GetClusterName() != ir.ControlPlaneCluster {
			t.Errorf("%s: ALS %v, want log name %q to cluster %q", dir, als.GetCommonConfig(), dir, ir.ControlPlaneCluster)
		}
	}
	var rc routev3.RouteConfiguration
	if err := ads.Get(resourcev3.RouteType, "outbound", &rc); err != nil {
		t.Fatal(err)
	}
	route := rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute()
	if rc.GetVirtualHosts()[0].GetName() != "api" || route.GetCluster() != "outbound|api" || route.GetTimeout().AsDuration() != 5*time.Second {
		t.Fatalf("outbound route: %v", rc.GetVirtualHosts())
	}

	// Sampling 10 → 50 in Consul reaches the connected sidecar within a second.
	registerWithSidecar(t, c, "web", "web-1", 8080, map[string]string{"version": "v1", "signalbox-trace-sampling": "50"},
		api.Upstream{DestinationName: "api", LocalBindPort: 9191})
	start := time.Now()
	if err := ads.WaitFor(time.Second, func(a *adsclient.Client) bool {
		var l listenerv3.Listener
		if a.Get(resourcev3.ListenerType, "inbound", &l) != nil {
			return false
		}
		var h hcmv3.HttpConnectionManager
		return l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&h) == nil && h.GetTracing().GetRandomSampling().GetValue() == 50
	}); err != nil {
		t.Fatalf("sampling change did not reach the sidecar within 1s: %v", err)
	}
	t.Logf("sampling 10 → 50 reached the sidecar in %v", time.Since(start))

	// A bad override falls back to the default and is reported.
	registerWithSidecar(t, c, "web", "web-1", 8080, map[string]string{"version": "v1", "signalbox-trace-sampling": "lots"},
		api.Upstream{DestinationName: "api", LocalBindPort: 9191})
	eventually(t, 5*time.Second, "the bad override is reported in /debug/xds/sidecars", func() bool {
		_, body := sb.get("/debug/xds/sidecars")
		return strings.Contains(body, `signalbox-trace-sampling=\"lots\"`)
	})
	if err := ads.WaitFor(2*time.Second, func(a *adsclient.Client) bool {
		return hcmOf(t, a, "inbound").GetTracing().GetRandomSampling().GetValue() == 1
	}); err != nil {
		t.Fatalf("after a bad override the sidecar does not use the default sampling 1: %v", err)
	}
	if _, metrics := sb.get("/metrics"); !strings.Contains(metrics, "signalbox_xds_sidecar_problems 1") {
		t.Errorf("/metrics does not count the problem")
	}
}

// tcpProxyOf unpacks the tcp_proxy of a sidecar listener, nil when its
// filter is something else.
func tcpProxyOf(a *adsclient.Client, listener string) *tcpproxyv3.TcpProxy {
	var l listenerv3.Listener
	if a.Get(resourcev3.ListenerType, listener, &l) != nil {
		return nil
	}
	var p tcpproxyv3.TcpProxy
	if l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&p) != nil {
		return nil
	}
	return &p
}

// TestTCPServiceFromConsul: a service whose instances say
// signalbox-protocol=tcp is reached through a tcp_proxy on its callers'
// local bind listener, with connection access logs to signalbox, and leaves
// the shared HTTP listener's routes; its own sidecar's inbound listener is a
// tcp_proxy too. Setting the meta back to http turns it back.
func TestTCPServiceFromConsul(t *testing.T) {
	c := consultest.Start(t)
	registerWithSidecar(t, c, "web", "web-1", 8080, map[string]string{"version": "v1"},
		api.Upstream{DestinationName: "db", LocalBindPort: 5433}, api.Upstream{DestinationName: "api", LocalBindPort: 9191})
	registerWithSidecar(t, c, "api", "api-1", 9000, map[string]string{"version": "v1"})
	tcp := map[string]string{"version": "v1", "signalbox-protocol": "tcp"}
	registerWithSidecar(t, c, "db", "db-1", 5432, tcp)
	sb := startSignalbox(t, c.HTTPAddr(), "")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dial := func(node, cluster string) *adsclient.Client {
		a, err := adsclient.Dial(ctx, sb.XDSAddr, adsclient.Options{NodeID: node, Cluster: cluster, UserAgent: "envoy",
			Metadata: map[string]any{ir.NodeMetaSidecar: true, ir.NodeMetaVersion: "v1"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		if err := a.Subscribe(resourcev3.ListenerType); err != nil {
			t.Fatal(err)
		}
		return a
	}
	web, db := dial("web-1-sidecar-proxy", "web"), dial("db-1-sidecar-proxy", "db")

	if err := web.WaitFor(10*time.Second, func(a *adsclient.Client) bool {
		p := tcpProxyOf(a, "bind|db|5433")
		return p != nil && p.GetCluster() == "outbound|db"
	}); err != nil {
		t.Fatalf("web's bind|db|5433 is not a tcp_proxy to outbound|db (listeners %v): %v", web.Names(resourcev3.ListenerType), err)
	}
	p := tcpProxyOf(web, "bind|db|5433")
	var als grpclogv3.TcpGrpcAccessLogConfig
	if len(p.GetAccessLog()) != 1 || p.GetAccessLog()[0].GetTypedConfig().UnmarshalTo(&als) != nil ||
		als.GetCommonConfig().GetLogName() != "outbound" || als.GetCommonConfig().GetGrpcService().GetEnvoyGrpc().GetClusterName() != ir.ControlPlaneCluster {
		t.Errorf("bind|db|5433 access logs %v; want a TCP gRPC access log named outbound to %s", p.GetAccessLog(), ir.ControlPlaneCluster)
	}
	if err := web.Subscribe(resourcev3.RouteType, "outbound"); err != nil {
		t.Fatal(err)
	}
	var rc routev3.RouteConfiguration
	if err := web.WaitFor(10*time.Second, func(a *adsclient.Client) bool { return a.Get(resourcev3.RouteType, "outbound", &rc) == nil }); err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, vh := range rc.GetVirtualHosts() {
		hosts = append(hosts, vh.GetName())
	}
	if strings.Join(hosts, ",") != "api" {
		t.Errorf("web's shared outbound routes name %v; want api only (db is tcp)", hosts)
	}
	if err := db.WaitFor(10*time.Second, func(a *adsclient.Client) bool {
		p := tcpProxyOf(a, "inbound")
		return p != nil && p.GetCluster() == "inbound|db|5432"
	}); err != nil {
		t.Fatalf("db's inbound listener is not a tcp_proxy to its app: %v", err)
	}

	// Back to HTTP: the bind listener becomes an HTTP connection manager.
	registerWithSidecar(t, c, "db", "db-1", 5432, map[string]string{"version": "v1"})
	if err := web.WaitFor(10*time.Second, func(a *adsclient.Client) bool {
		return tcpProxyOf(a, "bind|db|5433") == nil && hcmOf(t, a, "bind|db|5433").GetRds().GetRouteConfigName() == "bind|db|5433"
	}); err != nil {
		t.Fatalf("db back to http: web's bind listener is still not HTTP: %v", err)
	}
}
