package notify

import (
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseConfig(t *testing.T) {
	in := `{"webhooks": [
	  {"url": "https://hooks.slack.com/services/T0/B0/secret", "services": ["greeter"], "format": "slack"},
	  {"url": "http://deploys.internal:8080/signalbox", "timeoutSeconds": 2.5, "headers": {"X-Token": "s3cret"}}
	]}`
	got, err := ParseConfig(strings.NewReader(in), "notify.json")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Webhooks: []Webhook{
		{URL: "https://hooks.slack.com/services/T0/B0/secret", Services: []string{"greeter"}, Format: FormatSlack},
		{URL: "http://deploys.internal:8080/signalbox", Format: FormatJSON, TimeoutSeconds: 2.5, Headers: map[string]string{"X-Token": "s3cret"}},
	}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseConfig (-want +got):\n%s", d)
	}
	if got.Webhooks[0].Timeout() != DefaultTimeout || got.Webhooks[1].Timeout() != 2500*time.Millisecond {
		t.Errorf("timeouts %v %v", got.Webhooks[0].Timeout(), got.Webhooks[1].Timeout())
	}
	if !got.Webhooks[1].wants("anything", KindStep) || !got.Webhooks[0].wants("greeter", KindStep) || got.Webhooks[0].wants("payments", KindStep) {
		t.Error("services filter: empty means every service, else only those listed")
	}
	phases := Webhook{URL: "https://x", Kinds: []string{KindPhase}}
	if !phases.wants("greeter", KindPhase) || phases.wants("greeter", KindDecision) {
		t.Error("kinds filter: only the kinds listed")
	}
	if c, err := ParseConfig(strings.NewReader(`{"webhooks": []}`), "x"); err != nil || len(c.Webhooks) != 0 {
		t.Errorf("no webhooks: %v %v", c, err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"empty", "  \n", []string{"notify.json: empty"}},
		{"syntax", "{\"webhooks\": [\n  {\"url\": \"https://x\",}\n]}", []string{"line 2, column", "not valid JSON"}},
		{"truncated", `{"webhooks": [{"url": "https://x"}`, []string{"ends early"}},
		{"unknown top-level field", `{"webhook": []}`, []string{`unknown field "webhook"`, "check the spelling"}},
		{"unknown webhook field", `{"webhooks": [{"url": "https://x", "timeout": 5}]}`, []string{`unknown field "timeout"`, "timeoutSeconds"}},
		{"wrong type", `{"webhooks": [{"url": "https://x", "timeoutSeconds": "5s"}]}`, []string{"line 1", "timeoutSeconds", "got a JSON string, want a number"}},
		{"trailing", `{"webhooks": []} {"webhooks": []}`, []string{"more after the config's closing }"}},
		{"missing url", `{"webhooks": [{"format": "slack"}]}`, []string{"webhooks[0].url: required"}},
		{"bad scheme", `{"webhooks": [{"url": "ftp://x/y"}]}`, []string{`webhooks[0].url: scheme "ftp"`, "http:// or https://"}},
		{"no scheme", `{"webhooks": [{"url": "hooks.slack.com/services/x"}]}`, []string{`scheme ""`}},
		{"no host", `{"webhooks": [{"url": "https:///path"}]}`, []string{"without a host"}},
		{"not a url", `{"webhooks": [{"url": "https://exa mple.com/tok3n"}]}`, []string{"webhooks[0].url: not a URL"}},
		{"unknown format", `{"webhooks": [{"url": "https://x", "format": "teams"}]}`, []string{`format "teams": want json or slack`}},
		{"unknown kind", `{"webhooks": [{"url": "https://x", "kinds": ["phase", "rollback"]}]}`, []string{`webhooks[0].kinds[1] "rollback": want phase, step, command, decision`}},
		{"negative timeout", `{"webhooks": [{"url": "https://x", "timeoutSeconds": -1}]}`, []string{"timeoutSeconds -1: must not be negative"}},
		{"huge timeout", `{"webhooks": [{"url": "https://x", "timeoutSeconds": 1e300}]}`, []string{"at most 300"}},
		{"tiny timeout", `{"webhooks": [{"url": "https://x", "timeoutSeconds": 1e-300}]}`, []string{"at least 0.001"}},
		{"empty service", `{"webhooks": [{"url": "https://x", "services": [""]}]}`, []string{"services[0]: empty"}},
		{"spaced service", `{"webhooks": [{"url": "https://x", "services": [" greeter"]}]}`, []string{"remove the spaces"}},
		{"bad header name", `{"webhooks": [{"url": "https://x", "headers": {"X Token": "a"}}]}`, []string{"not a valid header name"}},
		{"header injection", `{"webhooks": [{"url": "https://x", "headers": {"X-Token": "a\r\nEvil: 1"}}]}`, []string{"line break"}},
		{"reserved header", `{"webhooks": [{"url": "https://x", "headers": {"content-type": "text/plain"}}]}`, []string{"content-type: cannot be set here"}},
		{"every mistake at once", `{"webhooks": [{"url": "ftp://x"}, {"url": "https://y", "format": "xml"}]}`, []string{"webhooks[0].url", "webhooks[1].format"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tc.in), "notify.json")
			if err == nil {
				t.Fatalf("no error for %s", tc.in)
			}
			if !strings.HasPrefix(err.Error(), "notify config notify.json: ") {
				t.Errorf("error %q does not name the file", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseConfigDoesNotEchoTheURL(t *testing.T) {
	_, err := ParseConfig(strings.NewReader(`{"webhooks": [{"url": "https://hooks.slack.com/services/T0/%zz-secret"}]}`), "n")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("error %v: want one that does not quote the URL's secret path", err)
	}
}

// FuzzParseConfig checks that ParseConfig never panics, that what it
// accepts is valid, and that it reads back what it accepted.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"webhooks": []}`,
		`{"webhooks": [{"url": "https://hooks.slack.com/services/T/B/x", "format": "slack", "services": ["greeter", "payments"]}]}`,
		`{"webhooks": [{"url": "http://127.0.0.1:9/x", "timeoutSeconds": 0.5, "headers": {"X-Token": "t"}}]}`,
		`{"webhooks": [{"url": "ftp://x"}]}`,
		`{"webhooks": [{"url": "https://x", "timeoutSeconds": -3}]}`,
		`{"webhooks": [{"url": "https://x"}]} trailing`,
		`null`,
		``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseConfig(strings.NewReader(in), "fuzz.json")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "notify config fuzz.json: ") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
		for _, w := range c.Webhooks {
			u, err := url.Parse(w.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Errorf("accepted url %q", w.URL)
			}
			if w.Format != FormatJSON && w.Format != FormatSlack {
				t.Errorf("accepted format %q", w.Format)
			}
			if d := w.Timeout(); d <= 0 || d > MaxTimeoutSeconds*time.Second {
				t.Errorf("timeout %v from timeoutSeconds %v", d, w.TimeoutSeconds)
			}
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseConfig(strings.NewReader(string(b)), "again.json")
		if err != nil {
			t.Fatalf("does not read back its own config %s: %v", b, err)
		}
		if d := cmp.Diff(c, again, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("round trip (-first +again):\n%s", d)
		}
	})
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/notify.json"
	if err := os.WriteFile(path, []byte(`{"webhooks": [{"url": "https://x", "format": "slak"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), path+`: webhooks[0].format "slak"`) {
		t.Errorf("err %v", err)
	}
	if _, err := LoadConfig(dir + "/missing.json"); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
}
