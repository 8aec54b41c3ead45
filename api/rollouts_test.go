package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/signalbox/signalbox/rollout"
)

// memReleases keeps rollouts in memory and applies rollout.Step, so the
// handlers are tested against the real model (the Consul-backed controller
// is tested in rollout/controller and end to end).
type memReleases struct {
	all map[string]rollout.Rollout
	now time.Time
}

func (m *memReleases) Create(_ context.Context, spec rollout.Spec, actor string) (rollout.Rollout, error) {
	spec = spec.WithDefaults()
	if err := spec.Validate(); err != nil {
		return rollout.Rollout{}, fmt.Errorf("%w: %w", rollout.ErrInvalid, err)
	}
	if spec.Service != "greeter" {
		return rollout.Rollout{}, fmt.Errorf("%w: service %q is not in Consul", rollout.ErrNotFound, spec.Service)
	}
	for _, r := range m.all {
		if r.Spec.Service == spec.Service && !r.Phase.Terminal() {
			return rollout.Rollout{}, fmt.Errorf("%w: %s already has an active rollout", rollout.ErrConflict, spec.Service)
		}
	}
	r := rollout.New(fmt.Sprintf("%s.%d", spec.Service, len(m.all)+1), spec, m.now)
	r.History = append(r.History, rollout.Event{At: m.now, Kind: "command", Actor: actor, Reason: "created"})
	r, _, err := rollout.Step(r, rollout.Observation{}, m.now)
	m.all[r.ID] = r
	return r, err
}

func (m *memReleases) List(context.Context, bool) ([]rollout.Rollout, error) {
	var out []rollout.Rollout
	for _, r := range m.all {
		out = append(out, r)
	}
	return out, nil
}

func (m *memReleases) Get(_ context.Context, id string) (rollout.Rollout, error) {
	r, ok := m.all[id]
	if !ok {
		return r, fmt.Errorf("%w: no rollout %q", rollout.ErrNotFound, id)
	}
	return r, nil
}

func (m *memReleases) Command(ctx context.Context, id string, c rollout.Command) (rollout.Rollout, error) {
	r, err := m.Get(ctx, id)
	if err != nil {
		return r, err
	}
	r, _, err = rollout.Step(r, rollout.Observation{Command: &c}, m.now)
	if err == nil {
		m.all[id] = r
	}
	return r, err
}

const (
	operatorToken = "op-0123456789abcdef"
	viewerToken   = "view-0123456789abcdef"
)

func releaseAPI(t *testing.T, withTokens bool) (http.Handler, *memReleases) {
	t.Helper()
	rel := &memReleases{all: map[string]rollout.Rollout{}, now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	var tokens *Tokens
	if withTokens {
		var err error
		tokens, err = ParseTokens(strings.NewReader("# team tokens\noperator:"+operatorToken+"\n\nviewer: "+viewerToken+"\n"), "tokens")
		if err != nil {
			t.Fatal(err)
		}
	}
	return New(Deps{Releases: rel, Tokens: tokens}), rel
}

func call(t *testing.T, h http.Handler, method, path, token, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	// Errors are matched on their words, not their JSON escaping.
	var e Error
	if rec.Code >= 400 && json.Unmarshal(b, &e) == nil {
		return rec.Code, e.Error + " (hint: " + e.Hint + ")"
	}
	return rec.Code, string(b)
}

const goodSpec = `{"service":"greeter","strategy":"canary","baseline":"v1","candidate":"v2","steps":[5,25,50],"stepInterval":"30s"}`

func TestReleaseAPIAuth(t *testing.T) {
	h, rel := releaseAPI(t, true)
	cases := []struct {
		name, method, path, token, body string
		code                            int
		says                            string
	}{
		{"no token", "GET", "/api/v1/rollouts", "", "", 401, "no bearer token"},
		{"unknown token", "GET", "/api/v1/rollouts", "not-a-token-at-all", "", 401, "unknown bearer token"},
		{"viewer reads", "GET", "/api/v1/rollouts", viewerToken, "", 200, `"rollouts": []`},
		{"viewer cannot start", "POST", "/api/v1/rollouts", viewerToken, goodSpec, 403, "needs an operator token"},
		{"operator starts", "POST", "/api/v1/rollouts", operatorToken, goodSpec, 201, `"phase": "Progressing"`},
		{"viewer cannot pause", "POST", "/api/v1/rollouts/greeter.1/pause", viewerToken, "", 403, "needs an operator token"},
		{"no token cannot pause", "POST", "/api/v1/rollouts/greeter.1/pause", "", "", 401, "no bearer token"},
		{"operator pauses", "POST", "/api/v1/rollouts/greeter.1/pause", operatorToken, `{"reason":"looking at the dashboards"}`, 200, `"phase": "Paused"`},
	}
	for _, c := range cases {
		code, body := call(t, h, c.method, c.path, c.token, c.body)
		if code != c.code || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, code, body, c.code, c.says)
		}
	}
	// Every mutation is audited: who (a role and a token hash, never the
	// token), what and when.
	r := rel.all["greeter.1"]
	var audit []string
	for _, e := range r.History {
		if e.Kind == "command" {
			audit = append(audit, e.Actor+" "+e.Reason)
			if e.At.IsZero() {
				t.Errorf("audit entry without a time: %+v", e)
			}
		}
	}
	if len(audit) != 2 || !strings.HasPrefix(audit[0], "operator:") || !strings.HasSuffix(audit[0], " created") ||
		!strings.HasSuffix(audit[1], " pause (looking at the dashboards)") {
		t.Errorf("audit %q, want the creation and the pause by the operator token", audit)
	}
	for _, a := range audit {
		if strings.Contains(a, operatorToken) {
			t.Errorf("the audit shows the token itself: %q", a)
		}
	}
}

func TestReleaseAPIWithoutTokensIsReadOnly(t *testing.T) {
	h, _ := releaseAPI(t, false)
	if code, body := call(t, h, "GET", "/api/v1/rollouts", "", ""); code != 200 {
		t.Errorf("read without tokens: %d %s", code, body)
	}
	if code, body := call(t, h, "POST", "/api/v1/rollouts", "", goodSpec); code != 403 || !strings.Contains(body, "--api-tokens") {
		t.Errorf("write without tokens: %d %s, want 403 saying how to enable writes", code, body)
	}
}

func TestReleaseAPIErrorsSayWhatToFix(t *testing.T) {
	h, _ := releaseAPI(t, true)
	if code, body := call(t, h, "POST", "/api/v1/rollouts", operatorToken, goodSpec); code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	cases := []struct {
		name, method, path, body string
		code                     int
		says                     string
	}{
		{"malformed JSON", "POST", "/api/v1/rollouts", `{"service":`, 400, "malformed JSON"},
		{"unknown field", "POST", "/api/v1/rollouts", `{"service":"greeter","stepInterval":"1m","stepz":[1]}`, 400, `unknown field "stepz"`},
		{"decreasing weights", "POST", "/api/v1/rollouts", `{"service":"greeter","baseline":"v1","candidate":"v2","steps":[50,10]}`, 400, "weights must increase"},
		{"bad duration", "POST", "/api/v1/rollouts", `{"service":"greeter","baseline":"v1","candidate":"v2","stepInterval":"soon"}`, 400, `want a duration like "30s"`},
		{"unknown service", "POST", "/api/v1/rollouts", `{"service":"billing","baseline":"v1","candidate":"v2"}`, 404, `service "billing" is not in Consul`},
		{"second active", "POST", "/api/v1/rollouts", goodSpec, 409, "already has an active rollout"},
		{"unknown rollout", "GET", "/api/v1/rollouts/greeter.7", "", 404, `no rollout "greeter.7"`},
		{"unknown action", "POST", "/api/v1/rollouts/greeter.1/explode", "", 404, `no action "explode"`},
		{"resume while progressing", "POST", "/api/v1/rollouts/greeter.1/resume", "", 409, "only a paused rollout can be resumed"},
		{"bad all", "GET", "/api/v1/rollouts?all=maybe", "", 400, `all="maybe": want true or false`},
		{"two values", "POST", "/api/v1/rollouts/greeter.1/pause", `{"reason":"a"}{"reason":"b"}`, 400, "more than one JSON value"},
	}
	for _, c := range cases {
		code, body := call(t, h, c.method, c.path, operatorToken, c.body)
		if code != c.code || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %s, want %d saying %q", c.name, code, body, c.code, c.says)
		}
	}
	// An empty command body, even chunked (no Content-Length), is fine.
	req := httptest.NewRequest("POST", "/api/v1/rollouts/greeter.1/pause", io.NopCloser(strings.NewReader("")))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("pause with an empty chunked body: %d %s", rec.Code, rec.Body.String())
	}
	req = httptest.NewRequest("POST", "/api/v1/rollouts", strings.NewReader(goodSpec))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+operatorToken)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "send application/json") {
		t.Errorf("wrong content type: %d %s", rec.Code, rec.Body.String())
	}
}

func TestParseTokensSaysWhatIsWrong(t *testing.T) {
	cases := map[string]string{
		"operator\n":               `tokens:1: want "role:token"`,
		"admin:0123456789abcdef\n": `role "admin": want viewer or operator`,
		"operator:short\n":         "use at least 16",
		"# nothing\n\n":            "no tokens",
		"operator:0123456789abcdef\nviewer:0123456789abcdef\n": "tokens:2: the same token is listed twice",
	}
	for in, want := range cases {
		if _, err := ParseTokens(strings.NewReader(in), "tokens"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}
