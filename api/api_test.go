package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalbox/signalbox/topology"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestReadinessSaysWhy(t *testing.T) {
	ready := false
	h := New(Deps{Ready: func() (bool, string) {
		if ready {
			return true, "ready"
		}
		return false, "waiting for the first complete catalog from Consul"
	}})
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the first complete catalog") {
		t.Fatalf("not ready: %d %q", code, body)
	}
	ready = true
	if code, _ := get(t, h, "/readyz"); code != http.StatusOK {
		t.Fatalf("ready: %d", code)
	}
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("healthz: %d", code)
	}
}

func TestDebugViewsAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "signalbox_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	h := New(Deps{Gatherer: reg, Debug: map[string]func() any{
		"xds/clients": func() any { return []map[string]string{{"nodeId": "n1"}} },
		"consul":      func() any { return "ok" },
		"rollouts":    func() any { return "ok" },
	}})
	code, body := get(t, h, "/debug/xds/clients")
	if code != http.StatusOK || !strings.Contains(body, `"nodeId": "n1"`) {
		t.Fatalf("debug view: %d %s", code, body)
	}
	code, body = get(t, h, "/debug/")
	var index struct{ Views []string }
	if err := json.Unmarshal([]byte(body), &index); err != nil || code != http.StatusOK {
		t.Fatalf("debug index: %d %v %s", code, err, body)
	}
	want := []string{"/debug/consul", "/debug/rollouts", "/debug/xds/clients", "/debug/pprof/"}
	if !slices.Equal(index.Views, want) {
		t.Fatalf("debug index: %v, want %v (in that order)", index.Views, want)
	}
	if code, body = get(t, h, "/metrics"); code != http.StatusOK || !strings.Contains(body, "signalbox_test_total 3") {
		t.Fatalf("metrics: %d %s", code, body)
	}
}

func TestUnknownPathIsAClearJSONError(t *testing.T) {
	code, body := get(t, New(Deps{}), "/api/v9/nothing")
	var e Error
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("404 body is not JSON: %v %q", err, body)
	}
	if code != http.StatusNotFound || !strings.Contains(e.Error, "/api/v9/nothing") || e.Hint == "" {
		t.Fatalf("got %d %+v", code, e)
	}
}

func TestWrongMethodIs405WithAllow(t *testing.T) {
	h := New(Deps{Graph: topology.New(topology.Options{})})
	for _, c := range []struct {
		method, path, allow string
	}{
		{http.MethodPost, "/api/v1/graph", "GET, HEAD"},
		{http.MethodDelete, "/healthz", "GET, HEAD"},
		{http.MethodGet, "/api/v2/spans", ""}, // no span collector: no such endpoint
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader("{}")))
		var e Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v %q", c.method, c.path, err, rec.Body)
		}
		if c.allow == "" {
			if rec.Code != http.StatusNotFound {
				t.Errorf("%s %s: %d, want 404", c.method, c.path, rec.Code)
			}
			continue
		}
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != c.allow || !strings.Contains(e.Error, "method not allowed; use GET") {
			t.Errorf("%s %s: %d Allow %q %+v, want 405 with Allow %q", c.method, c.path, rec.Code, rec.Header().Get("Allow"), e, c.allow)
		}
	}
}

func TestGraphEndpoint(t *testing.T) {
	store := topology.New(topology.Options{})
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 30; i++ {
		store.Record(topology.Observation{Time: now, Source: topology.Node{Service: "web", Version: "v1"}, Target: topology.Node{Service: "api", Version: "v2"}, Protocol: topology.HTTP, Status: 200, GRPCStatus: -1, Latency: time.Millisecond})
	}
	h := New(Deps{Graph: store, Now: func() time.Time { return now }})
	code, body := get(t, h, "/api/v1/graph?window=1m&by=version")
	var g topology.Graph
	if err := json.Unmarshal([]byte(body), &g); err != nil || code != http.StatusOK {
		t.Fatalf("graph: %d %v %s", code, err, body)
	}
	if len(g.Edges) != 1 || g.Edges[0].Source != "web@v1" || g.Edges[0].Target != "api@v2" || g.Edges[0].Requests != 30 || g.Window != "1m0s" {
		t.Fatalf("graph: %+v", g)
	}
	for _, bad := range []string{"?window=soon", "?window=-1m", "?window=48h", "?by=team"} {
		code, body := get(t, h, "/api/v1/graph"+bad)
		var e Error
		if json.Unmarshal([]byte(body), &e) != nil || code != http.StatusBadRequest || e.Error == "" || e.Hint == "" {
			t.Errorf("%s: %d %s, want a 400 saying what to fix", bad, code, body)
		}
	}
}
