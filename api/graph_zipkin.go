package api

import (
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/signalbox/signalbox/topology"
)

// dependencyLink is Zipkin's DependencyLink (zipkin2-api.yaml): the calls
// from one service to another.
type dependencyLink struct {
	Parent     string `json:"parent"`
	Child      string `json:"child"`
	CallCount  uint64 `json:"callCount"`
	ErrorCount uint64 `json:"errorCount"`
}

// maxLookback bounds a Zipkin lookback before it reaches the store.
const maxLookback = 366 * 24 * time.Hour

const dependenciesHint = "e.g. /api/v2/dependencies?endTs=1700000000000&lookback=3600000 (epoch milliseconds; lookback in milliseconds)"

// serveDependencies answers Zipkin's GET /api/v2/dependencies, so tools
// that read Zipkin (its UI, Grafana's Zipkin data source) can draw the
// service graph. The links are at service granularity, every protocol
// summed, over lookback ms ending at endTs, cut to what the store holds.
// Unlike Zipkin, endTs may be left out (now).
func serveDependencies(w http.ResponseWriter, r *http.Request, src GraphSource, now func() time.Time) {
	end, window, err := dependencyParams(r.URL.Query(), now())
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Error{Error: err.Error(), Hint: dependenciesHint})
		return
	}
	g, err := src.Graph(end, window, topology.ByService)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Error{Error: err.Error(), Hint: dependenciesHint})
		return
	}
	writeJSON(w, http.StatusOK, dependencyLinks(g))
}

// dependencyParams reads endTs (epoch ms, default now) and lookback (ms,
// default endTs: everything there is), as Zipkin does.
func dependencyParams(q url.Values, now time.Time) (time.Time, time.Duration, error) {
	endMs := now.UnixMilli()
	if v := q.Get("endTs"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return time.Time{}, 0, fmt.Errorf("endTs=%q: should be positive, in epoch milliseconds", v)
		}
		endMs = n
	}
	lookback := endMs
	if v := q.Get("lookback"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return time.Time{}, 0, fmt.Errorf("lookback=%q: should be positive, in milliseconds", v)
		}
		lookback = n
	}
	// The store cuts long windows to what it holds, but its arithmetic
	// overflows near the largest durations: a year is more than any store
	// keeps.
	if lookback > maxLookback.Milliseconds() {
		lookback = maxLookback.Milliseconds()
	}
	return time.UnixMilli(endMs), time.Duration(lookback) * time.Millisecond, nil
}

// dependencyLinks sums a service graph's edges per (parent, child), over
// protocols, sorted by parent then child.
func dependencyLinks(g topology.Graph) []dependencyLink {
	type pair struct{ parent, child string }
	idx := map[pair]int{}
	links := []dependencyLink{}
	for _, e := range g.Edges {
		p := pair{e.Source, e.Target}
		i, ok := idx[p]
		if !ok {
			i = len(links)
			idx[p] = i
			links = append(links, dependencyLink{Parent: e.Source, Child: e.Target})
		}
		links[i].CallCount += e.Requests
		links[i].ErrorCount += e.Errors
	}
	sort.Slice(links, func(a, b int) bool {
		if links[a].Parent != links[b].Parent {
			return links[a].Parent < links[b].Parent
		}
		return links[a].Child < links[b].Child
	})
	return links
}
