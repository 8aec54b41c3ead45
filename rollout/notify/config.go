package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Format is how a webhook's body is written.
type Format string

const (
	// FormatJSON posts each Notification as a JSON object (the default).
	FormatJSON Format = "json"
	// FormatSlack posts {"text": "..."}, the body of a Slack incoming
	// webhook (Mattermost and others read it too).
	FormatSlack Format = "slack"
)

// DefaultTimeout is a webhook's timeout per attempt when its config gives
// none.
const DefaultTimeout = 10 * time.Second

// MinTimeoutSeconds is the shortest timeoutSeconds, a millisecond.
const MinTimeoutSeconds = 0.001

// MaxTimeoutSeconds bounds timeoutSeconds: one attempt holds back every
// later notification of its webhook (they are delivered in order).
const MaxTimeoutSeconds = 300

// maxConfigBytes bounds the config file: it lists webhooks, not data.
const maxConfigBytes = 1 << 20

// Config is the notification config: the webhooks to post to.
type Config struct {
	Webhooks []Webhook `json:"webhooks"`
}

// Webhook is one endpoint and what it is sent.
type Webhook struct {
	// URL is where notifications are posted (http or https). Treat it as a
	// secret: Slack's carry their token in the path. Logs show only its
	// scheme and host.
	URL string `json:"url"`
	// Services are the services whose rollouts the webhook hears of; empty
	// means every service.
	Services []string `json:"services,omitempty"`
	// Kinds are the kinds of events the webhook hears of (phase, step,
	// command, decision); empty means every kind. A chat channel may want
	// only phase changes; a rollback alone is then one message, not three.
	Kinds []string `json:"kinds,omitempty"`
	// Format is json (default) or slack.
	Format Format `json:"format,omitempty"`
	// TimeoutSeconds bounds each attempt (default 10; from 0.001 to 300).
	TimeoutSeconds float64 `json:"timeoutSeconds,omitempty"`
	// Headers are sent with every request, e.g. a token.
	Headers map[string]string `json:"headers,omitempty"`
}

// Timeout is the webhook's timeout per attempt, DefaultTimeout when unset.
func (w Webhook) Timeout() time.Duration {
	if w.TimeoutSeconds <= 0 {
		return DefaultTimeout
	}
	return time.Duration(w.TimeoutSeconds * float64(time.Second))
}

// wants reports whether the webhook hears of a service's rollouts, and of
// events of that kind.
func (w Webhook) wants(service, kind string) bool {
	return (len(w.Services) == 0 || slices.Contains(w.Services, service)) &&
		(len(w.Kinds) == 0 || slices.Contains(w.Kinds, kind))
}

// eventKinds are the kinds a webhook may ask for.
func eventKinds() []string { return []string{KindPhase, KindStep, KindCommand, KindDecision} }

// LoadConfig reads the config file at path (see ParseConfig).
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("notify config: %w", err)
	}
	defer f.Close()
	return ParseConfig(f, path)
}

// ParseConfig reads a JSON config such as
//
//	{"webhooks": [
//	  {"url": "https://hooks.slack.com/services/…", "format": "slack", "services": ["greeter"], "kinds": ["phase"]},
//	  {"url": "https://deploys.example.com/signalbox", "timeoutSeconds": 5, "headers": {"X-Token": "…"}}
//	]}
//
// name (the file's name) prefixes the errors, which say what to fix; every
// mistake of the webhooks is reported at once. Unknown fields are refused,
// so a misspelt one is not silently ignored. Format defaults to json.
func ParseConfig(r io.Reader, name string) (Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxConfigBytes+1))
	if err != nil {
		return Config{}, fmt.Errorf("notify config %s: %w", name, err)
	}
	if len(data) > maxConfigBytes {
		return Config{}, fmt.Errorf("notify config %s: larger than %d bytes: it should list webhooks only", name, maxConfigBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return Config{}, fmt.Errorf(`notify config %s: empty: want {"webhooks": [{"url": "https://…"}]}`, name)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("notify config %s: %s", name, decodeError(data, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		line, col := position(data, dec.InputOffset())
		return Config{}, fmt.Errorf("notify config %s: line %d, column %d: more after the config's closing }: want one JSON object", name, line, col)
	}
	for i := range c.Webhooks {
		if c.Webhooks[i].Format == "" {
			c.Webhooks[i].Format = FormatJSON
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("notify config %s: %w", name, err)
	}
	return c, nil
}

// Validate says everything that is wrong with a config, each in words that
// say what to fix. An empty Format is json.
func (c Config) Validate() error {
	var errs []error
	for i, w := range c.Webhooks {
		bad := func(format string, a ...any) {
			errs = append(errs, fmt.Errorf("webhooks[%d]."+format, append([]any{i}, a...)...))
		}
		if err := checkURL(w.URL); err != nil {
			bad("url: %v", err)
		}
		for j, s := range w.Services {
			if strings.TrimSpace(s) == "" {
				bad("services[%d]: empty: name a Consul service, or leave services out for every service", j)
			} else if strings.TrimSpace(s) != s {
				bad("services[%d] %q: remove the spaces around the name", j, s)
			}
		}
		for j, k := range w.Kinds {
			if !slices.Contains(eventKinds(), k) {
				bad("kinds[%d] %q: want %s (or leave kinds out for every kind)", j, k, strings.Join(eventKinds(), ", "))
			}
		}
		switch w.Format {
		case "", FormatJSON, FormatSlack:
		default:
			bad("format %q: want json or slack", w.Format)
		}
		// Written so that NaN fails too (it cannot come from JSON, but a
		// Config can be built in code).
		if !(w.TimeoutSeconds >= 0) {
			bad("timeoutSeconds %v: must not be negative (leave it out for %v)", w.TimeoutSeconds, DefaultTimeout)
		} else if w.TimeoutSeconds > 0 && w.TimeoutSeconds < MinTimeoutSeconds {
			bad("timeoutSeconds %v: at least %v (leave it out for %v)", w.TimeoutSeconds, MinTimeoutSeconds, DefaultTimeout)
		} else if w.TimeoutSeconds > MaxTimeoutSeconds {
			bad("timeoutSeconds %v: at most %d: a slow webhook holds back its later notifications", w.TimeoutSeconds, MaxTimeoutSeconds)
		}
		for _, k := range slices.Sorted(maps.Keys(w.Headers)) {
			if err := checkHeader(k, w.Headers[k]); err != nil {
				bad("headers: %v", err)
			}
		}
	}
	return errors.Join(errs...)
}

func checkURL(raw string) error {
	if raw == "" {
		return errors.New(`required: the endpoint to post to, e.g. "https://hooks.slack.com/services/…"`)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the whole URL, which may hold a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a URL (%v): want e.g. \"https://hooks.example.com/path\"", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme %q: want an http:// or https:// URL", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%s:// URL without a host: want e.g. \"https://hooks.example.com/path\"", u.Scheme)
	}
	return nil
}

// reserved headers are set by the notifier or the HTTP client.
var reserved = map[string]string{
	"Content-Type":      "it follows the format",
	"Content-Length":    "the HTTP client sets it",
	"Host":              "it comes from the url",
	"Transfer-Encoding": "the HTTP client sets it",
	"Connection":        "the HTTP client sets it",
}

func checkHeader(name, value string) error {
	if name == "" {
		return errors.New("a header has an empty name")
	}
	for _, c := range []byte(name) {
		if !isTokenChar(c) {
			return fmt.Errorf("%q: not a valid header name (letters, digits and !#$%%&'*+-.^_`|~)", name)
		}
	}
	if why, ok := reserved[http.CanonicalHeaderKey(name)]; ok {
		return fmt.Errorf("%s: cannot be set here: %s", name, why)
	}
	for _, c := range []byte(value) {
		if c == '\r' || c == '\n' || c == 0 {
			return fmt.Errorf("%s: the value holds a line break or NUL, which HTTP cannot carry", name)
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// decodeError rewords a JSON decoding error with where it happened.
func decodeError(data []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := position(data, syn.Offset)
		return fmt.Sprintf("line %d, column %d: not valid JSON: %s", line, col, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		line, col := position(data, typ.Offset)
		field := typ.Field
		if field == "" {
			field = "the config"
		}
		return fmt.Sprintf("line %d, column %d: %s: got a JSON %s, want %s", line, col, field, typ.Value, jsonKind(typ.Type.Kind().String()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early: a bracket or brace is not closed"
	case strings.Contains(err.Error(), "unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ") +
			`: the config is {"webhooks": [...]} and each webhook has url, services, format, timeoutSeconds and headers; check the spelling`
	}
	return err.Error()
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "float64":
		return "a number"
	case "slice":
		return "a list"
	case "map", "struct":
		return "an object"
	}
	return goKind
}

// position turns a byte offset into a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}
