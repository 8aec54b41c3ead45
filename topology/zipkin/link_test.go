package zipkin

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signalbox/signalbox/topology"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// span2 builds a span as Zipkin's DependencyLinkerTest does: hex ids,
// service names ("" for none) and the error tag.
func span2(trace, parent, id string, kind Kind, local, remote string, isErr bool) Span {
	hex := func(s string) uint64 {
		if s == "" {
			return 0
		}
		n, err := strconv.ParseUint(s, 16, 64)
		if err != nil {
			panic(err)
		}
		return n
	}
	return Span{
		TraceID: TraceID{Low: hex(trace)}, ParentID: hex(parent), ID: hex(id), Kind: kind,
		Local: Endpoint{Service: local}, RemoteService: remote, Error: isErr, GRPCStatus: -1,
	}
}

func shared(s Span) Span { s.Shared = true; return s }

// counts are a link's calls and errors, as Zipkin's DependencyLink.
type counts struct{ Calls, Errors int }

// links sums observations per "parent->child", as Zipkin's link().
func links(obs []topology.Observation) map[string]counts {
	out := map[string]counts{}
	for _, o := range obs {
		k := o.Source.Service + "->" + o.Target.Service
		c := out[k]
		c.Calls++
		if topology.IsError(o) {
			c.Errors++
		}
		out[k] = c
	}
	return out
}

func servedBy(obs []topology.Observation) map[string]int {
	out := map[string]int{}
	for _, o := range obs {
		out[o.Target.Service]++
	}
	return out
}

// TestLinkTraceZipkin mirrors Zipkin's DependencyLinkerTest: the same
// traces give the same links, calls and errors.
func TestLinkTraceZipkin(t *testing.T) {
	trace := []Span{
		span2("a", "", "a", KindServer, "web", "", false),
		span2("a", "a", "b", KindClient, "web", "app", false),
		shared(span2("a", "a", "b", KindServer, "app", "web", false)),
		span2("a", "b", "c", KindClient, "app", "db", true),
	}
	reversed := func(s []Span) []Span { s = slices.Clone(s); slices.Reverse(s); return s }
	cases := []struct {
		name   string
		traces [][]Span // linked one after another, links summed
		want   map[string]counts
		served map[string]int // nil: not checked
	}{
		{"links spans", [][]Span{trace},
			map[string]counts{"web->app": {1, 0}, "app->db": {1, 1}}, map[string]int{"web": 1, "app": 1}},
		{"links spans in reverse order", [][]Span{reversed(trace)},
			map[string]counts{"web->app": {1, 0}, "app->db": {1, 1}}, nil},
		{"server missing its parent id, reported in reverse", [][]Span{reversed([]Span{
			span2("a", "", "a", KindServer, "arn", "", false),
			span2("a", "a", "b", KindClient, "arn", "link", false),
			shared(span2("a", "", "b", KindServer, "link", "arn", false)),
		})}, map[string]counts{"arn->link": {1, 0}}, nil},
		{"messaging without broker on the producer", [][]Span{{
			span2("a", "", "a", KindProducer, "producer", "", false),
			span2("a", "a", "b", KindConsumer, "consumer", "kafka", false),
		}}, map[string]counts{"kafka->consumer": {1, 0}}, map[string]int{"consumer": 1}},
		{"messaging without broker on the consumer", [][]Span{{
			span2("a", "", "a", KindProducer, "producer", "kafka", false),
			span2("a", "a", "b", KindConsumer, "consumer", "", false),
		}}, map[string]counts{"producer->kafka": {1, 0}}, nil},
		{"messaging with the same broker on both sides", [][]Span{{
			span2("a", "", "a", KindProducer, "producer", "kafka", false),
			span2("a", "a", "b", KindConsumer, "consumer", "kafka", false),
		}}, map[string]counts{"producer->kafka": {1, 0}, "kafka->consumer": {1, 0}}, nil},
		{"messaging with different brokers", [][]Span{{
			span2("a", "", "a", KindProducer, "producer", "kafka1", false),
			span2("a", "a", "b", KindConsumer, "consumer", "kafka2", false),
		}}, map[string]counts{"producer->kafka1": {1, 0}, "kafka2->consumer": {1, 0}}, nil},
		{"messaging without broker: no link", [][]Span{{
			span2("a", "", "a", KindProducer, "producer", "", false),
			span2("a", "a", "b", KindConsumer, "consumer", "", false),
		}}, map[string]counts{}, nil},
		{"producer links to a server child", [][]Span{{
			span2("a", "", "a", KindProducer, "producer", "", false),
			span2("a", "a", "b", KindServer, "server", "", false),
		}}, map[string]counts{"producer->server": {1, 0}}, nil},
		{"producer links to a server sharing its span", [][]Span{{
			span2("a", "", "a", KindProducer, "producer", "", false),
			shared(span2("a", "", "a", KindServer, "server", "", false)),
		}}, map[string]counts{"producer->server": {1, 0}}, nil},
		{"client does not link to a consumer child", [][]Span{{
			span2("a", "", "a", KindClient, "client", "", false),
			span2("a", "a", "b", KindConsumer, "consumer", "", false),
		}}, map[string]counts{}, map[string]int{"consumer": 1}},
		{"root server that knows its client", [][]Span{{
			span2("a", "", "a", KindServer, "server", "client", false),
		}}, map[string]counts{"client->server": {1, 0}}, map[string]int{"server": 1}},
		{"root shared client that knows its server", [][]Span{{
			shared(span2("a", "", "a", KindClient, "client", "server", false)),
		}}, map[string]counts{"client->server": {1, 0}}, nil},
		{"calls on one link add up within a trace", [][]Span{{
			span2("a", "", "a", KindServer, "client", "", false),
			span2("a", "a", "b", KindClient, "", "server", false),
			span2("a", "a", "c", KindClient, "", "server", false),
		}}, map[string]counts{"client->server": {2, 0}}, nil},
		{"calls on one link add up across traces", [][]Span{{
			span2("a", "", "a", KindServer, "client", "", false),
			span2("a", "a", "b", KindClient, "", "server", false),
		}, {
			span2("a", "", "a", KindServer, "client", "", false),
			span2("a", "a", "b", KindClient, "", "server", false),
		}}, map[string]counts{"client->server": {2, 0}}, nil},
		{"client and server spans of one call count once", [][]Span{{
			span2("a", "", "a", KindClient, "client", "", false),
			span2("a", "a", "b", KindServer, "server", "", false),
		}}, map[string]counts{"client->server": {1, 0}}, map[string]int{"server": 1}},
		{"client and server errors count once", [][]Span{{
			span2("a", "", "a", KindClient, "client", "", true),
			span2("a", "a", "b", KindServer, "server", "", true),
		}}, map[string]counts{"client->server": {1, 1}}, nil},
		{"client and server errors count once, shared span", [][]Span{{
			span2("a", "", "a", KindClient, "client", "", true),
			shared(span2("a", "", "a", KindServer, "server", "", true)),
		}}, map[string]counts{"client->server": {1, 1}}, nil},
		{"the server names the callee", [][]Span{{
			span2("a", "", "a", KindClient, "client", "server", false),
			span2("a", "a", "b", KindServer, "server", "", false),
		}}, map[string]counts{"client->server": {1, 0}}, nil},
		{"two server children are two calls", [][]Span{{
			span2("a", "", "a", KindClient, "client", "", false),
			span2("a", "a", "b", KindServer, "server", "client", true),
			span2("a", "a", "c", KindServer, "server", "client", false),
		}}, map[string]counts{"client->server": {2, 1}}, map[string]int{"server": 2}},
		{"two server children named by the server", [][]Span{{
			span2("a", "", "a", KindClient, "client", "server", false),
			span2("a", "a", "b", KindServer, "server", "", false),
			span2("a", "a", "c", KindServer, "server", "", false),
		}}, map[string]counts{"client->server": {2, 0}}, nil},
		{"clients missing their service under a local span link from the nearest server", [][]Span{{
			span2("a", "", "a", KindServer, "client", "", false),
			span2("a", "a", "b", KindNone, "", "", false),
			span2("a", "b", "c", KindClient, "server", "", false),
			span2("a", "b", "d", KindClient, "server", "", false),
		}}, map[string]counts{"client->server": {2, 0}}, nil},
		{"errors on uninstrumented links are not known", [][]Span{{
			span2("a", "", "a", KindServer, "client", "", false),
			span2("a", "a", "b", KindNone, "", "", false),
			span2("a", "b", "c", KindClient, "server", "", true),
			span2("a", "b", "d", KindClient, "server", "", true),
		}}, map[string]counts{"client->server": {2, 0}}, nil},
		{"errors on instrumented links", [][]Span{{
			span2("a", "", "a", KindServer, "foo", "", false),
			span2("a", "a", "b", KindNone, "", "", false),
			span2("a", "b", "c", KindClient, "bar", "baz", true),
			span2("a", "b", "d", KindClient, "bar", "baz", false),
		}}, map[string]counts{"foo->bar": {2, 0}, "bar->baz": {2, 1}}, nil},
		{"loopback server span", [][]Span{{
			span2("a", "", "a", KindServer, "service", "service", false),
		}}, map[string]counts{"service->service": {1, 0}}, nil},
		{"loopback client span", [][]Span{{
			span2("b", "", "b", KindClient, "service", "service", false),
		}}, map[string]counts{"service->service": {1, 0}}, nil},
		{"spans without kind are clients", [][]Span{{
			span2("a", "", "a", KindNone, "some-client", "web", false),
			span2("a", "a", "b", KindNone, "web", "app", false),
			span2("a", "b", "c", KindNone, "app", "db", false),
		}}, map[string]counts{"some-client->web": {1, 0}, "web->app": {1, 0}, "app->db": {1, 0}}, map[string]int{}},
		{"spans without kind, with an error", [][]Span{{
			span2("a", "", "a", KindNone, "some-client", "web", false),
			span2("a", "a", "b", KindNone, "web", "app", true),
			span2("a", "b", "c", KindNone, "app", "db", false),
		}}, map[string]counts{"some-client->web": {1, 0}, "web->app": {1, 1}, "app->db": {1, 0}}, nil},
		{"root spans without both names do not link", [][]Span{
			{span2("a", "", "a", KindServer, "", "", false)},
			{span2("a", "", "a", KindServer, "server", "", false)},
			{span2("a", "", "a", KindServer, "", "client", false)},
			{span2("a", "", "a", KindClient, "", "", false)},
			{span2("a", "", "a", KindClient, "client", "", false)},
			{span2("a", "", "a", KindClient, "", "server", false)},
		}, map[string]counts{}, map[string]int{"server": 1}},
		{"unrelated spans missing the root do not link", [][]Span{{
			span2("a", "a", "b", KindServer, "service1", "", false),
			span2("a", "a", "c", KindServer, "service2", "", false),
		}}, map[string]counts{}, map[string]int{"service1": 1, "service2": 1}},
		{"related spans missing the root link", [][]Span{{
			span2("a", "a", "b", KindServer, "service1", "", false),
			span2("a", "b", "c", KindServer, "service2", "", false),
		}}, map[string]counts{"service1->service2": {1, 0}}, nil},
		{"client and server not sharing ids", [][]Span{{
			span2("a", "", "a", KindClient, "web", "", false),
			span2("a", "a", "b", KindServer, "app", "", false),
		}}, map[string]counts{"web->app": {1, 0}}, nil},
		{"error on the client of a server child", [][]Span{{
			span2("a", "", "a", KindClient, "web", "", true),
			span2("a", "a", "b", KindServer, "app", "", false),
		}}, map[string]counts{"web->app": {1, 1}}, nil},
		{"missing server span is backfilled", [][]Span{{
			span2("a", "", "a", KindServer, "web", "", false),
			span2("a", "a", "b", KindClient, "app", "", false),
		}}, map[string]counts{"web->app": {1, 0}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var calls, served []topology.Observation
			for _, tr := range c.traces {
				cs, ss := LinkTrace(tr)
				calls, served = append(calls, cs...), append(served, ss...)
			}
			if diff := cmp.Diff(c.want, links(calls)); diff != "" {
				t.Errorf("links (-want +got):\n%s", diff)
			}
			if c.served != nil {
				if diff := cmp.Diff(c.served, servedBy(served)); diff != "" {
					t.Errorf("served (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestLinkTraceSignalbox covers what signalbox adds to Zipkin's rules.
func TestLinkTraceSignalbox(t *testing.T) {
	withTags := func(s Span, f func(*Span)) Span { f(&s); return s }
	cases := []struct {
		name   string
		spans  []Span
		want   map[string]counts
		served map[string]int
	}{
		{"the client's error marks a call whose halves share an id", []Span{
			span2("a", "", "a", KindClient, "web", "", true),
			shared(span2("a", "", "a", KindServer, "api", "", false)),
		}, map[string]counts{"web->api": {1, 1}}, map[string]int{"api": 1}},
		{"sidecar and app server spans under one client: one call, served once", []Span{
			span2("a", "", "a", KindServer, "web", "", false),
			span2("a", "a", "b", KindClient, "web", "", false),
			// Envoy's server half, on its own address; the app's server
			// span is a child of the client id, on another endpoint.
			withTags(shared(span2("a", "a", "b", KindServer, "api", "", false)), func(s *Span) {
				s.Local.IPv4, s.Local.Port = netip.MustParseAddr("10.0.0.2"), 9000
			}),
			span2("a", "b", "c", KindServer, "api", "", false),
		}, map[string]counts{"web->api": {1, 0}}, map[string]int{"web": 1, "api": 1}},
		{"sidecar and app server spans on one endpoint: one call, served once", []Span{
			span2("a", "", "a", KindClient, "web", "", false),
			shared(span2("a", "", "a", KindServer, "api", "", false)),
			span2("a", "a", "c", KindServer, "api", "", false),
		}, map[string]counts{"web->api": {1, 0}}, map[string]int{"api": 1}},
		{"the app's server span under its sidecar's: one call, served once", []Span{
			span2("a", "", "a", KindClient, "web", "", false),
			span2("a", "a", "b", KindServer, "api", "", false),
			span2("a", "b", "c", KindServer, "api", "", false),
		}, map[string]counts{"web->api": {1, 0}}, map[string]int{"api": 1}},
		{"the app's server span under its sidecar's, the client half missing: served once", []Span{
			withTags(shared(span2("a", "", "b", KindServer, "api", "", false)), func(s *Span) { s.Local.Port = 15006 }),
			withTags(span2("a", "b", "c", KindServer, "api", "", false), func(s *Span) { s.Local.Port = 9000 }),
		}, map[string]counts{}, map[string]int{"api": 1}},
		{"the app's server span under its sidecar's, the client half missing under a root: one call, served once", []Span{
			span2("a", "", "a", KindServer, "web", "", false),
			withTags(shared(span2("a", "a", "b", KindServer, "api", "", false)), func(s *Span) { s.Local.Port = 15006 }),
			withTags(span2("a", "b", "c", KindServer, "api", "", false), func(s *Span) { s.Local.Port = 9000 }),
		}, map[string]counts{"web->api": {1, 0}}, map[string]int{"web": 1, "api": 1}},
		{"a server under another service's server is still a call", []Span{
			span2("a", "", "a", KindServer, "web", "", false),
			span2("a", "a", "b", KindServer, "api", "", false),
		}, map[string]counts{"web->api": {1, 0}}, map[string]int{"web": 1, "api": 1}},
		{"an Envoy client span names its callee by upstream_cluster", []Span{
			withTags(span2("a", "", "a", KindClient, "web", "", false), func(s *Span) {
				applyTags(s, mapTags{"upstream_cluster": "outbound|API|v2"})
			}),
		}, map[string]counts{"web->api": {1, 0}}, map[string]int{}},
		{"a span naming itself its parent goes under the root, as one missing its parent", []Span{
			span2("a", "", "a", KindClient, "web", "", false),
			span2("a", "b", "b", KindServer, "api", "", false),
		}, map[string]counts{"web->api": {1, 0}}, map[string]int{"api": 1}},
		{"pieces of one span are merged", []Span{
			span2("a", "", "a", KindServer, "web", "", false),
			span2("a", "a", "b", KindClient, "web", "", false),
			span2("a", "a", "b", KindClient, "", "api", true),
		}, map[string]counts{"web->api": {1, 1}}, map[string]int{"web": 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls, served := LinkTrace(c.spans)
			if diff := cmp.Diff(c.want, links(calls)); diff != "" {
				t.Errorf("links (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(c.served, servedBy(served)); diff != "" {
				t.Errorf("served (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAttribution checks what an observation says: versions, time,
// latency, protocol and outcome.
func TestAttribution(t *testing.T) {
	ms := time.Millisecond
	type half struct {
		tags map[string]string
		ts   time.Duration // from t0
		dur  time.Duration
	}
	mk := func(id, parent string, kind Kind, local, remote string, h half) Span {
		s := span2("1", parent, id, kind, local, remote, false)
		applyTags(&s, mapTags(h.tags))
		s.Timestamp, s.Duration = t0.Add(h.ts), h.dur
		return s
	}
	obs := func(src, dst topology.Node, p topology.Protocol, status, grpc int, failed bool, ts, lat time.Duration) topology.Observation {
		return topology.Observation{Time: t0.Add(ts), Source: src, Target: dst, Protocol: p, Status: status, GRPCStatus: grpc, Failed: failed, Latency: lat}
	}
	web1, api2 := topology.Node{Service: "web", Version: "v1"}, topology.Node{Service: "api", Version: "v2"}
	cases := []struct {
		name         string
		client, srv  *half
		shared       bool
		call, served topology.Observation
	}{
		{"the client's view wins; versions from each side",
			&half{map[string]string{"version": "v1", "http.status_code": "503", "error": "true"}, 0, 30 * ms},
			&half{map[string]string{"service.version": "v2", "version": "ignored", "http.status_code": "200"}, 2 * ms, 20 * ms},
			true,
			obs(web1, api2, topology.HTTP, 503, -1, true, 0, 30*ms),
			obs(topology.Node{}, api2, topology.HTTP, 200, -1, false, 2*ms, 20*ms)},
		{"gRPC from rpc.system and the OpenTelemetry status tag",
			&half{map[string]string{"service.version": "v1", "rpc.system": "grpc", "rpc.grpc.status_code": "14", "error": ""}, 0, 5 * ms},
			&half{map[string]string{"service.version": "v2", "rpc.system": "grpc", "rpc.grpc.status_code": "14"}, ms, 4 * ms},
			false,
			obs(web1, api2, topology.GRPC, 500, 14, true, 0, 5*ms),
			obs(topology.Node{}, api2, topology.GRPC, 200, 14, false, ms, 4*ms)},
		{"gRPC from OpenTelemetry's newer rpc.system.name and rpc.response.status_code",
			&half{map[string]string{"service.version": "v1", "rpc.system.name": "grpc", "rpc.response.status_code": "UNAVAILABLE", "error": ""}, 0, 5 * ms},
			&half{map[string]string{"service.version": "v2", "rpc.system.name": "grpc", "rpc.response.status_code": "UNAVAILABLE"}, ms, 4 * ms},
			false,
			obs(web1, api2, topology.GRPC, 500, 14, true, 0, 5*ms),
			obs(topology.Node{}, api2, topology.GRPC, 200, 14, false, ms, 4*ms)},
		{"Envoy's gRPC status tag; the server's status when the client has none",
			&half{map[string]string{"version": "v1"}, 0, 0},
			&half{map[string]string{"version": "v2", "grpc.status_code": "0", "http.status_code": "200"}, ms, 4 * ms},
			true,
			obs(web1, api2, topology.GRPC, 200, 0, false, 0, 4*ms),
			obs(topology.Node{}, api2, topology.GRPC, 200, 0, false, ms, 4*ms)},
		{"the server's error marks the call; no status is a 500",
			&half{map[string]string{"version": "v1"}, 0, 7 * ms},
			&half{map[string]string{"version": "v2", "error": "boom"}, ms, 6 * ms},
			false,
			obs(web1, api2, topology.HTTP, 500, -1, true, 0, 7*ms),
			obs(topology.Node{}, api2, topology.HTTP, 500, -1, true, ms, 6*ms)},
		{"OpenTelemetry's HTTP status tag; a server alone",
			nil,
			&half{map[string]string{"service.version": "v2", "http.response.status_code": "404"}, ms, 6 * ms},
			false,
			obs(topology.Node{Service: "web"}, api2, topology.HTTP, 404, -1, false, ms, 6*ms),
			obs(topology.Node{Service: "web"}, api2, topology.HTTP, 404, -1, false, ms, 6*ms)},
		{"a leaf client: the callee's version from upstream_cluster",
			&half{map[string]string{"version": "v1", "upstream_cluster": "outbound|api|v2", "http.status_code": "200"}, 0, 9 * ms},
			nil,
			false,
			obs(web1, api2, topology.HTTP, 200, -1, false, 0, 9*ms),
			topology.Observation{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var spans []Span
			if c.client != nil {
				spans = append(spans, mk("c", "", KindClient, "web", "", *c.client))
			}
			if c.srv != nil {
				switch {
				case c.client == nil:
					spans = append(spans, mk("5", "c", KindServer, "api", "web", *c.srv))
				case c.shared:
					spans = append(spans, mk("c", "", KindServer, "api", "", *c.srv))
				default:
					spans = append(spans, mk("5", "c", KindServer, "api", "", *c.srv))
				}
			}
			calls, served := LinkTrace(spans)
			if diff := cmp.Diff([]topology.Observation{c.call}, calls); diff != "" {
				t.Errorf("call (-want +got):\n%s", diff)
			}
			var want []topology.Observation
			if c.srv != nil {
				want = append(want, c.served)
			}
			if diff := cmp.Diff(want, served); diff != "" {
				t.Errorf("served (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLinkTraceOrderFree: a trace links the same whatever order its spans
// come in.
func TestLinkTraceOrderFree(t *testing.T) {
	trace := []Span{
		span2("a", "", "a", KindServer, "edge", "", false),
		span2("a", "a", "b", KindClient, "edge", "", false),
		shared(span2("a", "a", "b", KindServer, "web", "", false)),
		span2("a", "b", "c", KindNone, "web", "", false),
		span2("a", "c", "d", KindClient, "web", "api", false),
		span2("a", "d", "e", KindServer, "api", "", true),
		span2("a", "e", "f", KindProducer, "api", "kafka", false),
		span2("a", "f", "9", KindConsumer, "worker", "kafka", false),
		span2("a", "e", "8", KindClient, "api", "db", false),
	}
	want := map[string]counts{"edge->web": {1, 0}, "web->api": {1, 1}, "api->kafka": {1, 0}, "kafka->worker": {1, 0}, "api->db": {1, 0}}
	perms := [][]int{{0, 1, 2, 3, 4, 5, 6, 7, 8}, {8, 7, 6, 5, 4, 3, 2, 1, 0}, {4, 0, 8, 2, 6, 1, 3, 7, 5}, {2, 5, 1, 8, 0, 7, 3, 6, 4}}
	for _, p := range perms {
		var spans []Span
		for _, i := range p {
			spans = append(spans, trace[i])
		}
		calls, served := LinkTrace(spans)
		if diff := cmp.Diff(want, links(calls)); diff != "" {
			t.Errorf("order %v: links (-want +got):\n%s", p, diff)
		}
		if got := servedBy(served); !maps.Equal(got, map[string]int{"edge": 1, "web": 1, "api": 1, "worker": 1}) {
			t.Errorf("order %v: served %v", p, got)
		}
	}
}

func ExampleLinkTrace() {
	client := Span{TraceID: TraceID{Low: 1}, ID: 2, Kind: KindClient, Local: Endpoint{Service: "web"}, Version: "v1", GRPCStatus: -1}
	server := Span{TraceID: TraceID{Low: 1}, ID: 2, Kind: KindServer, Shared: true, Local: Endpoint{Service: "api"}, Version: "v2", HTTPStatus: 200, GRPCStatus: -1}
	calls, served := LinkTrace([]Span{server, client})
	for _, o := range calls {
		fmt.Printf("call %s@%s -> %s@%s %d\n", o.Source.Service, o.Source.Version, o.Target.Service, o.Target.Version, o.Status)
	}
	for _, o := range served {
		fmt.Printf("served by %s@%s\n", o.Target.Service, o.Target.Version)
	}
	// Output:
	// call web@v1 -> api@v2 200
	// served by api@v2
}

// envoyCall is web calling api, traced as signalbox's sidecars and
// OpenTelemetry apps trace it. Ids: web's app client span 0b, web's
// sidecar egress client span 0c (its child), api's sidecar ingress server
// span sharing 0c, and api's app server span 0d under it. A zero
// ALSState leaves the tag out.
type envoyCall struct {
	// callerSidecar: web's sidecar sends its egress span (tagged
	// callerALS); without it the app's client span is the caller's side.
	callerSidecar bool
	callerALS     ALSState
	// calleeSidecar: api's sidecar sends its ingress span (tagged
	// calleeALS); calleeApp: api's app sends its own server span.
	calleeSidecar, calleeApp bool
	calleeALS                ALSState
	// calleeJoins: api's app server span shares the id it was sent, as a
	// tracer that joins it does (Brave's default), instead of being its
	// child.
	calleeJoins bool
	// calleeCallsOut: api's app sends a client span of its own, to
	// postgres without a sidecar, a child of the id it was sent.
	calleeCallsOut bool
}

func (e envoyCall) spans() []Span {
	ep := func(s Span, ip string, port uint16) Span {
		s.Local.IPv4, s.Local.Port = netip.MustParseAddr(ip), port
		return s
	}
	als := func(s Span, a ALSState) Span {
		tags := mapTags{"upstream_cluster": "outbound|api|v2"}
		if a != ALSUnknown {
			tags[TagALS] = a.String()
		}
		if s.Kind == KindServer {
			delete(tags, "upstream_cluster")
		}
		applyTags(&s, tags)
		return s
	}
	spans := []Span{ep(span2("e", "", "b", KindClient, "web", "", false), "10.0.0.1", 0)}
	callerSide := "b"
	if e.callerSidecar {
		spans = append(spans, als(ep(span2("e", "b", "c", KindClient, "web", "", false), "10.0.0.1", 15001), e.callerALS))
		callerSide = "c"
	}
	if e.calleeSidecar {
		spans = append(spans, als(ep(shared(span2("e", "", callerSide, KindServer, "api", "", false)), "10.0.0.2", 15006), e.calleeALS))
	}
	if e.calleeApp && e.calleeJoins {
		spans = append(spans, ep(shared(span2("e", "", callerSide, KindServer, "api", "", false)), "10.0.0.2", 9000))
	} else if e.calleeApp {
		spans = append(spans, ep(span2("e", callerSide, "d", KindServer, "api", "", false), "10.0.0.2", 9000))
	}
	if e.calleeCallsOut {
		spans = append(spans, ep(span2("e", callerSide, "f", KindClient, "api", "postgres", false), "10.0.0.2", 9000))
	}
	return spans
}

// TestLinkTraceALS: a call signalbox's ALS counted (the caller's sidecar
// outbound, or the callee's sidecar inbound when the caller has none) is
// not counted again from its spans, nor served again.
func TestLinkTraceALS(t *testing.T) {
	cases := []struct {
		name                    string
		spans                   []Span
		want                    map[string]counts
		served                  map[string]int
		callsByALS, servedByALS int
	}{
		{"(a) sidecars on both sides with ALS: nothing from the spans",
			envoyCall{callerSidecar: true, callerALS: ALSOn, calleeSidecar: true, calleeApp: true, calleeALS: ALSOn}.spans(),
			map[string]counts{}, map[string]int{}, 1, 1},
		{"(b) sidecars on both sides without ALS: one call, served once",
			envoyCall{callerSidecar: true, callerALS: ALSOff, calleeSidecar: true, calleeApp: true, calleeALS: ALSOff}.spans(),
			map[string]counts{"web->api": {1, 0}}, map[string]int{"api": 1}, 0, 0},
		{"(c) a proxyless caller, the callee's sidecar with ALS: nothing from the spans",
			envoyCall{calleeSidecar: true, calleeApp: true, calleeALS: ALSOn}.spans(),
			map[string]counts{}, map[string]int{}, 1, 1},
		{"(d) the caller's sidecar without ALS, the callee's with: the call from the spans, served by ALS",
			envoyCall{callerSidecar: true, callerALS: ALSOff, calleeSidecar: true, calleeApp: true, calleeALS: ALSOn}.spans(),
			map[string]counts{"web->api": {1, 0}}, map[string]int{}, 0, 1},
		{"(e) a proxyless pair, no tags: one call, served once",
			envoyCall{calleeApp: true}.spans(),
			map[string]counts{"web->api": {1, 0}}, map[string]int{"api": 1}, 0, 0},
		{"the caller's sidecar with ALS, the callee's without: served from the spans",
			envoyCall{callerSidecar: true, callerALS: ALSOn, calleeSidecar: true, calleeApp: true, calleeALS: ALSOff}.spans(),
			map[string]counts{}, map[string]int{"api": 1}, 1, 0},
		{"the caller's sidecar with ALS, a proxyless callee: served from the spans",
			envoyCall{callerSidecar: true, callerALS: ALSOn, calleeApp: true}.spans(),
			map[string]counts{}, map[string]int{"api": 1}, 1, 0},
		{"the caller's sidecar with ALS, an untraced callee: nothing from the spans",
			envoyCall{callerSidecar: true, callerALS: ALSOn}.spans(),
			map[string]counts{}, map[string]int{}, 1, 0},
		{"the caller's sidecar without ALS, an untraced callee: the leaf call",
			envoyCall{callerSidecar: true, callerALS: ALSOff}.spans(),
			map[string]counts{"web->api": {1, 0}}, map[string]int{}, 0, 0},
		{"a proxyless caller, the callee's sidecar without ALS: one call, served once",
			envoyCall{calleeSidecar: true, calleeApp: true, calleeALS: ALSOff}.spans(),
			map[string]counts{"web->api": {1, 0}}, map[string]int{"api": 1}, 0, 0},
		// api's app joins the id its sidecar's server span shares: two
		// server spans of api share web's id, on two ports. One request.
		{"the callee's app joins the shared id, sidecars without ALS: one call, served once",
			envoyCall{callerSidecar: true, callerALS: ALSOff, calleeSidecar: true, calleeApp: true, calleeJoins: true, calleeALS: ALSOff}.spans(),
			map[string]counts{"web->api": {1, 0}}, map[string]int{"api": 1}, 0, 0},
		{"the callee's app joins the shared id, sidecars with ALS: nothing from the spans",
			envoyCall{callerSidecar: true, callerALS: ALSOn, calleeSidecar: true, calleeApp: true, calleeJoins: true, calleeALS: ALSOn}.spans(),
			map[string]counts{}, map[string]int{}, 1, 1},
		{"the callee's app joins the shared id, no sidecar tags: one call, served once",
			envoyCall{callerSidecar: true, calleeSidecar: true, calleeApp: true, calleeJoins: true}.spans(),
			map[string]counts{"web->api": {1, 0}}, map[string]int{"api": 1}, 0, 0},
		// api's app traces only its own calls out: its client span's parent
		// is the id its sidecar's server span shares, and api's server span
		// is there, not missing.
		{"the callee's app calls out beside its sidecar's server span, without ALS: no backfilled call",
			envoyCall{callerSidecar: true, callerALS: ALSOff, calleeSidecar: true, calleeALS: ALSOff, calleeCallsOut: true}.spans(),
			map[string]counts{"web->api": {1, 0}, "api->postgres": {1, 0}}, map[string]int{"api": 1}, 0, 0},
		{"the callee's app calls out beside its sidecar's server span, with ALS: only its own call",
			envoyCall{callerSidecar: true, callerALS: ALSOn, calleeSidecar: true, calleeALS: ALSOn, calleeCallsOut: true}.spans(),
			map[string]counts{"api->postgres": {1, 0}}, map[string]int{}, 1, 1},
		{"the callee's sidecar with ALS, its caller's half missing: nothing from the spans",
			[]Span{
				span2("e", "", "a", KindServer, "edge", "", false),
				func() Span {
					s := shared(span2("e", "a", "c", KindServer, "api", "", false))
					applyTags(&s, mapTags{TagALS: "on"})
					return s
				}(),
			},
			map[string]counts{}, map[string]int{"edge": 1}, 1, 1},
		{"an unknown tag value is no tag",
			func() []Span {
				s := envoyCall{callerSidecar: true, calleeSidecar: true, calleeApp: true, calleeALS: ALSOff}.spans()
				applyTags(&s[1], mapTags{TagALS: "yes", "upstream_cluster": "outbound|api|v2"})
				return s
			}(),
			map[string]counts{"web->api": {1, 0}}, map[string]int{"api": 1}, 0, 0},
		{"messaging is not affected",
			func() []Span {
				p := span2("e", "", "a", KindProducer, "api", "kafka", false)
				c := span2("e", "a", "b", KindConsumer, "worker", "kafka", false)
				applyTags(&p, mapTags{TagALS: "on"})
				applyTags(&c, mapTags{TagALS: "on"})
				return []Span{p, c}
			}(),
			map[string]counts{"api->kafka": {1, 0}, "kafka->worker": {1, 0}}, map[string]int{"worker": 1}, 0, 0},
		{"a backfilled link is not affected",
			func() []Span {
				s := span2("e", "", "a", KindServer, "web", "", false)
				c := span2("e", "a", "b", KindClient, "app", "db", false)
				applyTags(&s, mapTags{TagALS: "on"})
				applyTags(&c, mapTags{TagALS: "on"})
				return []Span{s, c}
			}(),
			map[string]counts{"web->app": {1, 0}}, map[string]int{}, 1, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			orders := [][]Span{c.spans, slices.Clone(c.spans)}
			slices.Reverse(orders[1])
			for _, spans := range orders {
				l := linkSpans(spans)
				if diff := cmp.Diff(c.want, links(l.calls)); diff != "" {
					t.Errorf("links (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(c.served, servedBy(l.served)); diff != "" {
					t.Errorf("served (-want +got):\n%s", diff)
				}
				if l.callsByALS != c.callsByALS || l.servedByALS != c.servedByALS {
					t.Errorf("left to ALS: %d calls, %d served; want %d, %d", l.callsByALS, l.servedByALS, c.callsByALS, c.servedByALS)
				}
			}
		})
	}
}
