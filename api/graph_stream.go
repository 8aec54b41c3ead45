package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/signalbox/signalbox/topology"
)

const (
	defaultStreamInterval = time.Second
	defaultHeartbeat      = 5 * time.Second
	// streamRetry is how long a browser's EventSource waits before it
	// reconnects a dropped stream.
	streamRetry = 2 * time.Second
)

// graphHub serves GET /api/v1/graph/stream. Subscribers of the same
// (window, by) share one producer, started by the first and stopped when
// the last leaves: it recomputes the graph at most every interval and hands
// each subscriber the same encoded event, so a hundred dashboards cost one
// graph query a second, not a hundred.
type graphHub struct {
	src       GraphSource
	now       func() time.Time
	interval  time.Duration
	heartbeat time.Duration
	log       *slog.Logger

	mu        sync.Mutex
	producers map[streamKey]*producer
}

// streamKey is what makes two streams the same.
type streamKey struct {
	window time.Duration
	by     topology.By
}

// producer computes one key's graph for its subscribers.
type producer struct {
	done chan struct{} // closed when the last subscriber leaves
	// subs and latest are guarded by graphHub.mu. Each subscriber's channel
	// holds at most one event: a slow reader skips to the newest.
	subs   map[chan []byte]struct{}
	latest []byte
}

func newGraphHub(src GraphSource, now func() time.Time, interval, heartbeat time.Duration, log *slog.Logger) *graphHub {
	if interval <= 0 {
		interval = defaultStreamInterval
	}
	if heartbeat <= 0 {
		heartbeat = defaultHeartbeat
	}
	if heartbeat < interval {
		interval = heartbeat
	}
	return &graphHub{src: src, now: now, interval: interval, heartbeat: heartbeat, log: log, producers: map[streamKey]*producer{}}
}

// serveHTTP streams the graph as Server-Sent Events: an event "graph" with
// the graph's JSON at once, then whenever it changes and at least every
// heartbeat.
func (h *graphHub) serveHTTP(w http.ResponseWriter, r *http.Request) {
	window, by, err := graphParams(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, Error{Error: err.Error(), Hint: "e.g. /api/v1/graph/stream?window=5m&by=service"})
		return
	}
	rc := http.NewResponseController(w)
	// A stream lasts longer than any write timeout the server may have.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no") // or nginx would buffer the stream
	if err := rc.Flush(); err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			writeJSON(w, http.StatusInternalServerError, Error{Error: "this connection cannot stream", Hint: "poll /api/v1/graph instead"})
		}
		return
	}
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", streamRetry.Milliseconds()); err != nil {
		return
	}
	events, leave := h.subscribe(streamKey{window: window, by: by})
	defer leave()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-events:
			if _, err := w.Write(ev); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

// subscribe joins key's producer, starting it if there is none. The
// channel has the latest event at once when there is one. leave must be
// called once.
func (h *graphHub) subscribe(key streamKey) (events <-chan []byte, leave func()) {
	ch := make(chan []byte, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.producers[key]
	if p == nil {
		p = &producer{done: make(chan struct{}), subs: map[chan []byte]struct{}{}}
		h.producers[key] = p
		go h.run(key, p)
	}
	p.subs[ch] = struct{}{}
	if p.latest != nil {
		ch <- p.latest
	}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(p.subs, ch)
		if len(p.subs) == 0 {
			close(p.done)
			delete(h.producers, key)
		}
	}
}

// run computes key's graph now and then every interval until p is done,
// and sends it when it changed or the last one is a heartbeat old.
func (h *graphHub) run(key streamKey, p *producer) {
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	var last topology.Graph
	var sentAt time.Time
	sent := false
	lastErr := ""
	for {
		start := time.Now()
		g, err := h.src.Graph(h.now(), key.window, key.by)
		var ev []byte
		if err == nil {
			// Rounded as /api/v1/graph is, and before the comparison
			// below: a change the answer does not show sends nothing.
			roundGraph(&g)
			ev, err = graphEvent(g)
		}
		switch {
		case err != nil:
			// Watchers hear of it (once, until it changes) rather than
			// see a graph that silently stopped moving.
			if msg := err.Error(); msg != lastErr {
				h.log.Warn("graph stream: no graph", "window", key.window, "by", key.by, "err", err)
				h.broadcastError(p, msg)
				lastErr = msg
			}
		// Half an interval of slack: a late tick must not push the
		// heartbeat a whole interval later.
		case !sent || lastErr != "" || !sameGraph(last, g) || start.Sub(sentAt) >= h.heartbeat-h.interval/2:
			h.broadcast(p, ev)
			last, sentAt, sent, lastErr = g, start, true, ""
		}
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
	}
}

// broadcast hands ev to every subscriber of p, replacing an event a slow
// subscriber has not taken yet.
func (h *graphHub) broadcast(p *producer, ev []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p.latest = ev
	for ch := range p.subs {
		select {
		case <-ch:
		default:
		}
		ch <- ev // cannot block: only the producer sends, under h.mu
	}
}

// broadcastError sends every subscriber of p an `event: graph-error`
// whose data is an Error. (Not "error": EventSource fires its own error
// event on a lost connection, and a page could not tell the two apart.) It is not kept as the latest event: a new subscriber gets
// the next graph, or the next error.
func (h *graphHub) broadcastError(p *producer, msg string) {
	data, _ := json.Marshal(Error{Error: "graph: " + msg, Hint: "the stream goes on and sends the graph again when it can"})
	ev := append(append([]byte("event: graph-error\ndata: "), data...), "\n\n"...)
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range p.subs {
		select {
		case <-ch:
		default:
		}
		ch <- ev
	}
}

// graphEvent is g as one SSE event. Compact JSON has no newline, so it
// fits on one data line.
func graphEvent(g topology.Graph) ([]byte, error) {
	ev := make([]byte, 0, graphJSONSize(g))
	ev = append(ev, "event: graph\ndata: "...)
	ev, err := appendGraphJSON(ev, g)
	if err != nil {
		return nil, err
	}
	return append(ev, "\n\n"...), nil
}

// sameGraph reports whether a and b differ only in when they were made.
func sameGraph(a, b topology.Graph) bool {
	a.GeneratedAt, b.GeneratedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}
