package translate

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/signalbox/signalbox/xds/internal/golden"
	"github.com/signalbox/signalbox/xds/ir"
	"github.com/signalbox/signalbox/xds/validate"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/out")

// TestGolden translates every testdata/in/*.yaml and compares each resource
// type with testdata/out/<name>.<type>.yaml. Run with -update to regenerate,
// then review the diff.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs found: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			// An input is either a proxyless Config or one sidecar.
			var input struct {
				ir.Config
				Sidecar *ir.Sidecar `json:"sidecar,omitempty"`
			}
			if err := yaml.UnmarshalStrict(raw, &input); err != nil {
				t.Fatalf("parse %s: %v", in, err)
			}
			var res Resources
			if input.Sidecar != nil {
				sc, err := Sidecar(*input.Sidecar)
				if err != nil {
					t.Fatalf("translate sidecar: %v", err)
				}
				res = Resources{Listeners: sc.Listeners, Routes: sc.Routes, Clusters: sc.Clusters}
			} else {
				var err error
				if res, err = Translate(&input.Config); err != nil {
					t.Fatalf("translate: %v", err)
				}
			}
			kinds := map[string][]proto.Message{}
			for _, m := range res.Listeners {
				kinds["listeners"] = append(kinds["listeners"], m)
			}
			for _, m := range res.Routes {
				kinds["routes"] = append(kinds["routes"], m)
			}
			for _, m := range res.Clusters {
				kinds["clusters"] = append(kinds["clusters"], m)
			}
			for _, m := range res.Endpoints {
				kinds["endpoints"] = append(kinds["endpoints"], m)
			}
			for _, kind := range []string{"listeners", "routes", "clusters", "endpoints"} {
				if input.Sidecar != nil && kind == "endpoints" {
					continue // sidecars share the proxyless endpoints
				}
				for _, m := range kinds[kind] {
					if err := validate.Deep(m); err != nil {
						t.Errorf("%s: %v", kind, err)
					}
				}
				golden.Check(t, filepath.Join("testdata/out", name+"."+kind+".yaml"), golden.YAML(t, kinds[kind]), *update)
			}
		})
	}
}

func TestTranslateIsDeterministic(t *testing.T) {
	cfg := &ir.Config{
		Services: []ir.Service{{Name: "b", Routes: []ir.WeightedCluster{{Cluster: "outbound|b", Weight: 1}}}, {Name: "a", Routes: []ir.WeightedCluster{{Cluster: "outbound|a", Weight: 1}}}},
		Clusters: []ir.Cluster{{Name: "outbound|b", Service: "b"}, {Name: "outbound|a", Service: "a"}},
	}
	first, err := Translate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.Listeners[0].Name != "a" || first.Clusters[0].Name != "outbound|a" {
		t.Fatalf("resources not sorted by name: %s, %s", first.Listeners[0].Name, first.Clusters[0].Name)
	}
	for i := 0; i < 5; i++ {
		again, _ := Translate(cfg)
		for j := range first.Listeners {
			a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(first.Listeners[j])
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(again.Listeners[j])
			if !bytes.Equal(a, b) {
				t.Fatal("listener bytes differ between runs")
			}
		}
	}
}

func TestTranslateRejectsInvalidIR(t *testing.T) {
	cases := map[string]*ir.Config{
		"route to unknown cluster": {Services: []ir.Service{{Name: "a", Routes: []ir.WeightedCluster{{Cluster: "nope", Weight: 1}}}}},
		"locality without weight": {
			Clusters:  []ir.Cluster{{Name: "outbound|a", Service: "a"}},
			Endpoints: []ir.ClusterEndpoints{{Cluster: "outbound|a", Localities: []ir.Locality{{Weight: 0, Endpoints: []ir.Endpoint{{Address: "10.0.0.1", Port: 80}}}}}},
		},
		"hostname endpoint": {
			Clusters:  []ir.Cluster{{Name: "outbound|a", Service: "a"}},
			Endpoints: []ir.ClusterEndpoints{{Cluster: "outbound|a", Localities: []ir.Locality{{Weight: 1, Endpoints: []ir.Endpoint{{Address: "db.local", Port: 80}}}}}},
		},
		"header match to unknown cluster": withRouting([]ir.HeaderRoute{{Header: "x-a", Value: "1", Cluster: "outbound|a|v9"}}, nil),
		"header match in upper case":      withRouting([]ir.HeaderRoute{{Header: "X-A", Value: "1", Cluster: "outbound|a|v2"}}, nil),
		"header match without value":      withRouting([]ir.HeaderRoute{{Header: "x-a", Cluster: "outbound|a|v2"}}, nil),
		"header match twice": withRouting([]ir.HeaderRoute{
			{Header: "x-a", Value: "1", Cluster: "outbound|a|v2"},
			{Header: "x-a", Value: "1", Cluster: "outbound|a"},
		}, nil),
		"mirror to unknown cluster": withRouting(nil, &ir.Mirror{Cluster: "outbound|a|v9", Percent: 10}),
		"mirror over 100%":          withRouting(nil, &ir.Mirror{Cluster: "outbound|a|v2", Percent: 101}),
		"mirror of 0%":              withRouting(nil, &ir.Mirror{Cluster: "outbound|a|v2"}),
	}
	for name, cfg := range cases {
		if _, err := Translate(cfg); err == nil {
			t.Errorf("%s: want an error", name)
		} else if !strings.Contains(err.Error(), "invalid IR") {
			t.Errorf("%s: error does not say what is wrong: %v", name, err)
		}
	}
}

// withRouting is a valid config of service a with the given matches and mirror.
func withRouting(matches []ir.HeaderRoute, mirror *ir.Mirror) *ir.Config {
	return &ir.Config{
		Services: []ir.Service{{Name: "a", Routes: []ir.WeightedCluster{{Cluster: "outbound|a", Weight: 1}}, Matches: matches, Mirror: mirror}},
		Clusters: []ir.Cluster{{Name: "outbound|a", Service: "a"}, {Name: "outbound|a|v2", Service: "a", Subset: "v2"}},
	}
}

// TestProxylessRouteLeavesMirrorOut: gRPC-Go does not mirror, so the
// proxyless route is the same with or without a mirror.
func TestProxylessRouteLeavesMirrorOut(t *testing.T) {
	cfg := withRouting([]ir.HeaderRoute{{Header: "x-a", Value: "1", Cluster: "outbound|a|v2"}}, &ir.Mirror{Cluster: "outbound|a|v2", Percent: 50})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	with := RouteConfiguration(cfg.Services[0])
	cfg.Services[0].Mirror = nil
	without := RouteConfiguration(cfg.Services[0])
	if !proto.Equal(with, without) {
		t.Fatalf("the mirror shows in the proxyless route:\n%v", with)
	}
}

// TestSpanTagALSFollowsAccessLogs: every sidecar connection manager with
// tracing tags its spans signalbox.als, "on" exactly when its own access
// logs include the ALS stream, whatever tag of that name was configured.
func TestSpanTagALSFollowsAccessLogs(t *testing.T) {
	base := ir.Sidecar{
		Node: "web-1", Service: "web",
		Inbound:    &ir.Inbound{Port: 15006, AppAddress: "127.0.0.1", AppPort: 8080, Traffic: ir.TrafficPolicy{ConnectTimeoutMs: 1000}},
		Outbound:   ir.Outbound{Port: 15001, VirtualHosts: []ir.VirtualHost{{Service: "api", Domains: []string{"api"}, Routes: []ir.WeightedCluster{{Cluster: "outbound|api", Weight: 1}}}}},
		LocalBinds: []ir.LocalBind{{Service: "api", Address: "127.0.0.1", Port: 9191}},
		Clusters:   []ir.SidecarCluster{{Cluster: ir.Cluster{Name: "outbound|api", Service: "api"}}},
	}
	for _, provider := range []ir.TracingProvider{ir.Zipkin, ir.OpenTelemetry} {
		for _, als := range []bool{true, false} {
			for _, file := range []bool{true, false} {
				for _, forged := range []string{"", ir.SpanTagALSOn, ir.SpanTagALSOff, "yes"} {
					sc := base
					sc.Telemetry.Tracing = &ir.Tracing{
						Provider:  provider,
						Collector: ir.Collector{Host: "10.0.0.100", Port: 9411, Path: "/api/v2/spans"},
						Tags:      map[string]string{"service": "web", "team": "checkout"},
					}
					if forged != "" {
						sc.Telemetry.Tracing.Tags[ir.SpanTagALS] = forged
					}
					sc.Telemetry.AccessLog.ALS = als
					if file {
						sc.Telemetry.AccessLog.File = &ir.FileLog{Path: "/var/log/envoy/web.json"}
					}
					res, err := Sidecar(sc)
					if err != nil {
						t.Fatal(err)
					}
					if len(res.Listeners) != 3 {
						t.Fatalf("want inbound, outbound and a local bind, got %d listeners", len(res.Listeners))
					}
					for _, l := range res.Listeners {
						if err := validate.Deep(l); err != nil {
							t.Errorf("%s: %v", l.Name, err)
						}
						var hcm hcmv3.HttpConnectionManager
						if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
							t.Fatal(err)
						}
						toALS := false
						for _, a := range hcm.GetAccessLog() {
							toALS = toALS || a.GetName() == "envoy.access_loggers.http_grpc"
						}
						want := ir.SpanTagALSOff
						if toALS {
							want = ir.SpanTagALSOn
						}
						if toALS != als {
							t.Fatalf("%s: ALS %v, yet the access logs say %v", l.Name, als, toALS)
						}
						var got []string
						team := false
						for _, ct := range hcm.GetTracing().GetCustomTags() {
							switch ct.GetTag() {
							case ir.SpanTagALS:
								got = append(got, ct.GetLiteral().GetValue())
							case "team":
								team = ct.GetLiteral().GetValue() == "checkout"
							}
						}
						if len(got) != 1 || got[0] != want {
							t.Errorf("%s %s als=%v file=%v configured %q: signalbox.als tags %q, want [%q]", provider, l.Name, als, file, forged, got, want)
						}
						if !team {
							t.Errorf("%s %s: the configured tag team is lost", provider, l.Name)
						}
					}
				}
			}
		}
	}
}
