package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/e2e/adsclient"
	"github.com/signalbox/signalbox/e2e/demo"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/ir"
)

const (
	opToken     = "operator-e2e-0123456789"
	viewerToken = "viewer-e2e-0123456789"
)

// releaseRig is a release's world: Consul, signalbox with API tokens,
// greeter v1 and v2 (OpenTelemetry-traced, so the service's own spans are
// what the analysis reads, as with proxyless gRPC), and a proxyless client.
type releaseRig struct {
	t        *testing.T
	consul   *consultest.Agent
	sb       *proc
	args     []string
	backends map[string]*demo.Backend
	cc       *grpc.ClientConn
}

func startReleaseRig(t *testing.T, extra ...string) *releaseRig {
	t.Helper()
	c := consultest.Start(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("operator:"+opToken+"\nviewer:"+viewerToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--api-tokens", tokens, "--rollout-interval", "250ms", "--zipkin-settle", "500ms"}, extra...)
	r := &releaseRig{t: t, consul: c, args: args, backends: map[string]*demo.Backend{}}
	r.sb = startSignalbox(t, c.HTTPAddr(), "", args...)
	for _, v := range []string{"v1", "v2"} {
		tr, err := demo.NewTracing("http://"+r.sb.HTTPAddr+"/api/v2/spans", "greeter", v, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
		b, err := demo.StartBackendWith("127.0.0.1:0", "greeter-"+v, v, demo.BackendOptions{ServerOptions: []grpc.ServerOption{tr.ServerOption()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		c.RegisterInstance(t, consultest.Instance{Service: "greeter", ID: "greeter-" + v, Address: "127.0.0.1", Port: b.Addr().Port, Meta: map[string]string{"version": v}})
		r.backends[v] = b
	}
	r.cc = dial(t, r.sb.XDSAddr, "release-client", "greeter")
	eventually(t, 20*time.Second, "the client reaches greeter", func() bool {
		return callsAvoid(r.cc, 1)
	})
	return r
}

// load keeps the client calling until the test ends.
func (r *releaseRig) load(interval time.Duration) *demo.Tally {
	ctx, cancel := context.WithCancel(context.Background())
	var tally demo.Tally
	done := make(chan struct{})
	go func() { demo.Load(ctx, r.cc, interval, &tally); close(done) }()
	r.t.Cleanup(func() { cancel(); <-done })
	return &tally
}

// api calls the release API.
func (r *releaseRig) api(method, path, token, body string) (int, string) {
	r.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+r.sb.HTTPAddr+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// cli runs `signalbox rollout ...` against the rig's signalbox.
func (r *releaseRig) cli(args ...string) (string, error) {
	all := append([]string{"rollout", "--addr", r.sb.HTTPAddr, "--token", opToken}, args...)
	out, err := exec.Command(signalboxBin, all...).CombinedOutput()
	return string(out), err
}

func (r *releaseRig) get(id string) rollout.Rollout {
	r.t.Helper()
	code, body := r.api("GET", "/api/v1/rollouts/"+id, viewerToken, "")
	var ro rollout.Rollout
	if code != 200 || json.Unmarshal([]byte(body), &ro) != nil {
		r.t.Fatalf("GET rollout %s: %d %s", id, code, body)
	}
	return ro
}

// waitPhase polls the rollout until it is in one of the phases; a phase in
// never fails the test at once.
func (r *releaseRig) waitPhase(id string, within time.Duration, never []rollout.Phase, want ...rollout.Phase) rollout.Rollout {
	r.t.Helper()
	var ro rollout.Rollout
	eventually(r.t, within, fmt.Sprintf("%s reaches %v", id, want), func() bool {
		ro = r.get(id)
		for _, p := range never {
			if ro.Phase == p {
				r.t.Fatalf("%s went %s: %s\n%s", id, ro.Phase, ro.Reason, history(ro))
			}
		}
		for _, p := range want {
			if ro.Phase == p {
				return true
			}
		}
		return false
	})
	return ro
}

func history(ro rollout.Rollout) string {
	var b strings.Builder
	for _, e := range ro.History {
		fmt.Fprintf(&b, "  %s %-8s step %d weight %d %s→%s %s: %s\n", e.At.Format("15:04:05.000"), e.Kind, e.Step, e.Weight, e.From, e.To, e.Actor, e.Reason)
	}
	return b.String()
}

func stepEvents(ro rollout.Rollout) []int {
	var out []int
	for _, e := range ro.History {
		if e.Kind == "step" {
			out = append(out, e.Step)
		}
	}
	return out
}

// onlyReaches makes n calls and reports whether all succeeded on version v.
func onlyReaches(cc *grpc.ClientConn, n int, v string, md ...string) bool {
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if len(md) > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, md...)
		}
		res := demo.Call(ctx, cc)
		cancel()
		if res.Err != nil || res.Version != v {
			return false
		}
	}
	return true
}

// TestReleaseHealthyCandidateIsPromoted: started with the CLI, a healthy
// candidate goes through every step to 100%; client traffic ends on it; the
// history holds every step, decision (with statistics) and command.
func TestReleaseHealthyCandidateIsPromoted(t *testing.T) {
	r := startReleaseRig(t)
	r.load(3 * time.Millisecond)
	out, err := r.cli("start", "--service", "greeter", "--baseline", "v1", "--candidate", "v2", "--steps", "20,50", "--step-interval", "2s", "--min-requests", "50")
	if err != nil || !strings.Contains(out, "rollout greeter.1 started") {
		t.Fatalf("rollout start: %v\n%s", err, out)
	}
	ro := r.waitPhase("greeter.1", 60*time.Second, []rollout.Phase{rollout.RollingBack, rollout.RolledBack, rollout.Paused, rollout.Failed}, rollout.Succeeded)
	if got := fmt.Sprint(stepEvents(ro)); got != "[2]" {
		t.Errorf("step events %s, want [2] (step 1 starts with the rollout)\n%s", got, history(ro))
	}
	var passed, created int
	for _, e := range ro.History {
		if e.Kind == "decision" {
			if e.Stats == nil || e.Stats.Stats.Candidate.Requests < 50 || e.Stats.Verdict != "continue" {
				t.Errorf("a passed step's decision without its statistics or verdict: %+v", e)
			}
			passed++
		}
		if e.Kind == "command" && e.Reason == "created" && strings.HasPrefix(e.Actor, "operator:") {
			created++
		}
	}
	if passed != 2 || created != 1 {
		t.Errorf("%d step decisions and %d audited creations, want 2 and 1\n%s", passed, created, history(ro))
	}
	eventually(t, 10*time.Second, "client traffic is all on v2", func() bool { return onlyReaches(r.cc, 100, "v2") })
	out, err = r.cli("status", "greeter.1")
	if err != nil || !strings.Contains(out, "Succeeded") {
		t.Errorf("rollout status: %v\n%s", err, out)
	}
}

// webhookSink is a webhook receiver: it keeps every notification.
type webhookSink struct {
	mu  sync.Mutex
	got []map[string]any
}

func (w *webhookSink) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	var n map[string]any
	if req.Header.Get("Content-Type") != "application/json" || json.NewDecoder(req.Body).Decode(&n) != nil {
		http.Error(rw, "want a JSON notification", http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.got = append(w.got, n)
	w.mu.Unlock()
}

func (w *webhookSink) find(kind, to string) map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.got {
		if n["kind"] == kind && (to == "" || n["to"] == to) {
			return n
		}
	}
	return nil
}

// TestReleaseFailingCandidateIsRolledBack: a candidate failing 10% of calls
// is rolled back by the analysis alone; traffic returns to the baseline; a
// webhook hears of it and the metrics count it.
func TestReleaseFailingCandidateIsRolledBack(t *testing.T) {
	sink := &webhookSink{}
	hook := httptest.NewServer(sink)
	t.Cleanup(hook.Close)
	hooks := filepath.Join(t.TempDir(), "webhooks.json")
	if err := os.WriteFile(hooks, []byte(`{"webhooks":[{"url":"`+hook.URL+`/release","services":["greeter"]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startReleaseRig(t, "--rollout-webhooks", hooks)
	r.backends["v2"].SetFailureRate(0.10)
	r.load(3 * time.Millisecond)
	// A long hold: only the analysis can end this rollout in time.
	code, body := r.api("POST", "/api/v1/rollouts", opToken, `{"service":"greeter","baseline":"v1","candidate":"v2","steps":[20,50],"stepInterval":"10m"}`)
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	ro := r.waitPhase("greeter.1", 60*time.Second, []rollout.Phase{rollout.Succeeded, rollout.Paused}, rollout.RolledBack)
	var fail *rollout.Event
	for i, e := range ro.History {
		if e.Kind == "decision" && e.Stats != nil && e.Stats.Verdict == "fail" {
			fail = &ro.History[i]
		}
	}
	if fail == nil {
		t.Fatalf("no failing decision in the history:\n%s", history(ro))
	}
	st := fail.Stats.Stats
	if st.Candidate.Errors == 0 || st.LogLambda < st.Threshold {
		t.Errorf("the decision's statistics do not show the rejection: %+v", st)
	}
	if !strings.Contains(ro.Reason, "back on v1") {
		t.Errorf("rolled back saying %q, want that traffic is back on v1", ro.Reason)
	}
	t.Logf("rolled back: %s (candidate %d/%d errors, baseline %d/%d, log Λ %.2f ≥ %.2f)", fail.Reason,
		st.Candidate.Errors, st.Candidate.Requests, st.Baseline.Errors, st.Baseline.Requests, st.LogLambda, st.Threshold)
	eventually(t, 10*time.Second, "client traffic is all back on v1", func() bool { return onlyReaches(r.cc, 100, "v1") })
	eventually(t, 10*time.Second, "the webhook hears of the rollback", func() bool {
		return sink.find("phase", "RolledBack") != nil && sink.find("decision", "") != nil && sink.find("command", "") != nil
	})
	if n := sink.find("decision", ""); n["rolloutId"] != "greeter.1" || n["stats"] == nil {
		t.Errorf("the decision's notification: %v, want the rollout and its statistics", n)
	}
	_, metrics := r.sb.get("/metrics")
	for _, want := range []string{`signalbox_rollout_rollbacks_total{service="greeter"} 1`, `signalbox_rollout_decisions_total{service="greeter",verdict="fail"} 1`, `signalbox_notify_delivered_total{webhook="0"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestReleaseWithoutTrafficPauses: with no calls the rollout holds its step,
// then pauses saying why; it never promotes nor rolls back.
func TestReleaseWithoutTrafficPauses(t *testing.T) {
	r := startReleaseRig(t)
	code, body := r.api("POST", "/api/v1/rollouts", opToken, `{"service":"greeter","baseline":"v1","candidate":"v2","steps":[20],"stepInterval":"1s","analysis":{"noDataTimeout":"3s"}}`)
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	never := []rollout.Phase{rollout.Promoting, rollout.Succeeded, rollout.RollingBack, rollout.RolledBack}
	ro := r.waitPhase("greeter.1", 30*time.Second, never, rollout.Paused)
	if !strings.Contains(ro.Reason, "too little traffic") || ro.Step != 1 {
		t.Errorf("paused at step %d: %q, want step 1 and too little traffic", ro.Step, ro.Reason)
	}
	for _, e := range ro.History {
		if e.Kind == "decision" {
			t.Errorf("a decision without data: %+v", e)
		}
	}
}

// weightLog records, as an Envoy sidecar sees them, greeter's candidate
// weights in the order served, across signalbox restarts.
type weightLog struct {
	mu   sync.Mutex
	seen []string
}

func (w *weightLog) add(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.seen); n == 0 || w.seen[n-1] != s {
		w.seen = append(w.seen, s)
	}
}

func (w *weightLog) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.seen...)
}

func watchWeights(t *testing.T, xdsAddr string) *weightLog {
	w := &weightLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			ads, err := adsclient.Dial(ctx, xdsAddr, adsclient.Options{NodeID: "watcher-envoy", Cluster: "watcher", UserAgent: "envoy",
				Metadata: map[string]any{ir.NodeMetaSidecar: true, ir.NodeMetaAppPort: "7000"}})
			if err == nil {
				err = ads.Subscribe(resourcev3.ListenerType)
				if err == nil {
					err = ads.Subscribe(resourcev3.RouteType, ir.OutboundRouteName)
				}
				if err == nil {
					_ = ads.WaitFor(time.Hour, func(a *adsclient.Client) bool {
						var rc routev3.RouteConfiguration
						if a.Get(resourcev3.RouteType, ir.OutboundRouteName, &rc) == nil {
							w.add(candidateWeight(&rc))
						}
						return ctx.Err() != nil
					})
				}
				ads.Close()
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond): // redial interval while signalbox is down
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func candidateWeight(rc *routev3.RouteConfiguration) string {
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() != "greeter" {
			continue
		}
		ra := vh.GetRoutes()[len(vh.GetRoutes())-1].GetRoute()
		wcs := ra.GetWeightedClusters().GetClusters()
		if len(wcs) == 0 {
			switch ra.GetCluster() {
			case "outbound|greeter|v2":
				return "100"
			case "outbound|greeter|v1":
				return "0"
			}
			return "no plan"
		}
		for _, wc := range wcs {
			if wc.GetName() == "outbound|greeter|v2" {
				return fmt.Sprint(wc.GetWeight().GetValue())
			}
		}
		return "0"
	}
	return "no greeter"
}

// TestReleaseResumesAfterSIGKILL: signalbox killed mid-rollout and started
// again resumes where it stood: no step skipped or repeated, and the
// weights sidecars see never jump (not even for a moment after the start).
func TestReleaseResumesAfterSIGKILL(t *testing.T) {
	r := startReleaseRig(t)
	r.load(3 * time.Millisecond)
	weights := watchWeights(t, r.sb.XDSAddr)
	code, body := r.api("POST", "/api/v1/rollouts", opToken, `{"service":"greeter","baseline":"v1","candidate":"v2","steps":[10,30,60],"stepInterval":"3s","analysis":{"minRequests":50}}`)
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	eventually(t, 60*time.Second, "step 2", func() bool { return r.get("greeter.1").Step == 2 })
	r.sb.Kill()
	before := r.get2("greeter.1")
	r.sb = startSignalboxAt(t, r.consul.HTTPAddr(), r.sb.XDSAddr, r.sb.HTTPAddr, r.args...)
	ro := r.waitPhase("greeter.1", 90*time.Second, []rollout.Phase{rollout.RollingBack, rollout.RolledBack, rollout.Paused, rollout.Failed}, rollout.Succeeded)
	if got := fmt.Sprint(stepEvents(ro)); got != "[2 3]" {
		t.Errorf("step events %s, want [2 3]: each step once\n%s", got, history(ro))
	}
	if before.Step < 2 {
		t.Errorf("KV held step %d at the kill, want 2 or later", before.Step)
	}
	defer func() { t.Logf("the sidecar saw %q", weights.all()) }()
	eventually(t, 10*time.Second, "the sidecar sees 100", func() bool {
		w := weights.all()
		return len(w) > 0 && w[len(w)-1] == "100"
	})
	// Before the rollout the route has no plan; after its start, only the
	// steps in order.
	if got := strings.TrimPrefix(strings.Join(weights.all(), " "), "no plan "); got != "10 30 60 100" {
		t.Errorf("the sidecar saw candidate weights %q, want 10 30 60 100 in order, nothing else", got)
	}
}

// get2 reads a rollout straight from Consul KV, as the restarted process
// will (signalbox is down).
func (r *releaseRig) get2(id string) rollout.Rollout {
	r.t.Helper()
	svc := id[:strings.LastIndexByte(id, '.')]
	p, _, err := r.consul.Client().KV().Get("signalbox/rollouts/current/"+svc, nil)
	if err != nil || p == nil {
		r.t.Fatalf("read %s from KV: %v", id, err)
	}
	var ro rollout.Rollout
	if err := json.Unmarshal(p.Value, &ro); err != nil {
		r.t.Fatal(err)
	}
	return ro
}

// TestReleaseBlueGreen: the preview header reaches only the candidate and
// other calls only the baseline; after the preview passes, everything
// switches; an anomaly in the post-promotion window switches straight back.
func TestReleaseBlueGreen(t *testing.T) {
	r := startReleaseRig(t)
	code, body := r.api("POST", "/api/v1/rollouts", opToken, `{"service":"greeter","strategy":"bluegreen","baseline":"v1","candidate":"v2","stepInterval":"2s","postPromotionWindow":"5m","analysis":{"minRequests":50}}`)
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	eventually(t, 10*time.Second, "preview calls reach only v2", func() bool {
		return onlyReaches(r.cc, 50, "v2", "x-signalbox-preview", "1")
	})
	if !onlyReaches(r.cc, 100, "v1") {
		t.Fatal("a call without the preview header reached v2 (or failed) during the preview")
	}
	// Preview traffic for the analysis, and user traffic.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			onlyReaches(r.cc, 1, "v2", "x-signalbox-preview", "1")
			time.Sleep(3 * time.Millisecond) // pacing of the preview load, not a wait
		}
	}()
	r.load(3 * time.Millisecond)
	r.waitPhase("greeter.1", 60*time.Second, []rollout.Phase{rollout.RollingBack, rollout.RolledBack, rollout.Paused, rollout.Failed}, rollout.Promoting)
	eventually(t, 10*time.Second, "after the switch every call reaches v2", func() bool { return onlyReaches(r.cc, 100, "v2") })
	// An anomaly in the window: the switch goes straight back, with no
	// guard set: on the one-sample test against the baseline's rate from
	// before the switch, or on the two-sample test while spans of the last
	// baseline calls still arrive.
	r.backends["v2"].SetFailureRate(0.3)
	ro := r.waitPhase("greeter.1", 60*time.Second, []rollout.Phase{rollout.Succeeded}, rollout.RolledBack)
	var switchedBack bool
	for _, e := range ro.History {
		if e.Kind == "phase" && e.From == rollout.Promoting && e.To == rollout.RollingBack && strings.Contains(e.Reason, "switched back to v1") {
			switchedBack = true
		}
	}
	if !switchedBack {
		t.Errorf("no switch back in the history:\n%s", history(ro))
	}
	r.backends["v2"].SetFailureRate(0)
	eventually(t, 10*time.Second, "every call is back on v1", func() bool { return onlyReaches(r.cc, 100, "v1") })
}

// TestReleaseAPIAuthEndToEnd: the token file's roles hold on the running
// binary, and every mutation is audited with who did it.
func TestReleaseAPIAuthEndToEnd(t *testing.T) {
	r := startReleaseRig(t)
	spec := `{"service":"greeter","baseline":"v1","candidate":"v2","steps":[20],"stepInterval":"1m"}`
	if code, body := r.api("POST", "/api/v1/rollouts", "", spec); code != 401 {
		t.Errorf("no token: %d %s, want 401", code, body)
	}
	if code, body := r.api("POST", "/api/v1/rollouts", viewerToken, spec); code != 403 {
		t.Errorf("viewer token: %d %s, want 403", code, body)
	}
	if code, body := r.api("GET", "/api/v1/rollouts", "", ""); code != 401 {
		t.Errorf("read without a token: %d %s, want 401", code, body)
	}
	if code, body := r.api("POST", "/api/v1/rollouts", opToken, `{"service":"nope","baseline":"v1","candidate":"v2"}`); code != 404 || !strings.Contains(body, "not in Consul") {
		t.Errorf("unknown service: %d %s, want 404", code, body)
	}
	if code, body := r.api("POST", "/api/v1/rollouts", opToken, `{"service":"greeter","baseline":"v1","candidate":"v7"}`); code != 404 || !strings.Contains(body, `version \"v7\"`) {
		t.Errorf("unknown version: %d %s, want 404", code, body)
	}
	if code, body := r.api("POST", "/api/v1/rollouts", opToken, spec); code != 201 {
		t.Fatalf("operator: %d %s", code, body)
	}
	if code, body := r.api("POST", "/api/v1/rollouts", opToken, spec); code != 409 {
		t.Errorf("second rollout: %d %s, want 409", code, body)
	}
	if out, err := r.cli("pause", "greeter.1", "--reason", "e2e"); err != nil {
		t.Fatalf("rollout pause: %v\n%s", err, out)
	}
	if code, body := r.api("POST", "/api/v1/rollouts/greeter.1/abort", viewerToken, ""); code != 403 {
		t.Errorf("viewer abort: %d %s, want 403", code, body)
	}
	if code, body := r.api("POST", "/api/v1/rollouts/greeter.1/abort", opToken, `{"reason":"done testing"}`); code != 200 {
		t.Errorf("operator abort: %d %s", code, body)
	}
	ro := r.get("greeter.1")
	var audit []string
	for _, e := range ro.History {
		if e.Kind == "command" {
			audit = append(audit, e.Reason)
			if !strings.HasPrefix(e.Actor, "operator:") || e.At.IsZero() {
				t.Errorf("audit entry without who or when: %+v", e)
			}
		}
	}
	if got := strings.Join(audit, "; "); got != "created; pause (e2e); abort (done testing)" {
		t.Errorf("audit %q, want the creation, the pause and the abort", got)
	}
	if ro.Phase != rollout.Aborted {
		t.Errorf("phase %s, want Aborted", ro.Phase)
	}
}
