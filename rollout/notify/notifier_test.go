package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/signalbox/signalbox/rollout"
	"google.golang.org/grpc/test/bufconn"
)

// request is what a test webhook received.
type request struct {
	method, path string
	header       http.Header
	body         []byte
	at           time.Time
}

// webhook is a test endpoint: it records every request and answers with
// answer(n) for the n-th (0-based); answer 0 hangs until released or the
// request is cancelled.
type webhook struct {
	mu      sync.Mutex
	reqs    []request
	arrived chan struct{} // one send per request, never blocking
	release chan struct{}
	answer  func(n int) (status int, header http.Header)
}

func newWebhook(answer func(n int) (int, http.Header)) *webhook {
	return &webhook{arrived: make(chan struct{}, 1000), release: make(chan struct{}), answer: answer}
}

func ok(int) (int, http.Header) { return http.StatusNoContent, nil }

// statuses answers the given codes in turn, then 200.
func statuses(codes ...int) func(int) (int, http.Header) {
	return func(n int) (int, http.Header) {
		if n < len(codes) {
			return codes[n], nil
		}
		return http.StatusOK, nil
	}
}

func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.mu.Lock()
	n := len(w.reqs)
	w.reqs = append(w.reqs, request{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body, at: time.Now()})
	w.mu.Unlock()
	w.arrived <- struct{}{}
	status, header := w.answer(n)
	if status == 0 {
		select {
		case <-w.release:
			status = http.StatusOK
		case <-r.Context().Done():
			return
		}
	}
	for k, v := range header {
		rw.Header()[k] = v
	}
	rw.WriteHeader(status)
	fmt.Fprintf(rw, "answer %d", n)
}

func (w *webhook) requests() []request {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]request(nil), w.reqs...)
}

// result is a notification a webhook finished with.
type result struct {
	webhook int
	err     error
}

// start makes a notifier, hooks its finished notifications to a channel,
// and runs it until the test ends.
func start(t *testing.T, cfg Config, o Options) (*Notifier, <-chan result) {
	t.Helper()
	n := New(cfg, o)
	done := make(chan result, 1000)
	n.done = func(i int, err error) { done <- result{i, err} }
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := n.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return n, done
}

// deadline bounds every wait of the real-network tests: a hang fails the
// test instead of stalling it. Nothing waits for it to pass.
const deadline = 30 * time.Second

// wait takes the next n results.
func wait(t *testing.T, done <-chan result, n int) []result {
	t.Helper()
	var out []result
	timeout := time.After(deadline)
	for len(out) < n {
		select {
		case r := <-done:
			out = append(out, r)
		case <-timeout:
			t.Fatalf("%d of %d notifications finished within %v", len(out), n, deadline)
		}
	}
	return out
}

func arrived(t *testing.T, w *webhook) {
	t.Helper()
	select {
	case <-w.arrived:
	case <-time.After(deadline):
		t.Fatalf("no request within %v", deadline)
	}
}

// lockedBuffer is a log sink tests can read while the notifier writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func notifyAll(n *Notifier, changes []change) (count int) {
	for _, c := range changes {
		n.Notify(c.old, c.new)
		count += len(Events(c.old, c.new))
	}
	return count
}

func TestDeliversJSONInOrderFilteredByService(t *testing.T) {
	all, payments := newWebhook(ok), newWebhook(ok)
	allSrv, paymentsSrv := httptest.NewServer(all), httptest.NewServer(payments)
	defer allSrv.Close()
	defer paymentsSrv.Close()
	cfg := Config{Webhooks: []Webhook{
		{URL: allSrv.URL + "/hook", Headers: map[string]string{"X-Token": "s3cret"}},
		{URL: paymentsSrv.URL + "/hook", Services: []string{"payments"}, Format: FormatJSON},
	}}
	n, done := start(t, cfg, Options{})

	greeter := lifecycle(t, "greeter")
	sent := notifyAll(n, greeter)
	for _, r := range wait(t, done, sent) {
		if r.webhook != 0 || r.err != nil {
			t.Errorf("webhook %d: %v", r.webhook, r.err)
		}
	}
	if got := payments.requests(); len(got) != 0 {
		t.Errorf("the payments webhook heard of greeter: %d requests", len(got))
	}
	var want []Notification
	for _, c := range greeter {
		want = append(want, Events(c.old, c.new)...)
	}
	got := all.requests()
	if len(got) != len(want) {
		t.Fatalf("%d requests, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.method != http.MethodPost || r.path != "/hook" || r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Token") != "s3cret" {
			t.Errorf("request %d: %s %s %v", i, r.method, r.path, r.header)
		}
		var b jsonBody
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatalf("request %d: %v: %s", i, err, r.body)
		}
		if b.Reason != want[i].Reason || b.Kind != want[i].Kind || b.RolloutID != "greeter.3" || b.Text != want[i].Text() {
			t.Errorf("request %d (out of order?): %s, want %+v", i, r.body, want[i])
		}
		if want[i].Kind == KindDecision && (b.Stats == nil || b.Stats.Stats.Candidate.Requests == 0) {
			t.Errorf("request %d: a decision without its stats: %s", i, r.body)
		}
	}

	pay := lifecycle(t, "payments")
	sent = notifyAll(n, pay)
	wait(t, done, 2*sent)
	if len(payments.requests()) != sent || len(all.requests()) != len(want)+sent {
		t.Errorf("payments: %d and %d requests, want %d to the payments webhook and %d to the other", len(payments.requests()), len(all.requests()), sent, len(want)+sent)
	}
	if s := n.Stats(); s != (Stats{Delivered: uint64(len(want) + 2*sent)}) {
		t.Errorf("stats %+v", s)
	}
}

func TestDeliversOnlyTheKindsAsked(t *testing.T) {
	all, phases := newWebhook(ok), newWebhook(ok)
	allSrv, phasesSrv := httptest.NewServer(all), httptest.NewServer(phases)
	defer allSrv.Close()
	defer phasesSrv.Close()
	n, done := start(t, Config{Webhooks: []Webhook{
		{URL: allSrv.URL},
		{URL: phasesSrv.URL, Kinds: []string{KindPhase}},
	}}, Options{})

	var wantPhases []Notification
	greeter := lifecycle(t, "greeter")
	for _, c := range greeter {
		for _, e := range Events(c.old, c.new) {
			if e.Kind == KindPhase {
				wantPhases = append(wantPhases, e)
			}
		}
	}
	sent := notifyAll(n, greeter)
	if len(wantPhases) == 0 || len(wantPhases) == sent {
		t.Fatalf("the lifecycle has %d phase events of %d: the test needs some of each", len(wantPhases), sent)
	}
	wait(t, done, sent+len(wantPhases))
	if got := len(all.requests()); got != sent {
		t.Errorf("the webhook without kinds got %d notifications, want all %d", got, sent)
	}
	got := phases.requests()
	if len(got) != len(wantPhases) {
		t.Fatalf("the phase webhook got %d notifications, want the %d phase changes", len(got), len(wantPhases))
	}
	for i, r := range got {
		var b jsonBody
		if err := json.Unmarshal(r.body, &b); err != nil || b.Kind != KindPhase || b.To != wantPhases[i].To {
			t.Errorf("phase webhook, request %d: %s (%v), want the change to %s", i, r.body, err, wantPhases[i].To)
		}
	}
}

func TestSlackBody(t *testing.T) {
	w := newWebhook(ok)
	srv := httptest.NewServer(w)
	defer srv.Close()
	n, done := start(t, Config{Webhooks: []Webhook{{URL: srv.URL, Format: FormatSlack}}}, Options{})

	c := created("greeter.3", canarySpec("greeter"), "alice")
	paused, _, err := rollout.Step(c.new, rollout.Observation{Command: &rollout.Command{Kind: rollout.CmdPause, Actor: "bob", Reason: "<!channel> latency & errors"}}, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n.Notify(c.new, paused)
	wait(t, done, 2)
	var texts []string
	for _, r := range w.requests() {
		if r.header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
		}
		var body map[string]any
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		text, ok := body["text"].(string)
		if len(body) != 1 || !ok {
			t.Fatalf("slack body %s: want {\"text\": \"...\"} only", r.body)
		}
		texts = append(texts, text)
	}
	want := []string{
		":bust_in_silhouette: greeter.3 (v1 → v2) Progressing at step 1 (10%): bob: pause (&lt;!channel&gt; latency &amp; errors)",
		":double_vertical_bar: greeter.3 (v1 → v2) Paused at step 1 (10%): paused by bob (&lt;!channel&gt; latency &amp; errors)",
	}
	if strings.Join(texts, "\n") != strings.Join(want, "\n") {
		t.Errorf("texts\n%s\nwant\n%s", strings.Join(texts, "\n"), strings.Join(want, "\n"))
	}
}

func TestRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answers  []int
		attempts int
		failed   bool
		err      string
	}{
		{"2xx", []int{204}, 1, false, ""},
		{"500 then 200", []int{500, 200}, 2, false, ""},
		{"5xx three times then 200", []int{502, 503, 500, 200}, 4, false, ""},
		{"500 past the retries", []int{500, 500, 500, 500, 200}, 4, true, "after 4 attempts: answered 500 Internal Server Error: \"answer 3\""},
		{"429 then 200", []int{429, 200}, 2, false, ""},
		{"400 is not retried", []int{400, 200}, 1, true, "answered 400 Bad Request: \"answer 0\""},
		{"404 is not retried", []int{404, 200}, 1, true, "404"},
		{"a redirect is not followed", []int{302, 200}, 1, true, "point the webhook at the final URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWebhook(statuses(tc.answers...))
			srv := httptest.NewServer(w)
			defer srv.Close()
			n, done := start(t, Config{Webhooks: []Webhook{{URL: srv.URL}}}, Options{Backoff: time.Millisecond})
			c := created("greeter.1", canarySpec("greeter"), "alice")
			n.Notify(c.old, c.new) // one event: step 1 starts
			r := wait(t, done, 1)[0]
			if got := len(w.requests()); got != tc.attempts {
				t.Errorf("%d attempts, want %d", got, tc.attempts)
			}
			if (r.err != nil) != tc.failed || r.err != nil && !strings.Contains(r.err.Error(), tc.err) {
				t.Errorf("err %v, want failed %v with %q", r.err, tc.failed, tc.err)
			}
			want := Stats{Delivered: 1}
			if tc.failed {
				want = Stats{Failed: 1}
			}
			if s := n.Stats(); s != want {
				t.Errorf("stats %+v, want %+v", s, want)
			}
			var bodies []string
			for _, r := range w.requests() {
				bodies = append(bodies, string(r.body))
			}
			for _, b := range bodies {
				if b != bodies[0] {
					t.Errorf("a retry sent another body:\n%s\n%s", b, bodies[0])
				}
			}
		})
	}
}

// changesOfOneEvent are n writes that each add one command to a rollout.
func changesOfOneEvent(n int) []change {
	r := created("greeter.1", canarySpec("greeter"), "alice").new
	var out []change
	for i := range n {
		next := r
		next.History = append(append([]rollout.Event(nil), r.History...), rollout.Event{At: t0, Kind: KindCommand, Actor: "bob", Reason: fmt.Sprintf("note %d", i)})
		out = append(out, change{r, next})
		r = next
	}
	return out
}

func TestHangingWebhookDoesNotBlockNotify(t *testing.T) {
	hanging, healthy := newWebhook(func(int) (int, http.Header) { return 0, nil }), newWebhook(ok)
	hangingSrv, healthySrv := httptest.NewServer(hanging), httptest.NewServer(healthy)
	defer hangingSrv.Close()
	defer healthySrv.Close()
	var logs lockedBuffer
	cfg := Config{Webhooks: []Webhook{{URL: hangingSrv.URL + "/services/secret-token"}, {URL: healthySrv.URL}}}
	n, done := start(t, cfg, Options{QueueSize: 3, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(n)

	changes := changesOfOneEvent(11)
	n.Notify(changes[0].old, changes[0].new)
	arrived(t, hanging) // the hanging webhook holds the first notification
	if r := wait(t, done, 1)[0]; r.webhook != 1 || r.err != nil {
		t.Fatalf("the healthy webhook: %+v", r)
	}
	// Each Notify returns at once: the hanging webhook's queue takes three
	// notifications and drops the next seven; the healthy one takes all.
	for _, c := range changes[1:] {
		n.Notify(c.old, c.new)
		if r := wait(t, done, 1)[0]; r.webhook != 1 || r.err != nil {
			t.Fatalf("the healthy webhook: %+v", r)
		}
	}
	if s := n.Stats(); s != (Stats{Delivered: 11, Dropped: 7}) {
		t.Errorf("stats while hanging %+v, want 11 delivered (healthy) and 7 dropped (hanging)", s)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP signalbox_notify_queued Notifications waiting for their webhook, by webhook.
# TYPE signalbox_notify_queued gauge
signalbox_notify_queued{webhook="0"} 3
signalbox_notify_queued{webhook="1"} 0
`), "signalbox_notify_queued"); err != nil {
		t.Error(err)
	}

	close(hanging.release)
	for _, r := range wait(t, done, 4) {
		if r.webhook != 0 || r.err != nil {
			t.Errorf("after the release: %+v", r)
		}
	}
	var reasons []string
	for _, r := range hanging.requests() {
		var b jsonBody
		_ = json.Unmarshal(r.body, &b)
		reasons = append(reasons, b.Reason)
	}
	if got := strings.Join(reasons, ", "); got != "note 0, note 1, note 2, note 3" {
		t.Errorf("the hanging webhook got %s, want the first and the three queued, in order", got)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP signalbox_notify_delivered_total Notifications a webhook answered with a 2xx, by webhook (its index in the config).
# TYPE signalbox_notify_delivered_total counter
signalbox_notify_delivered_total{webhook="0"} 4
signalbox_notify_delivered_total{webhook="1"} 11
# HELP signalbox_notify_dropped_total Notifications dropped because the webhook's queue was full, by webhook.
# TYPE signalbox_notify_dropped_total counter
signalbox_notify_dropped_total{webhook="0"} 7
signalbox_notify_dropped_total{webhook="1"} 0
# HELP signalbox_notify_failed_total Notifications given up after a 4xx, a redirect or every retry, by webhook.
# TYPE signalbox_notify_failed_total counter
signalbox_notify_failed_total{webhook="0"} 0
signalbox_notify_failed_total{webhook="1"} 0
`), "signalbox_notify_delivered_total", "signalbox_notify_dropped_total", "signalbox_notify_failed_total"); err != nil {
		t.Error(err)
	}
	out := logs.String()
	if strings.Count(out, "notification dropped") != 7 {
		t.Errorf("want 7 drops logged:\n%s", out)
	}
	if strings.Contains(out, "secret-token") {
		t.Errorf("the logs show the webhook's path:\n%s", out)
	}
}

func TestNotifyBeforeRunQueues(t *testing.T) {
	w := newWebhook(ok)
	srv := httptest.NewServer(w)
	defer srv.Close()
	n := New(Config{Webhooks: []Webhook{{URL: srv.URL}}}, Options{QueueSize: 2})
	for _, c := range changesOfOneEvent(5) {
		n.Notify(c.old, c.new)
	}
	if s := n.Stats(); s != (Stats{Dropped: 3}) {
		t.Errorf("before Run: %+v, want 2 queued and 3 dropped", s)
	}
	done := make(chan result, 10)
	n.done = func(i int, err error) { done <- result{i, err} }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = n.Run(ctx) }()
	wait(t, done, 2)
	if s := n.Stats(); s != (Stats{Delivered: 2, Dropped: 3}) {
		t.Errorf("after Run: %+v", s)
	}
}

func TestRunTwice(t *testing.T) {
	n := New(Config{}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Run(ctx); err == nil {
		t.Error("a second Run: no error")
	}
}

// inBubble runs a webhook answering answer on an in-memory network and a
// notifier posting to it, inside a synctest bubble where timeouts and
// backoffs take no real time. test gets the notifier, the webhook and the
// results. (Every channel they wait on is made in the bubble: only those
// block durably, letting the fake clock move.)
func inBubble(t *testing.T, answer func(int) (int, http.Header), hook Webhook, o Options, test func(n *Notifier, w *webhook, done <-chan result)) {
	synctest.Test(t, func(t *testing.T) {
		w := newWebhook(answer)
		// Real sockets are outside the bubble: with them the fake clock
		// would never move. gRPC's in-memory listener blocks on channels
		// and conditions made in the bubble.
		ln := bufconn.Listen(1 << 16)
		srv := &http.Server{Handler: w}
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = srv.Serve(ln)
		}()
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ln.DialContext(ctx) }}
		o.Client = &http.Client{Transport: tr}
		hook.URL = "http://hook.test/x"
		n := New(Config{Webhooks: []Webhook{hook}}, o)
		done := make(chan result, 100)
		n.done = func(i int, err error) { done <- result{i, err} }
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			_ = n.Run(ctx)
		}()

		test(n, w, done)

		cancel()
		<-stopped
		_ = srv.Close()
		<-served
		tr.CloseIdleConnections()
	})
}

func gaps(reqs []request) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(reqs); i++ {
		out = append(out, reqs[i].at.Sub(reqs[i-1].at))
	}
	return out
}

func TestTimeoutIsRetriedThenGivenUp(t *testing.T) {
	never := func(int) (int, http.Header) { return 0, nil }
	inBubble(t, never, Webhook{TimeoutSeconds: 5}, Options{Retries: 2}, func(n *Notifier, w *webhook, done <-chan result) {
		c := created("greeter.1", canarySpec("greeter"), "alice")
		n.Notify(c.old, c.new)
		r := <-done // the fake clock runs while every goroutine waits
		if r.err == nil || !strings.Contains(r.err.Error(), "after 3 attempts: no answer within the webhook's timeout of 5s") {
			t.Errorf("err %v", r.err)
		}
		// In the bubble's fake time: each attempt waits out its 5s, then
		// the backoff (1s, then 2s).
		if got := fmt.Sprint(gaps(w.requests())); got != "[6s 7s]" {
			t.Errorf("attempts %s apart, want [6s 7s]", got)
		}
		if s := n.Stats(); s != (Stats{Failed: 1}) {
			t.Errorf("stats %+v", s)
		}
	})
}

func TestBackoffDoublesAndHonoursRetryAfter(t *testing.T) {
	retryAfter := http.Header{"Retry-After": {"7"}}
	answer := func(n int) (int, http.Header) {
		switch n {
		case 0, 1:
			return http.StatusServiceUnavailable, nil
		case 2:
			return http.StatusTooManyRequests, retryAfter
		case 3:
			return http.StatusBadGateway, nil
		}
		return http.StatusOK, nil
	}
	inBubble(t, answer, Webhook{}, Options{Retries: 5}, func(n *Notifier, w *webhook, done <-chan result) {
		c := created("greeter.1", canarySpec("greeter"), "alice")
		n.Notify(c.old, c.new)
		if r := <-done; r.err != nil {
			t.Fatal(r.err)
		}
		// 1s, 2s, then Retry-After's 7s over the 4s due, then 8s.
		if got := fmt.Sprint(gaps(w.requests())); got != "[1s 2s 7s 8s]" {
			t.Errorf("attempts %s apart, want [1s 2s 7s 8s]", got)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		"-4":                            0,
		"soon":                          0,
		"Thu, 01 Jan 2026 00:01:00 GMT": time.Minute,
		"Wed, 31 Dec 2025 00:00:00 GMT": 0,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", h, got, want)
		}
	}
}
