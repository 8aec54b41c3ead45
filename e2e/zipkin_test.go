package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/e2e/demo"
)

// TestSpansBecomeTheGraph: demo gRPC services instrumented with
// OpenTelemetry's Zipkin exporter send their spans to the binary's
// /api/v2/spans. web (a front) calls api v1 and v2 through the xds:///
// resolver; the graph shows web → api@v1 and web → api@v2 with exactly the
// calls and failures the backends counted, and api's own view agrees.
func TestSpansBecomeTheGraph(t *testing.T) {
	c := consultest.Start(t)
	sb := startSignalbox(t, c.HTTPAddr(), "")
	zipkinURL := "http://" + sb.HTTPAddr + "/api/v2/spans"
	tracing := func(service, version string) *demo.Tracing {
		tr, err := demo.NewTracing(zipkinURL, service, version, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
		return tr
	}
	apis := map[string]*demo.Backend{}
	for _, v := range []string{"v1", "v2"} {
		tr := tracing("api", v)
		b, err := demo.StartBackendWith("127.0.0.1:0", "api-"+v, v, demo.BackendOptions{ServerOptions: []grpc.ServerOption{tr.ServerOption()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		c.RegisterInstance(t, consultest.Instance{Service: "api", ID: "api-" + v, Address: "127.0.0.1", Port: b.Addr().Port, Meta: map[string]string{"version": v}})
		apis[v] = b
	}
	apis["v2"].SetFailureRate(0.2)

	webTr := tracing("web", "v7")
	upstream, err := demo.Dial(demo.Bootstrap(sb.XDSAddr, "web-1", "web"), "api", webTr.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { upstream.Close() })
	// Calls made before signalbox has served api would fail without a
	// server span; wait for web's xDS client to be ready, without a call.
	readyCtx, readyCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer readyCancel()
	upstream.Connect()
	for s := upstream.GetState(); s != connectivity.Ready; s = upstream.GetState() {
		if !upstream.WaitForStateChange(readyCtx, s) {
			t.Fatalf("web's xds:///api channel never became ready (last state %v)", s)
		}
	}
	web, err := demo.StartBackendWith("127.0.0.1:0", "web-1", "v7", demo.BackendOptions{ServerOptions: []grpc.ServerOption{webTr.ServerOption()}, Upstream: upstream})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(web.Stop)

	// The load generator is not traced: web's server spans are roots
	// without a remote service, which Zipkin's rules do not link.
	cc, err := grpc.NewClient("passthrough:///"+web.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	const calls = 300
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < calls; i++ {
		demo.Call(ctx, cc)
	}
	v1, v2 := apis["v1"].Calls(), apis["v2"].Calls()
	v2Failed := apis["v2"].Failures()
	if v1+v2 < calls || v1 == 0 || v2 == 0 {
		t.Fatalf("api got v1=%d v2=%d calls of %d: the spread is off before any span counts", v1, v2, calls)
	}

	type edge struct {
		Source, Target   string
		Protocol         string
		Requests, Errors uint64
	}
	var g struct{ Edges []edge }
	var last string
	defer func() {
		if t.Failed() {
			t.Logf("last graph: %s", last)
		}
	}()
	want := map[string][2]uint64{"web@v7 → api@v1": {v1, 0}, "web@v7 → api@v2": {v2, v2Failed}}
	eventually(t, 30*time.Second, "the graph shows the spans' calls", func() bool {
		var code int
		code, last = sb.get("/api/v1/graph?window=5m&by=version")
		g.Edges = nil
		if code != 200 || json.Unmarshal([]byte(last), &g) != nil {
			return false
		}
		got := map[string][2]uint64{}
		for _, e := range g.Edges {
			got[e.Source+" → "+e.Target] = [2]uint64{e.Requests, e.Errors}
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	})
	for _, e := range g.Edges {
		if e.Protocol != "grpc" {
			t.Errorf("%s → %s: protocol %q, want grpc", e.Source, e.Target, e.Protocol)
		}
	}
	// Zipkin's dependency shape, at service granularity.
	var deps []struct {
		Parent, Child         string
		CallCount, ErrorCount uint64
	}
	sb.getJSON(fmt.Sprintf("/api/v2/dependencies?endTs=%d&lookback=600000", time.Now().Add(time.Minute).UnixMilli()), &deps)
	if len(deps) != 1 || deps[0].Parent != "web" || deps[0].Child != "api" || deps[0].CallCount != v1+v2 || deps[0].ErrorCount != v2Failed {
		t.Errorf("dependencies %+v, want web → api with %d calls, %d errors", deps, v1+v2, v2Failed)
	}
}
