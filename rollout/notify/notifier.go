package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalbox/signalbox/rollout"
)

// Options configure a Notifier.
type Options struct {
	// Client posts the notifications (default: a client that does not
	// follow redirects, so a moved webhook fails saying so instead of
	// turning the POST into a GET). Its own Timeout, if any, applies on
	// top of each webhook's.
	Client *http.Client
	Logger *slog.Logger
	// Retries after a failed attempt: network errors (timeouts included),
	// 5xx and 429 are retried, other answers are not (default 3; negative:
	// none).
	Retries int
	// Backoff is the wait before the first retry, doubled for each next
	// one up to a minute (or Backoff, if longer); a Retry-After of a 429 or
	// 503 lengthens it up to that bound (default 1s).
	Backoff time.Duration
	// QueueSize is how many notifications each webhook holds while
	// earlier ones are being delivered (default 1024).
	QueueSize int
}

// Stats count notifications, summed over the webhooks: a notification sent
// to two webhooks counts twice.
type Stats struct {
	// Delivered were answered with a 2xx.
	Delivered uint64
	// Failed were given up: a 4xx other than 429, a redirect, or every
	// attempt failed.
	Failed uint64
	// Dropped found their webhook's queue full.
	Dropped uint64
}

// Notifier posts notifications to webhooks. Notify queues, Run delivers.
// It is safe for concurrent use, and it is a prometheus.Collector of its
// counters.
type Notifier struct {
	o       Options
	hooks   []*hook
	running atomic.Bool
	maxWait time.Duration
	// done, when set (by tests), is told of every notification a webhook
	// finished with: delivered (nil) or failed.
	done func(webhook int, err error)
}

// hook is one webhook, its queue and its counters.
type hook struct {
	index int
	cfg   Webhook
	// where is the URL's scheme and host: the rest may be a secret.
	where     string
	queue     chan Notification
	delivered atomic.Uint64
	failed    atomic.Uint64
	dropped   atomic.Uint64
}

// New makes a notifier for a config that passed Validate (ParseConfig
// validates); a webhook with an empty Format posts json.
func New(cfg Config, o Options) *Notifier {
	if o.Client == nil {
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Retries == 0 {
		o.Retries = 3
	}
	o.Retries = max(o.Retries, 0)
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 1024
	}
	n := &Notifier{o: o, maxWait: max(time.Minute, o.Backoff)}
	for i, w := range cfg.Webhooks {
		if w.Format == "" {
			w.Format = FormatJSON
		}
		where := "(bad url)"
		if u, err := url.Parse(w.URL); err == nil {
			where = u.Scheme + "://" + u.Host
		}
		n.hooks = append(n.hooks, &hook{index: i, cfg: w, where: where, queue: make(chan Notification, o.QueueSize)})
	}
	return n
}

// Notify queues the notifications of a change of a rollout (Events) for
// every webhook that wants its service. It never blocks: a notification
// that finds its webhook's queue full is dropped, counted and logged. It
// fits controller.Options.OnChange.
func (n *Notifier) Notify(old, new rollout.Rollout) {
	for _, note := range Events(old, new) {
		for _, h := range n.hooks {
			if !h.cfg.wants(note.Service, note.Kind) {
				continue
			}
			select {
			case h.queue <- note:
			default:
				h.dropped.Add(1)
				n.o.Logger.Warn("notification dropped: the webhook's queue is full (it is slow or down)",
					"webhook", h.index, "endpoint", h.where, "queue", cap(h.queue), "rollout", note.RolloutID, "kind", note.Kind, "reason", note.Reason)
			}
		}
	}
}

// Stats are the counters so far.
func (n *Notifier) Stats() Stats {
	var s Stats
	for _, h := range n.hooks {
		s.Delivered += h.delivered.Load()
		s.Failed += h.failed.Load()
		s.Dropped += h.dropped.Load()
	}
	return s
}

// Run delivers the queued notifications, each webhook's in order and
// independently of the others, until ctx ends (with no webhooks it just
// waits); what is still queued then is not delivered. It returns nil once
// ctx ends, and an error only when called twice.
func (n *Notifier) Run(ctx context.Context) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("notify: Run called twice")
	}
	var wg sync.WaitGroup
	for _, h := range n.hooks {
		wg.Go(func() { n.work(ctx, h) })
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

func (n *Notifier) work(ctx context.Context, h *hook) {
	for {
		var note Notification
		select {
		case <-ctx.Done():
			return
		case note = <-h.queue:
		}
		err := n.deliver(ctx, h, note)
		if ctx.Err() != nil {
			return // shutting down: neither delivered nor given up
		}
		if err == nil {
			h.delivered.Add(1)
		} else {
			h.failed.Add(1)
			n.o.Logger.Warn("notification not delivered", "webhook", h.index, "endpoint", h.where,
				"rollout", note.RolloutID, "kind", note.Kind, "reason", note.Reason, "err", err)
		}
		if n.done != nil {
			n.done(h.index, err)
		}
	}
}

// deliver posts one notification, retrying what may pass later.
func (n *Notifier) deliver(ctx context.Context, h *hook, note Notification) error {
	body, err := encode(h.cfg.Format, note)
	if err != nil {
		return err
	}
	wait := n.o.Backoff
	for attempt := 0; ; attempt++ {
		err := n.post(ctx, h, body)
		var fail *attemptError
		if err == nil || !errors.As(err, &fail) || !fail.retry || attempt >= n.o.Retries || ctx.Err() != nil {
			if err != nil && attempt > 0 {
				err = fmt.Errorf("after %d attempts: %w", attempt+1, err)
			}
			return err
		}
		d := min(max(wait, fail.after), n.maxWait)
		n.o.Logger.Info("webhook attempt failed; retrying", "webhook", h.index, "endpoint", h.where,
			"rollout", note.RolloutID, "attempt", attempt+1, "wait", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, n.maxWait)
	}
}

// attemptError is a failed attempt: whether it is worth another, and how
// long the server asked to wait (Retry-After).
type attemptError struct {
	err   error
	retry bool
	after time.Duration
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// post makes one attempt.
func (n *Notifier) post(ctx context.Context, h *hook, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook url: %w", unwrapURL(err))
	}
	for k, v := range h.cfg.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "signalbox-notify")
	}
	resp, err := n.o.Client.Do(req)
	if err != nil {
		err = unwrapURL(err)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("no answer within the webhook's timeout of %v", h.cfg.Timeout())
		}
		return &attemptError{err: err, retry: true}
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	// Read a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err = fmt.Errorf("answered %s: %q", resp.Status, bytes.TrimSpace(snippet))
	switch {
	case code == http.StatusTooManyRequests || code >= 500:
		return &attemptError{err: err, retry: true, after: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case code >= 300 && code < 400:
		err = fmt.Errorf("answered %s to %s: point the webhook at the final URL", resp.Status, resp.Header.Get("Location"))
	}
	return &attemptError{err: err}
}

// unwrapURL drops the *url.Error wrapper, whose message holds the whole
// URL (and a Slack webhook's token with it).
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(h); err == nil && s > 0 {
		return time.Duration(min(s, 3600)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return min(t.Sub(now), time.Hour)
	}
	return 0
}

// jsonBody is a json webhook's body: the notification and its text.
type jsonBody struct {
	Notification
	Text string `json:"text"`
}

// encode writes a notification in a webhook's format.
func encode(f Format, note Notification) ([]byte, error) {
	if f == FormatSlack {
		return json.Marshal(struct {
			Text string `json:"text"`
		}{slackEscape(note.Text())})
	}
	return json.Marshal(jsonBody{Notification: note, Text: note.Text()})
}

// slackEscape escapes what Slack's mrkdwn reads as markup.
func slackEscape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

var (
	deliveredDesc = prometheus.NewDesc("signalbox_notify_delivered_total",
		"Notifications a webhook answered with a 2xx, by webhook (its index in the config).", []string{"webhook"}, nil)
	failedDesc = prometheus.NewDesc("signalbox_notify_failed_total",
		"Notifications given up after a 4xx, a redirect or every retry, by webhook.", []string{"webhook"}, nil)
	droppedDesc = prometheus.NewDesc("signalbox_notify_dropped_total",
		"Notifications dropped because the webhook's queue was full, by webhook.", []string{"webhook"}, nil)
	queuedDesc = prometheus.NewDesc("signalbox_notify_queued",
		"Notifications waiting for their webhook, by webhook.", []string{"webhook"}, nil)
)

// Describe is part of prometheus.Collector.
func (n *Notifier) Describe(ch chan<- *prometheus.Desc) {
	ch <- deliveredDesc
	ch <- failedDesc
	ch <- droppedDesc
	ch <- queuedDesc
}

// Collect is part of prometheus.Collector.
func (n *Notifier) Collect(ch chan<- prometheus.Metric) {
	for _, h := range n.hooks {
		i := strconv.Itoa(h.index)
		ch <- prometheus.MustNewConstMetric(deliveredDesc, prometheus.CounterValue, float64(h.delivered.Load()), i)
		ch <- prometheus.MustNewConstMetric(failedDesc, prometheus.CounterValue, float64(h.failed.Load()), i)
		ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(h.dropped.Load()), i)
		ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.GaugeValue, float64(len(h.queue)), i)
	}
}
