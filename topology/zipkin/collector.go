package zipkin

import (
	"bytes"
	"container/list"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signalbox/signalbox/topology"
)

// Recorder takes observations; *topology.Store is one.
type Recorder interface {
	// Record adds a call to its edge, counted once per request (the graph).
	Record(topology.Observation) bool
	// RecordServed adds what a service saw arriving: only Target, Time,
	// the status and latency matter.
	RecordServed(topology.Observation) bool
}

var _ Recorder = (*topology.Store)(nil)

// Options size the collector. Zero values take the defaults.
type Options struct {
	// Settle is how long a trace must be quiet before it is linked
	// (default 5s: senders batch spans for a few seconds).
	Settle time.Duration
	// FlushEvery is Run's tick (default 1s).
	FlushEvery time.Duration
	// MaxBodyBytes caps a request body as sent (default 5 MiB).
	MaxBodyBytes int64
	// MaxDecodedBytes caps a body after gunzip (default 20 MiB): a small
	// gzip bomb cannot inflate past it.
	MaxDecodedBytes int64
	// MaxRequestSpans caps the spans of one request (default 10,000).
	MaxRequestSpans int
	// MaxPendingTraces caps the traces waiting to settle (default 20,000).
	MaxPendingTraces int
	// MaxPendingSpans caps the spans waiting to settle (default 100,000).
	MaxPendingSpans int
	// MaxTraceSpans caps the spans of one trace held at a time (default
	// 1,000). A trace that reaches it is linked, and later spans start
	// over (they join it through the memory of linked traces).
	MaxTraceSpans int
	// RecentSpans caps the spans of linked traces remembered for late
	// spans (default 50,000; negative: remember none).
	RecentSpans int
	// Remember is how long a linked trace is remembered (default 1m).
	Remember time.Duration
	// Logger (default: discard).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Settle <= 0 {
		o.Settle = 5 * time.Second
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = time.Second
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 5 << 20
	}
	if o.MaxDecodedBytes <= 0 {
		o.MaxDecodedBytes = 20 << 20
	}
	if o.MaxRequestSpans <= 0 {
		o.MaxRequestSpans = 10000
	}
	if o.MaxPendingTraces <= 0 {
		o.MaxPendingTraces = 20000
	}
	if o.MaxPendingSpans <= 0 {
		o.MaxPendingSpans = 100000
	}
	if o.MaxTraceSpans <= 0 {
		o.MaxTraceSpans = 1000
	}
	if o.RecentSpans == 0 {
		o.RecentSpans = 50000
	}
	if o.Remember <= 0 {
		o.Remember = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Reasons a trace is linked before it settled.
const (
	EarlyPendingTraces = "max_pending_traces"
	EarlyPendingSpans  = "max_pending_spans"
	EarlyTraceSpans    = "max_trace_spans"
)

// EarlyReasons lists the reasons a trace is linked before it settled.
func EarlyReasons() []string {
	return []string{EarlyPendingTraces, EarlyPendingSpans, EarlyTraceSpans}
}

// Collector buffers spans per trace, links settled traces and records
// their calls. It is the http.Handler of POST /api/v2/spans. It is safe
// for concurrent use.
type Collector struct {
	opts Options
	rec  Recorder
	now  func() time.Time
	bufs sync.Pool

	mu           sync.Mutex
	pending      map[uint64]*pendingTrace
	pendingOrder list.List // of *pendingTrace, least recently added to first
	pendingSpans int

	// linkMu serialises linking, so that a trace linked twice (early, then
	// its late spans) always sees what the other recorded.
	linkMu      sync.Mutex
	recent      map[uint64]*recentTrace
	recentOrder list.List // of *recentTrace, linked longest ago first
	recentSpans int

	// Requests is every request to the handler; Rejected those refused
	// (see RejectedFor).
	Requests, Rejected atomic.Uint64
	// Spans were decoded and buffered; LateSpans of them joined a trace
	// already linked.
	Spans, LateSpans atomic.Uint64
	// Traces counts linkings (a trace with late spans is linked again);
	// EarlyLinked those linked before they settled (see EarlyLinkedFor).
	Traces, EarlyLinked atomic.Uint64
	// Calls and Served were recorded; Dropped were refused by the recorder
	// (the store's edge cap).
	Calls, Served, Dropped atomic.Uint64
	// CallsByALS and ServedByALS were left out, each once, because a
	// sidecar's access logs counted them in signalbox's ALS (see
	// LinkTrace).
	CallsByALS, ServedByALS atomic.Uint64

	rejected [4]atomic.Uint64
	early    [3]atomic.Uint64
}

type pendingTrace struct {
	key   uint64
	spans []*tracked
	last  time.Time
	elem  *list.Element
}

type recentTrace struct {
	key    uint64
	spans  []*tracked
	linked time.Time
	elem   *list.Element
}

// NewCollector records into rec. now stamps arriving spans (time.Now when
// nil).
func NewCollector(rec Recorder, now func() time.Time, o Options) *Collector {
	if now == nil {
		now = time.Now
	}
	return &Collector{
		opts:    o.withDefaults(),
		rec:     rec,
		now:     now,
		pending: map[uint64]*pendingTrace{},
		recent:  map[uint64]*recentTrace{},
		bufs:    sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
}

// RejectedFor is how many requests were refused for a reason (see
// RejectReasons).
func (c *Collector) RejectedFor(reason string) uint64 {
	for i, r := range RejectReasons() {
		if r == reason {
			return c.rejected[i].Load()
		}
	}
	return 0
}

// EarlyLinkedFor is how many traces were linked before they settled, for a
// reason (see EarlyReasons).
func (c *Collector) EarlyLinkedFor(reason string) uint64 {
	for i, r := range EarlyReasons() {
		if r == reason {
			return c.early[i].Load()
		}
	}
	return 0
}

func (c *Collector) countEarly(reason string) {
	for i, r := range EarlyReasons() {
		if r == reason {
			c.early[i].Add(1)
		}
	}
	c.EarlyLinked.Add(1)
}

// Pending is the traces and spans waiting to settle.
func (c *Collector) Pending() (traces, spans int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending), c.pendingSpans
}

// Remembered is the spans of linked traces kept for late spans.
func (c *Collector) Remembered() int {
	c.linkMu.Lock()
	defer c.linkMu.Unlock()
	return c.recentSpans
}

// Add buffers spans that arrived at now. A trace that would pass a cap is
// linked at once instead.
func (c *Collector) Add(now time.Time, spans []Span) {
	if len(spans) == 0 {
		return
	}
	var early []*pendingTrace
	c.mu.Lock()
	for i := range spans {
		k := spans[i].TraceID.Low // 64- and 128-bit ids of one trace meet
		pt := c.pending[k]
		if pt != nil && len(pt.spans) >= c.opts.MaxTraceSpans {
			early = append(early, c.takeLocked(pt))
			c.countEarly(EarlyTraceSpans)
			pt = nil
		}
		if c.pendingSpans >= c.opts.MaxPendingSpans {
			oldest := c.takeLocked(c.pendingOrder.Front().Value.(*pendingTrace))
			early = append(early, oldest)
			c.countEarly(EarlyPendingSpans)
			if oldest == pt {
				pt = nil
			}
		}
		if pt == nil {
			if len(c.pending) >= c.opts.MaxPendingTraces {
				early = append(early, c.takeLocked(c.pendingOrder.Front().Value.(*pendingTrace)))
				c.countEarly(EarlyPendingTraces)
			}
			pt = &pendingTrace{key: k}
			pt.elem = c.pendingOrder.PushBack(pt)
			c.pending[k] = pt
		} else {
			c.pendingOrder.MoveToBack(pt.elem)
		}
		pt.spans = append(pt.spans, &tracked{Span: spans[i], arrived: now})
		pt.last = now
		c.pendingSpans++
	}
	c.mu.Unlock()
	c.Spans.Add(uint64(len(spans)))
	if len(early) > 0 {
		c.link(early, now)
	}
}

func (c *Collector) takeLocked(pt *pendingTrace) *pendingTrace {
	c.pendingOrder.Remove(pt.elem)
	delete(c.pending, pt.key)
	c.pendingSpans -= len(pt.spans)
	return pt
}

// Flush links and records every trace quiet since now − Settle, and
// forgets linked traces older than Remember. It reports how many traces it
// linked. It reads no clock: Run calls it on a ticker.
func (c *Collector) Flush(now time.Time) int {
	cutoff := now.Add(-c.opts.Settle)
	var due []*pendingTrace
	c.mu.Lock()
	for e := c.pendingOrder.Front(); e != nil; e = c.pendingOrder.Front() {
		pt := e.Value.(*pendingTrace)
		if pt.last.After(cutoff) {
			break
		}
		due = append(due, c.takeLocked(pt))
	}
	c.mu.Unlock()
	c.link(due, now)
	c.linkMu.Lock()
	defer c.linkMu.Unlock()
	for e := c.recentOrder.Front(); e != nil; e = c.recentOrder.Front() {
		r := e.Value.(*recentTrace)
		if now.Sub(r.linked) < c.opts.Remember {
			break
		}
		c.forgetLocked(r)
	}
	return len(due)
}

// Run flushes every FlushEvery until ctx ends. It returns nil: it has no
// failure of its own.
func (c *Collector) Run(ctx context.Context) error {
	t := time.NewTicker(c.opts.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.Flush(c.now())
		}
	}
}

// link links traces, with the spans remembered of them, and records what
// was not recorded before.
func (c *Collector) link(traces []*pendingTrace, now time.Time) {
	if len(traces) == 0 {
		return
	}
	c.linkMu.Lock()
	defer c.linkMu.Unlock()
	for _, pt := range traces {
		spans := pt.spans
		if r := c.recent[pt.key]; r != nil {
			c.LateSpans.Add(uint64(len(pt.spans)))
			spans = append(append(make([]*tracked, 0, len(r.spans)+len(spans)), r.spans...), spans...)
			c.forgetLocked(r)
		}
		spans = mergeSpans(spans)
		var l linker
		l.link(spans)
		for _, o := range l.calls {
			if c.rec.Record(o) {
				c.Calls.Add(1)
			} else {
				c.Dropped.Add(1)
			}
		}
		for _, o := range l.served {
			if c.rec.RecordServed(o) {
				c.Served.Add(1)
			} else {
				c.Dropped.Add(1)
			}
		}
		c.CallsByALS.Add(uint64(l.callsByALS))
		c.ServedByALS.Add(uint64(l.servedByALS))
		c.Traces.Add(1)
		c.rememberLocked(pt.key, spans, now)
	}
}

func (c *Collector) rememberLocked(k uint64, spans []*tracked, now time.Time) {
	if c.opts.RecentSpans < 0 {
		return
	}
	if len(spans) > c.opts.MaxTraceSpans {
		spans = spans[len(spans)-c.opts.MaxTraceSpans:]
	}
	r := &recentTrace{key: k, spans: spans, linked: now}
	r.elem = c.recentOrder.PushBack(r)
	c.recent[k] = r
	c.recentSpans += len(spans)
	for c.recentSpans > c.opts.RecentSpans {
		c.forgetLocked(c.recentOrder.Front().Value.(*recentTrace))
	}
}

func (c *Collector) forgetLocked(r *recentTrace) {
	c.recentOrder.Remove(r.elem)
	delete(c.recent, r.key)
	c.recentSpans -= len(r.spans)
}
