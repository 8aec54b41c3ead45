package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/signalbox/signalbox/topology"
)

// The graph API:
//
//	GET /api/v1/graph?window=5m&by=service|version&format=json|dot|nodegraph
//	GET /api/v1/graph/stream?window=5m&by=service|version   (Server-Sent Events)
//	GET /api/v2/dependencies?endTs=<ms>&lookback=<ms>        (Zipkin's dependency links)

// Graph formats of /api/v1/graph.
const (
	formatJSON      = "json"
	formatDOT       = "dot"
	formatNodeGraph = "nodegraph"
)

const graphHint = "e.g. /api/v1/graph?window=5m&by=service&format=json (format: json, dot or nodegraph)"

// registerGraph adds the graph endpoints; d.Graph is not nil.
func registerGraph(mux *http.ServeMux, d Deps) {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Encoding buffers and the store's graphs are reused: a 5,000-edge
	// answer is 1.2 MB and its graph 1 MB, and new ones per query were
	// most of the garbage a dashboard makes; the collections it set off
	// were most of the slow queries.
	pools := &graphPools{}
	mux.HandleFunc("GET /api/v1/graph", func(w http.ResponseWriter, r *http.Request) {
		serveGraph(w, r, d.Graph, now, pools)
	})
	hub := newGraphHub(d.Graph, now, d.StreamInterval, d.Heartbeat, log.With("part", "graph-stream"))
	mux.HandleFunc("GET /api/v1/graph/stream", hub.serveHTTP)
	mux.HandleFunc("GET /api/v2/dependencies", func(w http.ResponseWriter, r *http.Request) {
		serveDependencies(w, r, d.Graph, now)
	})
}

// graphPools are serveGraph's reused memory.
type graphPools struct {
	bufs   sync.Pool // *[]byte: encoding buffers
	graphs sync.Pool // *topology.Graph: the store's answers, once encoded
}

// serveGraph answers GET /api/v1/graph in the format asked for.
func serveGraph(w http.ResponseWriter, r *http.Request, src GraphSource, now func() time.Time, pools *graphPools) {
	window, by, err := graphParams(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Error{Error: err.Error(), Hint: graphHint})
		return
	}
	format := r.URL.Query().Get("format")
	switch format {
	case "", formatJSON, formatDOT, formatNodeGraph:
	default:
		writeJSON(w, http.StatusBadRequest, Error{Error: fmt.Sprintf("format=%q: want json, dot or nodegraph", format), Hint: graphHint})
		return
	}
	// JSON from the store itself is made in a reused graph. (Only the store
	// itself: a GraphSource that wraps one, and so has its GraphInto, may
	// answer Graph differently.)
	var (
		g      topology.Graph
		pooled *topology.Graph
	)
	if store, ok := src.(*topology.Store); ok && (format == "" || format == formatJSON) {
		if pooled, _ = pools.graphs.Get().(*topology.Graph); pooled == nil {
			pooled = new(topology.Graph)
		}
		err = store.GraphInto(pooled, now(), window, by)
		g = *pooled
	} else {
		g, err = src.Graph(now(), window, by)
	}
	if err != nil {
		if pooled != nil {
			pools.graphs.Put(pooled)
		}
		writeJSON(w, http.StatusBadRequest, Error{Error: err.Error(), Hint: graphHint})
		return
	}
	switch format {
	case formatDOT:
		w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
		var b strings.Builder
		writeDOT(&b, g, by)
		_, _ = io.WriteString(w, b.String())
	case formatNodeGraph:
		writeJSONCompact(w, http.StatusOK, toNodeGraph(g))
	default:
		buf, _ := pools.bufs.Get().(*[]byte)
		if buf == nil {
			buf = new([]byte)
		}
		roundGraph(&g)
		body, err := appendGraphJSON((*buf)[:0], g)
		if pooled != nil {
			*pooled = g
			pools.graphs.Put(pooled)
		}
		if err != nil {
			pools.bufs.Put(buf)
			writeJSON(w, http.StatusInternalServerError, Error{Error: err.Error()})
			return
		}
		body = append(body, '\n')
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
		*buf = body
		pools.bufs.Put(buf)
	}
}

// graphParams reads window (a duration, default 5m, at most 24h) and by
// (service or version, default service).
func graphParams(r *http.Request) (time.Duration, topology.By, error) {
	q := r.URL.Query()
	window := 5 * time.Minute
	if v := q.Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 24*time.Hour {
			return 0, "", fmt.Errorf("window=%q: want a duration between 1s and 24h, like 1m, 5m or 15m", v)
		}
		window = d
	}
	by := topology.ByService
	if v := q.Get("by"); v != "" {
		by = topology.By(v)
		if by != topology.ByService && by != topology.ByVersion {
			return 0, "", fmt.Errorf("by=%q: want service or version", v)
		}
	}
	return window, by, nil
}

// writeJSONCompact is writeJSON without the indentation, for the graph:
// at thousands of edges, indentation is a third more bytes to write and read.
func writeJSONCompact(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, Error{Error: "encode the answer: " + err.Error(), Hint: "this is a bug in signalbox: please report it"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}
