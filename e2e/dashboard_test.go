package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/e2e/demo"
	"github.com/signalbox/signalbox/rollout"
)

// The dashboard's browser tests drive headless Chromium (Debian's chromium
// package) with chromedp against a real signalbox. They write screenshots to
// $SIGNALBOX_SCREENSHOTS, else to the -artifacts directory when go test has
// one, else to bin/screenshots/ at the module root; with
// SIGNALBOX_UPDATE_DOCS=1 they also refresh docs/img/dashboard-*.png.

// chromiumPath finds the browser; its absence fails the test, since the
// dashboard is part of what `make test` checks.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SIGNALBOX_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("SIGNALBOX_CHROMIUM=%s: %v", p, err)
		}
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("headless Chromium is needed for the dashboard's browser test and none was found: " +
		"apt-get install chromium (Debian), or set SIGNALBOX_CHROMIUM to a Chromium or Chrome binary")
	return ""
}

// screenshotDir is where the test's screenshots go.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SIGNALBOX_SCREENSHOTS")
	if dir == "" {
		if f := flag.Lookup("test.artifacts"); f != nil && f.Value.String() == "true" {
			return t.ArtifactDir()
		}
		dir = filepath.Join(moduleRoot(t), "bin", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// docsShots reports whether the test refreshes the docs' screenshots
// (SIGNALBOX_UPDATE_DOCS=1); it then lets the demo run longer first.
func docsShots() bool { return os.Getenv("SIGNALBOX_UPDATE_DOCS") == "1" }

// saveScreenshot writes png as name into the screenshot directory (and
// docs/img when asked) and logs where.
func saveScreenshot(t *testing.T, name string, png []byte, docs bool) {
	t.Helper()
	p := filepath.Join(screenshotDir(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d KiB)", p, len(png)/1024)
	if docs && docsShots() {
		d := filepath.Join(moduleRoot(t), "docs", "img", name)
		if err := os.WriteFile(d, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("docs screenshot: %s", d)
	}
}

// dashboardServed fails the test at once when signalbox does not serve the
// dashboard, saying why: a browser would only time out.
func dashboardServed(t *testing.T, sb *proc) {
	t.Helper()
	code, body := sb.get("/")
	if code != http.StatusOK || !strings.Contains(body, "<title>signalbox</title>") {
		t.Fatalf("GET / on signalbox (%s): %d %.300s\nthe dashboard is built by `make ui`, embedded by `make build` and served once api.New calls registerUI", signalboxBin, code, body)
	}
}

// browser starts headless Chromium for the test and returns a context for
// its tab; page exceptions are collected and fail the test at its end.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.WindowSize(width, height),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("disable-gpu", true),
		// No calls home: the machine's network is closed, and they only slow the start.
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-quic", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser, on a context without a deadline.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	consoleCtx, stopConsole := context.WithCancel(ctx)
	messages := chromedp.Console(consoleCtx)
	done := make(chan []string)
	go func() {
		var exceptions []string
		for m, err := range messages {
			if err != nil {
				break
			}
			if m.IsException() {
				exceptions = append(exceptions, m.String())
			}
			if m.Type == "error" || m.IsException() || m.Type == "warning" {
				t.Logf("browser console: %s", m.String())
			}
		}
		done <- exceptions
	}()
	t.Cleanup(func() {
		stopConsole()
		if ex := <-done; len(ex) > 0 {
			t.Errorf("the page threw %d uncaught exceptions, the first: %s", len(ex), ex[0])
		}
	})
	return ctx
}

// within runs one action with a deadline, failing the test with what it
// waited for.
func within[T any](t *testing.T, ctx context.Context, d time.Duration, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// poll waits until the JavaScript expression is truthy and decodes its value.
func poll[T any](t *testing.T, ctx context.Context, d time.Duration, what, expr string) T {
	t.Helper()
	return within(t, ctx, d+5*time.Second, "waiting for "+what, chromedp.Poll[T](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond)))
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	return within(t, ctx, 30*time.Second, "evaluate "+expr, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// dashboardRig is the demo's world: greeter v1 and v2 and a front, web,
// calling greeter through xds:///greeter, all traced into signalbox's graph;
// a client calls web; signalbox has an operator and a viewer token. Both
// greeter versions fail 1% of their calls, so that the page has error rates
// and colours to show (and the analysis errors to count).
type dashboardRig struct {
	sb *proc
	r  *releaseRig // for its API helpers
}

func startDashboardRig(t *testing.T) *dashboardRig {
	t.Helper()
	c := consultest.Start(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("operator:"+opToken+"\nviewer:"+viewerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sb := startSignalbox(t, c.HTTPAddr(), "", "--api-tokens", tokens, "--rollout-interval", "250ms", "--zipkin-settle", "500ms")
	spans := "http://" + sb.HTTPAddr + "/api/v2/spans"
	traced := func(service, version string) *demo.Tracing {
		tr, err := demo.NewTracing(spans, service, version, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
		return tr
	}
	var greeters []*demo.Backend
	for _, v := range []string{"v1", "v2"} {
		tr := traced("greeter", v)
		b, err := demo.StartBackendWith("127.0.0.1:0", "greeter-"+v, v, demo.BackendOptions{ServerOptions: []grpc.ServerOption{tr.ServerOption()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		greeters = append(greeters, b)
		c.RegisterInstance(t, consultest.Instance{Service: "greeter", ID: "greeter-" + v, Address: "127.0.0.1", Port: b.Addr().Port, Meta: map[string]string{"version": v}})
	}
	webTr := traced("web", "v1")
	upstream, err := demo.Dial(demo.Bootstrap(sb.XDSAddr, "web-1", "web"), "greeter", webTr.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { upstream.Close() })
	web, err := demo.StartBackendWith("127.0.0.1:0", "web-1", "v1", demo.BackendOptions{ServerOptions: []grpc.ServerOption{webTr.ServerOption()}, Upstream: upstream})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(web.Stop)
	c.RegisterInstance(t, consultest.Instance{Service: "web", ID: "web-1", Address: "127.0.0.1", Port: web.Addr().Port, Meta: map[string]string{"version": "v1"}})

	cc := dial(t, sb.XDSAddr, "dashboard-client", "web")
	eventually(t, 30*time.Second, "the client reaches web and web reaches greeter", func() bool { return callsAvoid(cc, 1) })
	for _, b := range greeters {
		b.SetFailureRate(0.01)
	}
	r := &releaseRig{t: t, consul: c, sb: sb, cc: cc}
	r.load(20 * time.Millisecond) // 50 calls a second; the demo makes 20
	return &dashboardRig{sb: sb, r: r}
}

// graphHas reports whether signalbox's graph has the demo's calls, with
// both greeter versions receiving.
func (d *dashboardRig) graphHas() bool {
	var g struct {
		Nodes []struct {
			ID  string  `json:"id"`
			RPS float64 `json:"rps"`
		} `json:"nodes"`
		Edges []struct {
			Source, Target string
			Requests       uint64 `json:"requests"`
		} `json:"edges"`
	}
	code, body := d.sb.get("/api/v1/graph?by=version&window=1m")
	if code != 200 || json.Unmarshal([]byte(body), &g) != nil {
		return false
	}
	seen := map[string]bool{}
	for _, e := range g.Edges {
		if e.Requests > 0 {
			seen[e.Source+">"+e.Target] = true
		}
	}
	return seen["web@v1>greeter@v1"] && seen["web@v1>greeter@v2"]
}

type snapshot struct {
	Nodes []struct {
		ID, Label, Parent string
	} `json:"nodes"`
	Edges []struct {
		ID, Source, Target, Label string
	} `json:"edges"`
}

// Edge labels: "12.3 rps · 0.00% · p99 4.2 ms"; node labels end "3.1 rps · 0% err".
var (
	edgeLabel = regexp.MustCompile(`^([0-9.]+) rps · ([0-9.<]+)% · p99 ≤?([0-9.]+) (ms|s)$`)
	nodeLabel = regexp.MustCompile(`\n([0-9.]+) rps · ([0-9.<]+)% err$`)
)

func (s snapshot) edge(source, target string) (string, bool) {
	for _, e := range s.Edges {
		if e.Source == source && e.Target == target {
			return e.Label, true
		}
	}
	return "", false
}

func (s snapshot) node(id string) (label, parent string, ok bool) {
	for _, n := range s.Nodes {
		if n.ID == id {
			return n.Label, n.Parent, true
		}
	}
	return "", "", false
}

// clockTick is a label of the analysis chart's time axis.
var clockTick = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$`)

// numbered reports whether an edge label has a positive rate and a p99.
func numbered(label string) bool {
	m := edgeLabel.FindStringSubmatch(label)
	return m != nil && m[1] != "0" && m[3] != "0"
}

// pageRequests lists the page's requests as the browser timed them
// (Resource Timing), for the log.
const pageRequests = `(() => {
	const r = (x) => Math.round(x);
	const nav = performance.getEntriesByType("navigation")[0];
	const out = [];
	if (nav) out.push("page " + r(nav.startTime) + "/" + r(nav.responseStart) + "/" + r(nav.responseEnd) + " (DOM interactive " + r(nav.domInteractive) + ")");
	for (const e of performance.getEntriesByType("resource")) {
		out.push(new URL(e.name).pathname.replace(/^\/ui\//, "") + new URL(e.name).search + " " + r(e.startTime) + "/" + r(e.responseStart) + "/" + (e.responseEnd > e.responseStart ? r(e.responseEnd) : "…") + " " + e.transferSize + "B");
	}
	return out.join(", ");
})()`

// TestDashboard loads the dashboard against signalbox with the demo's
// services and traffic: the graph shows them with numbers; a rollout
// started through the API shows up; with the operator token pasted, its
// Pause button pauses it.
func TestDashboard(t *testing.T) {
	chromiumPath(t) // fail first, and fast, without a browser
	d := startDashboardRig(t)
	eventually(t, 60*time.Second, "the graph has web → greeter v1 and v2", d.graphHas)
	base := "http://" + d.sb.HTTPAddr
	dashboardServed(t, d.sb)

	ctx := browser(t, 1280, 800)
	navAt := time.Now()
	within(t, ctx, 30*time.Second, "open the dashboard", chromedp.Navigate(base+"/?window=1m"))
	firstAt := poll[float64](t, ctx, 20*time.Second, "the first graph on screen", "window.__signalbox && window.__signalbox.firstRenderAt")
	t.Logf("time to the first graph on screen: %.0f ms after navigation start (the page's clock); seen by the test %v after it asked to navigate",
		firstAt, time.Since(navAt).Round(time.Millisecond))
	milestones := eval[map[string]float64](t, ctx, "window.__signalbox.timings")
	t.Logf("page milestones (ms after navigation start): %v; long tasks: %s", milestones, eval[string](t, ctx, "JSON.stringify(window.__signalbox.longTasks)"))
	t.Logf("the page's requests (ms after navigation start: started, first byte, done; bytes on the wire): %s", eval[string](t, ctx, pageRequests))
	// The first graph is the one the page's first script asked for, not the
	// streams' first message: they open once it is drawn.
	if drawn, ok := milestones["bootData"]; !ok {
		t.Errorf("the first graph did not come from boot.ts's early request (milestones %v)", milestones)
	} else if opened, ok := milestones["connect"]; ok && opened < drawn {
		t.Errorf("the streams opened at %.0f ms, before the early graph was drawn (%.0f ms)", opened, drawn)
	}
	// Again, as a returning visitor: the browser has the assets and their compiled code.
	within(t, ctx, 30*time.Second, "reload the dashboard", chromedp.Reload())
	again := poll[float64](t, ctx, 20*time.Second, "the first graph on screen after a reload", "window.__signalbox && window.__signalbox.firstRenderAt")
	t.Logf("time to the first graph on screen after a reload: %.0f ms; milestones %v; long tasks: %s", again,
		eval[map[string]float64](t, ctx, "window.__signalbox.timings"), eval[string](t, ctx, "JSON.stringify(window.__signalbox.longTasks)"))

	// The services and the call between them, with numbers.
	var snap snapshot
	poll[bool](t, ctx, 20*time.Second, "web → greeter with numbers", `(() => {
		const s = window.__signalbox.snapshot();
		const e = s.edges.find((e) => e.source === "s:web" && e.target === "s:greeter");
		return !!e && /rps/.test(e.label) && !/^0 rps/.test(e.label);
	})()`)
	snap = eval[snapshot](t, ctx, "window.__signalbox.snapshot()")
	label, ok := snap.edge("s:web", "s:greeter")
	if !ok || !numbered(label) {
		t.Errorf("edge web → greeter: %q, want a rate, an error share and a p99", label)
	}
	for _, id := range []string{"s:web", "s:greeter"} {
		if l, _, ok := snap.node(id); !ok {
			t.Errorf("no node %s in %+v", id, snap.Nodes)
		} else if id == "s:greeter" && !nodeLabel.MatchString(l) {
			t.Errorf("node %s: %q, want its rate and errors", id, l)
		}
	}
	t.Logf("graph: web → greeter %q", label)

	// Expanded to versions: greeter v1 and v2 inside greeter, each called.
	eval[any](t, ctx, `window.__signalbox.expand("greeter")`)
	poll[bool](t, ctx, 20*time.Second, "greeter's versions, laid out and still", `(() => {
		const sb = window.__signalbox, s = sb.snapshot();
		const ok = ["v:greeter@v1", "v:greeter@v2"].every((id) => s.nodes.some((n) => n.id === id && n.parent === "s:greeter")) &&
			["v:greeter@v1", "v:greeter@v2"].every((id) => s.edges.some((e) => e.source === "s:web" && e.target === id && /rps/.test(e.label)));
		return ok && !sb.graph.busy && sb.cy.elements(".fresh").length === 0;
	})()`)
	snap = eval[snapshot](t, ctx, "window.__signalbox.snapshot()")
	for _, v := range []string{"v1", "v2"} {
		if l, ok := snap.edge("s:web", "v:greeter@"+v); !ok || !numbered(l) {
			t.Errorf("edge web → greeter %s: %q, want numbers", v, l)
		}
	}
	// Details of greeter: the per-version split.
	eval[any](t, ctx, `window.__signalbox.select("s:greeter")`)
	details := within(t, ctx, 10*time.Second, "greeter's details", chromedp.Text(chromedp.ID("details")))
	for _, want := range []string{"versions", "v1", "v2", "share"} {
		if !strings.Contains(strings.ToLower(details), want) {
			t.Errorf("greeter's details lack %q:\n%s", want, details)
		}
	}
	if docsShots() {
		// The docs show the graph after half a minute of traffic, not just after it began.
		poll[bool](t, ctx, 90*time.Second, "greeter at 15 rps for the docs' screenshot", `(() => {
			const n = window.__signalbox.snapshot().nodes.find((n) => n.id === "s:greeter");
			const m = n && /([0-9.]+) rps/.exec(n.label);
			return !!m && Number(m[1]) >= 15;
		})()`)
	}
	saveScreenshot(t, "dashboard-graph.png", within(t, ctx, 20*time.Second, "screenshot", chromedp.CaptureScreenshot()), true)

	// Releases: the API wants a token even to read.
	within(t, ctx, 10*time.Second, "open the releases", chromedp.Evaluate[any](`location.hash = "#releases"`))
	banner := poll[string](t, ctx, 15*time.Second, "the token banner", `(() => { const b = document.getElementById("releases-banner"); return b && !b.hidden && b.textContent; })()`)
	if !strings.Contains(banner, "token") {
		t.Errorf("releases without a token: %q, want it to ask for a token", banner)
	}
	pasteToken := func(tok string) {
		t.Helper()
		within(t, ctx, 15*time.Second, "paste a token", chromedp.Steps(
			chromedp.Click(chromedp.ID("token-button")),
			chromedp.WaitVisible(chromedp.ID("token-input")),
			chromedp.SendKeys(chromedp.ID("token-input"), tok),
			chromedp.Click(chromedp.ID("token-save")),
			chromedp.WaitNotVisible(chromedp.ID("token-panel")),
		))
	}
	pasteToken(viewerToken)

	code, body := d.r.api("POST", "/api/v1/rollouts", opToken,
		`{"service":"greeter","baseline":"v1","candidate":"v2","steps":[20,50],"stepInterval":"10m","analysis":{"minRequests":20,"alpha":0.001}}`)
	if code != 201 {
		t.Fatalf("start a rollout: %d %s", code, body)
	}
	var ro rollout.Rollout
	if err := json.Unmarshal([]byte(body), &ro); err != nil {
		t.Fatal(err)
	}
	card := fmt.Sprintf(`section.card[data-rollout-id="%s"]`, ro.ID)
	phase := poll[string](t, ctx, 20*time.Second, "the rollout on the page", fmt.Sprintf(`(() => { const p = document.querySelector('%s .phase'); return p && p.dataset.phase; })()`, card))
	if phase != string(rollout.Progressing) {
		t.Errorf("%s shows %q, want Progressing", ro.ID, phase)
	}
	facts := within(t, ctx, 10*time.Second, "the rollout's facts", chromedp.Text(chromedp.CSS(card+" .facts")))
	for _, want := range []string{"20%", "50%", "100%", "v1 80%", "v2 20%"} {
		if !strings.Contains(facts, want) {
			t.Errorf("the rollout's facts lack %q:\n%s", want, facts)
		}
	}
	// Some points of the analysis chart before pressing anything. (Both
	// versions fail alike: with alpha 0.001, a rollback is a one in a
	// thousand chance however long it runs.)
	points := 6
	if docsShots() {
		points = 30
	}
	poll[bool](t, ctx, 60*time.Second, "the analysis chart", fmt.Sprintf(`window.__signalbox.releases.chartPoints(%q) >= %d && !!document.querySelector('%s .chart canvas')`, ro.ID, points, card))
	// Its time axis, over a few seconds, is in whole seconds (uPlot's own
	// ticks were ":03.000 :03.500 …").
	ticks := eval[[]string](t, ctx, fmt.Sprintf(`window.__signalbox.releases.chartTicks(%q)`, ro.ID))
	if len(ticks) < 2 {
		t.Errorf("the analysis chart's time axis has %d labels (%q), want a few", len(ticks), ticks)
	}
	for _, tk := range ticks {
		if !clockTick.MatchString(tk) {
			t.Errorf("the analysis chart's time axis: %q, want HH:MM:SS or HH:MM labels: %q", tk, ticks)
			break
		}
	}

	// A viewer's Pause is refused, and says why.
	within(t, ctx, 10*time.Second, "press Pause (viewer)", chromedp.Click(chromedp.CSS(card+` button[data-action="pause"]`)))
	msg := poll[string](t, ctx, 10*time.Second, "the refusal", fmt.Sprintf(`(() => { const m = document.querySelector('%s .card-message.error'); return m && m.textContent; })()`, card))
	if !strings.Contains(msg, "viewer") {
		t.Errorf("a viewer's pause: %q, want it refused for the role", msg)
	}

	// The operator's Pause pauses.
	pasteToken(opToken)
	within(t, ctx, 10*time.Second, "press Pause (operator)", chromedp.Click(chromedp.CSS(card+` button[data-action="pause"]`)))
	poll[bool](t, ctx, 15*time.Second, "the phase Paused on the page", fmt.Sprintf(`(() => { const p = document.querySelector('%s .phase'); return p && p.dataset.phase === "Paused"; })()`, card))
	if got := d.r.get(ro.ID); got.Phase != rollout.Paused {
		t.Errorf("%s is %s after Pause, want Paused\n%s", ro.ID, got.Phase, history(got))
	} else if last := got.History[len(got.History)-1]; !strings.HasPrefix(last.Actor, "operator:") {
		t.Errorf("the pause's actor is %q, want the operator token's", last.Actor)
	}
	poll[bool](t, ctx, 10*time.Second, "Resume offered", fmt.Sprintf(`!!document.querySelector('%s button[data-action="resume"]')`, card))
	saveScreenshot(t, "dashboard-rollout.png", within(t, ctx, 20*time.Second, "screenshot", chromedp.CaptureScreenshot()), true)

	// Proxies: the client and web's upstream channel, acknowledged.
	within(t, ctx, 10*time.Second, "open the proxies", chromedp.Evaluate[any](`location.hash = "#proxies"`))
	poll[bool](t, ctx, 15*time.Second, "the xDS clients", `!!document.querySelector('#xds-clients tr[data-node="dashboard-client"]') && !!document.querySelector('#xds-clients tr[data-node="web-1"]')`)
	proxies := within(t, ctx, 10*time.Second, "the proxies table", chromedp.Text(chromedp.ID("xds-clients")))
	for _, want := range []string{"LDS", "RDS", "CDS", "EDS", "in sync"} {
		if !strings.Contains(proxies, want) {
			t.Errorf("the proxies pane lacks %q:\n%s", want, proxies)
		}
	}
	saveScreenshot(t, "dashboard-proxies.png", within(t, ctx, 20*time.Second, "screenshot", chromedp.CaptureScreenshot()), false)
}

// TestDashboardLargeGraph draws a synthetic graph of 1,000 services and
// 2,000 calls and logs how long it took and the longest main-thread task.
// It asserts no timing: machines differ; the figures are in the log.
func TestDashboardLargeGraph(t *testing.T) {
	chromiumPath(t)
	c := consultest.Start(t)
	sb := startSignalbox(t, c.HTTPAddr(), "")
	dashboardServed(t, sb)
	ctx := browser(t, 1280, 800)
	within(t, ctx, 30*time.Second, "open the dashboard", chromedp.Navigate("http://"+sb.HTTPAddr+"/?fixture=synthetic:1000,2000"))
	type render struct {
		Nodes, Edges          int
		LayoutMs, TotalMs, At float64
		Relayout              bool
		Engine                string
	}
	first := poll[render](t, ctx, 60*time.Second, "the synthetic graph on screen", `(() => { const r = window.__signalbox && window.__signalbox.renders.find((r) => r.nodes >= 1000); return r || null; })()`)
	if first.Nodes != 1000 || first.Edges < 1900 {
		t.Errorf("drew %d nodes and %d edges, want 1,000 and about 2,000", first.Nodes, first.Edges)
	}
	t.Logf("1,000 nodes / %d edges on screen %.0f ms after navigation start, placed by the %s layout: %.0f ms from the data to the painted frame",
		first.Edges, first.At, first.Engine, first.TotalMs)
	type task struct{ Start, Duration float64 }
	longTasks := func(from, to float64) (n int, total float64, longest task) {
		for _, tk := range eval[[]task](t, ctx, "window.__signalbox.longTasks") {
			if tk.Start < from || tk.Start > to {
				continue
			}
			n++
			total += tk.Duration
			if tk.Duration > longest.Duration {
				longest = tk
			}
		}
		return n, total, longest
	}
	n, total, longest := longTasks(0, first.At)
	t.Logf("main thread until then: %d long tasks (>50 ms), %.0f ms in all; the longest %.0f ms (at %.0f ms)", n, total, longest.Duration, longest.Start)

	// ELK's layered layout, computed in its worker, then replaces the quick one.
	elk := poll[render](t, ctx, 180*time.Second, "ELK's layout of the synthetic graph", `(() => { const r = window.__signalbox.renders.find((r) => r.nodes >= 1000 && r.engine === "elk"); return r || null; })()`)
	n, total, longest = longTasks(first.At, elk.At)
	t.Logf("ELK's layout: %.0f ms in its worker, on screen %.0f ms after navigation start (%.0f ms from the worker's answer to the painted frame); meanwhile %d long tasks, %.0f ms in all, the longest %.0f ms",
		elk.LayoutMs, elk.At, elk.TotalMs-elk.LayoutMs, n, total, longest.Duration)

	// An update of the numbers only (as the stream sends each second): no layout.
	u := eval[render](t, ctx, `(async () => {
		const sb = window.__signalbox, g = sb.synthetic(1000, 2000);
		for (const e of g.edges) { e.rps *= 1.5; e.errorRate *= 2; }
		await sb.show(g);
		return sb.renders[sb.renders.length - 1];
	})()`)
	n, total, longest = longTasks(elk.At, u.At)
	t.Logf("the same graph with new numbers: %.0f ms from the data to the painted frame (relayout %v); %d long tasks, %.0f ms in all, the longest %.0f ms", u.TotalMs, u.Relayout, n, total, longest.Duration)
	if u.Relayout {
		t.Errorf("new numbers on the same graph laid it out again")
	}
	saveScreenshot(t, "dashboard-1000-nodes.png", within(t, ctx, 20*time.Second, "screenshot", chromedp.CaptureScreenshot()), false)
}
