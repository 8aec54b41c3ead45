package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/signalbox/signalbox/topology"
	"google.golang.org/grpc/test/bufconn"
)

// countingSource is a real store that counts the graph queries made of
// it, per (window, by).
type countingSource struct {
	*topology.Store
	mu    sync.Mutex
	calls map[string]int
}

func newCountingSource() *countingSource {
	return &countingSource{Store: topology.New(topology.Options{}), calls: map[string]int{}}
}

func (c *countingSource) Graph(now time.Time, window time.Duration, by topology.By) (topology.Graph, error) {
	c.mu.Lock()
	c.calls[window.String()+"/"+string(by)]++
	c.mu.Unlock()
	return c.Store.Graph(now, window, by)
}

func (c *countingSource) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[key]
}

// pipeServer is httptest's server and client, HTTP/1.1 over in-memory pipes.
func pipeServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close() // the loopback socket it made is not used
	// In a synctest bubble a goroutine blocked on a real socket would keep
	// the fake clock from moving: gRPC's in-memory listener blocks on
	// channels and conditions made in the bubble instead.
	l := bufconn.Listen(1 << 20)
	srv.Listener = l
	srv.Start()
	srv.Client().Transport.(*http.Transport).DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return l.DialContext(ctx)
	}
	t.Cleanup(srv.Close)
	return srv
}

type sseEvent struct {
	name string
	data string
}

// sseStream is a client of one event stream.
type sseStream struct {
	header http.Header
	retry  chan string
	events chan sseEvent
	cancel context.CancelFunc
}

// openStream connects to path and reads its events in the background
// until close.
func openStream(t *testing.T, srv *httptest.Server, path string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	s := &sseStream{header: resp.Header, retry: make(chan string, 1), events: make(chan sseEvent, 100), cancel: cancel}
	// Before the server's Close, which waits for the handlers.
	t.Cleanup(cancel)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		var ev sseEvent
		for sc.Scan() {
			field, value, _ := strings.Cut(sc.Text(), ": ")
			switch field {
			case "retry":
				s.retry <- value
			case "event":
				ev.name = value
			case "data":
				ev.data = value
			case "":
				if ev.data != "" {
					select {
					case s.events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			}
		}
		close(s.events)
	}()
	return s
}

func (s *sseStream) close() { s.cancel() }

// next waits for the next graph event, at most a minute of (fake) time.
func (s *sseStream) next(t *testing.T) topology.Graph {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("stream ended")
		}
		if ev.name != "graph" {
			t.Fatalf("event %q, want graph", ev.name)
		}
		var g topology.Graph
		if err := json.Unmarshal([]byte(ev.data), &g); err != nil {
			t.Fatalf("event data is not a graph: %v %q", err, ev.data)
		}
		return g
	case <-time.After(time.Minute):
		t.Fatal("no event for a minute")
	}
	return topology.Graph{}
}

func requests(g topology.Graph) uint64 {
	var n uint64
	for _, e := range g.Edges {
		n += e.Requests
	}
	return n
}

func TestGraphStreamSendsAtOnceOnChangeAndOnHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newCountingSource()
		recordCalls(src.Store, time.Now(), "web@v1", "api@v1", topology.HTTP, 10, 0, time.Millisecond)
		srv := pipeServer(t, New(Deps{Graph: src, Heartbeat: 3 * time.Second}))

		start := time.Now()
		s := openStream(t, srv, "/api/v1/graph/stream?window=1m&by=version")
		defer s.close()
		if ct, cc := s.header.Get("Content-Type"), s.header.Get("Cache-Control"); ct != "text/event-stream" || cc != "no-cache" {
			t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
		}
		if r := <-s.retry; r != "2000" {
			t.Errorf("retry: %q, want 2000", r)
		}
		g := s.next(t)
		if time.Since(start) != 0 || requests(g) != 10 || len(g.Edges) != 1 || g.Edges[0].Source != "web@v1" {
			t.Fatalf("after %v: first event %+v, want the graph at once", time.Since(start), g)
		}

		// A change goes out at the next recompute, within a second.
		changed := time.Now()
		recordCalls(src.Store, time.Now(), "web@v1", "api@v1", topology.HTTP, 5, 0, time.Millisecond)
		if g = s.next(t); requests(g) != 15 || time.Since(changed) > time.Second {
			t.Fatalf("after %v: %d requests, want 15 within a second", time.Since(changed), requests(g))
		}

		// Nothing changes: the graph comes again after the heartbeat, and
		// not before.
		sent := time.Now()
		if g = s.next(t); requests(g) != 15 || time.Since(sent) != 3*time.Second {
			t.Fatalf("heartbeat after %v with %d requests, want 3s and 15", time.Since(sent), requests(g))
		}
		if !g.GeneratedAt.Equal(time.Now()) {
			t.Errorf("heartbeat graph generated at %v, want now (%v)", g.GeneratedAt, time.Now())
		}
	})
}

// failingSource is a real store whose queries fail while fail is set.
type failingSource struct {
	*topology.Store
	fail atomic.Bool
}

func (f *failingSource) Graph(now time.Time, window time.Duration, by topology.By) (topology.Graph, error) {
	if f.fail.Load() {
		return topology.Graph{}, errors.New("the store is on fire")
	}
	return f.Store.Graph(now, window, by)
}

func TestGraphStreamTellsOfFailedQueries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &failingSource{Store: topology.New(topology.Options{})}
		recordCalls(src.Store, time.Now(), "web@v1", "api@v1", topology.HTTP, 10, 0, time.Millisecond)
		srv := pipeServer(t, New(Deps{Graph: src, Heartbeat: 3 * time.Second}))
		s := openStream(t, srv, "/api/v1/graph/stream?window=1m")
		defer s.close()
		if g := s.next(t); requests(g) != 10 {
			t.Fatalf("first graph: %d requests, want 10", requests(g))
		}

		src.fail.Store(true)
		var ev sseEvent
		select {
		case ev = <-s.events:
		case <-time.After(time.Minute):
			t.Fatal("no event for a minute after the queries began to fail")
		}
		var e Error
		if err := json.Unmarshal([]byte(ev.data), &e); ev.name != "graph-error" || err != nil || !strings.Contains(e.Error, "the store is on fire") {
			t.Fatalf("event %q %q (%v), want an error event saying why", ev.name, ev.data, err)
		}
		// Said once, not every second; no graph while it lasts.
		select {
		case ev := <-s.events:
			t.Fatalf("while failing: event %q %q, want none", ev.name, ev.data)
		case <-time.After(10 * time.Second):
		}

		src.fail.Store(false)
		back := time.Now()
		if g := s.next(t); requests(g) != 10 || time.Since(back) > time.Second {
			t.Fatalf("after %v: %d requests, want the graph back within a second", time.Since(back), requests(g))
		}
	})
}

func TestGraphStreamSubscribersShareOneProducer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newCountingSource()
		recordCalls(src.Store, time.Now(), "web@v1", "api@v1", topology.HTTP, 10, 0, time.Millisecond)
		srv := pipeServer(t, New(Deps{Graph: src}))

		var streams []*sseStream
		for range 3 {
			streams = append(streams, openStream(t, srv, "/api/v1/graph/stream?window=5m&by=service"))
		}
		other := openStream(t, srv, "/api/v1/graph/stream?window=1m&by=version")
		for _, s := range append(streams, other) {
			s.next(t)
		}
		// Ten and a half seconds: the first query and ten recomputes per
		// key, whatever the number of subscribers.
		time.Sleep(10*time.Second + 500*time.Millisecond)
		synctest.Wait()
		if n := src.count("5m0s/service"); n != 11 {
			t.Errorf("3 subscribers of 5m/service: %d graph queries in 10.5s, want 11", n)
		}
		if n := src.count("1m0s/version"); n != 11 {
			t.Errorf("1 subscriber of 1m/version: %d graph queries in 10.5s, want 11", n)
		}
		// Every subscriber got the same heartbeats: at 5s and 10s.
		for i, s := range streams {
			if n := len(s.events); n != 2 {
				t.Errorf("subscriber %d: %d events in 10.5s, want 2 heartbeats", i, n)
			}
		}
		// A late subscriber has the latest graph at once, without a query.
		start := time.Now()
		late := openStream(t, srv, "/api/v1/graph/stream?window=5m&by=service")
		if g := late.next(t); time.Since(start) != 0 || requests(g) != 10 || src.count("5m0s/service") != 11 {
			t.Errorf("late subscriber: %d requests after %v, %d queries", requests(g), time.Since(start), src.count("5m0s/service"))
		}
		for _, s := range append(streams, other, late) {
			s.close()
		}
	})
}

func TestGraphStreamStopsWithItsLastSubscriber(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newCountingSource()
		srv := pipeServer(t, New(Deps{Graph: src}))
		const key = "5m0s/service"

		a := openStream(t, srv, "/api/v1/graph/stream")
		b := openStream(t, srv, "/api/v1/graph/stream")
		a.next(t)
		b.next(t)
		a.close()
		synctest.Wait()
		before := src.count(key)
		time.Sleep(5 * time.Second)
		synctest.Wait() // the tick at 5s too
		if n := src.count(key) - before; n != 5 {
			t.Fatalf("with one subscriber left: %d queries in 5s, want 5", n)
		}

		b.close()
		synctest.Wait()
		before = src.count(key)
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := src.count(key) - before; n != 0 {
			t.Fatalf("without subscribers: %d queries in a minute, want none", n)
		}

		// A new subscriber starts a new producer, and has the graph at once.
		start := time.Now()
		c := openStream(t, srv, "/api/v1/graph/stream")
		defer c.close()
		c.next(t)
		if time.Since(start) != 0 || src.count(key) != before+1 {
			t.Fatalf("resubscribed: event after %v, %d queries", time.Since(start), src.count(key)-before)
		}
		// synctest.Test fails if a producer or handler goroutine is left.
	})
}

func TestGraphStreamOverTCP(t *testing.T) {
	store := topology.New(topology.Options{})
	recordCalls(store, time.Now(), "web@v1", "api@v1", topology.GRPC, 4, 1, time.Millisecond)
	srv := httptest.NewServer(New(Deps{Graph: store}))
	defer srv.Close() // waits for the handler: it must end when the client goes

	resp, err := http.Get(srv.URL + "/api/v1/graph/stream?by=typo")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantBadRequest(t, resp, string(body), `by="typo"`)

	s := openStream(t, srv, "/api/v1/graph/stream?by=version")
	defer s.close()
	select {
	case ev := <-s.events:
		var g topology.Graph
		if err := json.Unmarshal([]byte(ev.data), &g); err != nil || ev.name != "graph" || len(g.Edges) != 1 || g.Edges[0].Errors != 1 {
			t.Fatalf("event %q: %v %+v", ev.name, err, g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event 10s after connecting")
	}
}
