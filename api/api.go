// Package api is signalbox's HTTP surface: health and readiness, Prometheus
// metrics, and the debug views of what the control plane sees and serves.
// the live graph (JSON, SSE, DOT, Grafana and Zipkin shapes), the release
// API with its bearer-token roles, and the dashboard.
package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/signalbox/signalbox/topology"
)

// Deps are the read views the handlers serve. Nil fields are left out.
type Deps struct {
	// Gatherer backs /metrics.
	Gatherer prometheus.Gatherer
	// Ready reports whether signalbox serves xDS yet, and why not.
	Ready func() (bool, string)
	// Debug maps a name under /debug/ to a function returning a
	// JSON-serialisable view, e.g. "xds/clients".
	Debug  map[string]func() any
	Logger *slog.Logger
	// Graph answers /api/v1/graph, its live stream and Zipkin's
	// /api/v2/dependencies; nil leaves them out.
	Graph GraphSource
	// Now is the clock of graph queries (default time.Now).
	Now func() time.Time
	// Heartbeat is the longest a graph stream stays silent: it sends the
	// graph again after this even when nothing changed (default 5s).
	Heartbeat time.Duration
	// StreamInterval is how often a graph stream recomputes its graph, at
	// most (default 1s).
	StreamInterval time.Duration
	// Spans is the Zipkin collector behind /api/v2/spans (it answers every
	// method itself, refusing all but POST); nil leaves it out.
	Spans http.Handler
	// Releases backs /api/v1/rollouts; nil leaves the release API out.
	Releases Releases
	// Tokens are the bearer tokens of the release API; nil makes it
	// read-only (every mutation answers 403 with how to enable it).
	Tokens *Tokens
}

// GraphSource is the live call graph (topology.Store).
type GraphSource interface {
	Graph(now time.Time, window time.Duration, by topology.By) (topology.Graph, error)
}

// New returns the HTTP handler.
func New(d Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := true, "ready"
		if d.Ready != nil {
			ok, why = d.Ready()
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = w.Write([]byte(why + "\n"))
	})
	if d.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(d.Gatherer, promhttp.HandlerOpts{}))
	}
	names := make([]string, 0, len(d.Debug))
	for name, view := range d.Debug {
		names = append(names, "/debug/"+name)
		mux.HandleFunc("GET /debug/"+name, func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, view())
		})
	}
	slices.Sort(names)
	// Profiles: the HTTP address is loopback by default; expose it with care.
	if d.Spans != nil {
		mux.Handle("/api/v2/spans", d.Spans)
	}
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"views": append(names, "/debug/pprof/"), "time": time.Now().UTC()})
	})
	if d.Graph != nil {
		registerGraph(mux, d)
	}
	if d.Releases != nil {
		registerRollouts(mux, d.Releases, d.Tokens)
	}
	registerOpenAPI(mux)
	registerUI(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// The catch-all also catches a known path with the wrong method,
		// which deserves a 405 that names the right ones.
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, Error{Error: fmt.Sprintf("%s %s: method not allowed; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))})
			return
		}
		writeJSON(w, http.StatusNotFound, Error{Error: "no such endpoint: " + r.Method + " " + r.URL.Path, Hint: "see /api/v1/openapi.yaml for the API, /debug/ for the debug views, /metrics for Prometheus"})
	})
	return mux
}

// allowedMethods are the methods other than r's that mux serves r's path
// with (not by the catch-all).
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
	Hint  string `json:"hint,omitempty"`
}

// writeJSON answers v, encoded before anything is written, so that a value
// JSON cannot hold (a NaN) is a clear 500 and not a truncated 200.
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		body, _ = json.Marshal(Error{Error: "encode the answer: " + err.Error(), Hint: "this is a bug in signalbox: please report it"})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}
