package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Config is the telemetry: and traffic: sections of signalbox's config file.
// Read it with ParseConfig, fill in signalbox's own Zipkin endpoint with
// WithSelfZipkinURL, and check it with Validate before use.
type Config struct {
	Telemetry TelemetryConfig `json:"telemetry"`
	Traffic   TrafficConfig   `json:"traffic"`
}

// TelemetryConfig is the telemetry: section.
type TelemetryConfig struct {
	Tracing   TracingConfig   `json:"tracing"`
	AccessLog AccessLogConfig `json:"accessLog"`
}

// Tracing providers as written in the config file and in meta.
const (
	ProviderZipkin        = "zipkin"
	ProviderOpenTelemetry = "opentelemetry"
	ProviderNone          = "none"
)

// Trace-context propagation formats.
const (
	PropagationB3  = "b3"
	PropagationW3C = "w3c"
)

// Zipkin span encodings.
const (
	EncodingJSON  = "json"
	EncodingProto = "proto"
)

// TracingConfig is telemetry.tracing.
type TracingConfig struct {
	// Provider is zipkin, opentelemetry or none.
	Provider string       `json:"provider"`
	Zipkin   ZipkinConfig `json:"zipkin"`
	// OpenTelemetry is the OTLP/gRPC collector, used when a service (or
	// Provider) picks opentelemetry.
	OpenTelemetry OTelConfig `json:"opentelemetry"`
	// Sampling is the random sampling percentage (0–100).
	Sampling float64 `json:"sampling"`
	// ClientSampling is the percentage of client-forced traces kept (0–100).
	ClientSampling float64 `json:"clientSampling"`
	// OverallSampling caps every other sampling (0–100).
	OverallSampling float64 `json:"overallSampling"`
	// Propagation lists the trace-context formats: b3, w3c or both.
	Propagation []string `json:"propagation"`
	// Tags are extra literal span tags. service, version, host and datacenter
	// are reserved: signalbox sets them per instance. signalbox.als is set
	// per listener (see ir.SpanTagALS) and overrides a tag of that name.
	Tags map[string]string `json:"tags,omitempty"`
}

// ZipkinConfig is telemetry.tracing.zipkin.
type ZipkinConfig struct {
	// URL is the collector, http(s)://host[:port][/path]. Empty means
	// signalbox's own endpoint, filled in by WithSelfZipkinURL.
	URL string `json:"url"`
	// Encoding is json or proto.
	Encoding string `json:"encoding"`
}

// OTelConfig is telemetry.tracing.opentelemetry.
type OTelConfig struct {
	// Address is the OTLP gRPC collector, host:port.
	Address string `json:"address"`
}

// AccessLogConfig is telemetry.accessLog.
type AccessLogConfig struct {
	// ALS streams every request to signalbox's Access Log Service.
	ALS bool `json:"als"`
	// File is an optional JSON-lines access log file.
	File *FileLogConfig `json:"file,omitempty"`
}

// FileLogConfig is telemetry.accessLog.file.
type FileLogConfig struct {
	// Path is absolute.
	Path string `json:"path"`
	// MinStatus logs only responses with status >= MinStatus (0: all, else
	// 100–599).
	MinStatus uint32 `json:"minStatus"`
	// MinDurationMs logs only requests that took at least this long (0: all).
	MinDurationMs uint32 `json:"minDurationMs"`
	// SkipHealthChecks leaves out requests Envoy marks as health checks.
	SkipHealthChecks bool `json:"skipHealthChecks"`
}

// TrafficConfig is the traffic: section.
type TrafficConfig struct {
	ConnectTimeout Duration `json:"connectTimeout"`
	// RequestTimeout is the route timeout; 0 means none.
	RequestTimeout Duration `json:"requestTimeout"`
	Retries        uint32   `json:"retries"`
	// RetryOn is a comma-separated list of Envoy retry_on conditions.
	RetryOn string `json:"retryOn"`
	// RetryBudgetPercent caps concurrent retries as a share of active
	// requests (0–100; 0: no budget).
	RetryBudgetPercent float64       `json:"retryBudgetPercent"`
	Outlier            OutlierConfig `json:"outlier"`
}

// OutlierConfig is traffic.outlier.
type OutlierConfig struct {
	// Consecutive5xx ejects a host after that many 5xx in a row (0: off).
	Consecutive5xx     uint32   `json:"consecutive5xx"`
	Interval           Duration `json:"interval"`
	BaseEjection       Duration `json:"baseEjection"`
	MaxEjectionPercent uint32   `json:"maxEjectionPercent"`
}

// Duration is a time.Duration written as a Go duration string ("2s",
// "250ms") in the config file.
type Duration time.Duration

// String is the Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a Go duration string; null leaves d unchanged.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("got %s, want a duration such as 2s or 250ms", b)
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("got %q, want a duration such as 2s or 250ms", s)
	}
	*d = Duration(v)
	return nil
}

// Built-in defaults.
const (
	DefaultSampling           = 1.0
	DefaultClientSampling     = 100.0
	DefaultOverallSampling    = 100.0
	DefaultConnectTimeout     = 2 * time.Second
	DefaultRequestTimeout     = 15 * time.Second
	DefaultRetries            = 2
	DefaultRetryOn            = "connect-failure,refused-stream,unavailable"
	DefaultRetryBudgetPercent = 20.0
	DefaultConsecutive5xx     = 5
	DefaultOutlierInterval    = 10 * time.Second
	DefaultBaseEjection       = 30 * time.Second
	DefaultMaxEjectionPercent = 50
)

// Ranges, shared by Validate and the meta keys.
const (
	MaxRetries           = 10
	MaxConsecutive5xx    = 1000
	MinConnectTimeout    = time.Millisecond
	MaxConnectTimeout    = time.Minute
	MaxRequestTimeout    = 24 * time.Hour
	MaxAccessLogDuration = time.Hour
	MinOutlierDuration   = time.Millisecond
	MaxOutlierDuration   = time.Hour
)

// DefaultZipkinPath is the collector path of a Zipkin URL that has none.
const DefaultZipkinPath = "/api/v2/spans"

const (
	maxTagLength          = 256
	maxConfigBytes        = 1 << 20
	reservedTagsAsEnglish = "service, version, host and datacenter"
)

// DefaultConfig is the configuration used when the config file says
// nothing. selfZipkinURL is signalbox's own Zipkin endpoint, where spans go
// by default.
func DefaultConfig(selfZipkinURL string) Config {
	return Config{
		Telemetry: TelemetryConfig{
			Tracing: TracingConfig{
				Provider:        ProviderZipkin,
				Zipkin:          ZipkinConfig{URL: selfZipkinURL, Encoding: EncodingJSON},
				Sampling:        DefaultSampling,
				ClientSampling:  DefaultClientSampling,
				OverallSampling: DefaultOverallSampling,
				Propagation:     []string{PropagationB3, PropagationW3C},
			},
			AccessLog: AccessLogConfig{ALS: true},
		},
		Traffic: TrafficConfig{
			ConnectTimeout:     Duration(DefaultConnectTimeout),
			RequestTimeout:     Duration(DefaultRequestTimeout),
			Retries:            DefaultRetries,
			RetryOn:            DefaultRetryOn,
			RetryBudgetPercent: DefaultRetryBudgetPercent,
			Outlier: OutlierConfig{
				Consecutive5xx:     DefaultConsecutive5xx,
				Interval:           Duration(DefaultOutlierInterval),
				BaseEjection:       Duration(DefaultBaseEjection),
				MaxEjectionPercent: DefaultMaxEjectionPercent,
			},
		},
	}
}

// WithSelfZipkinURL returns c with the Zipkin URL set to signalbox's own
// endpoint when the config file left it out.
func (c Config) WithSelfZipkinURL(selfZipkinURL string) Config {
	if c.Telemetry.Tracing.Zipkin.URL == "" {
		c.Telemetry.Tracing.Zipkin.URL = selfZipkinURL
	}
	return c
}

// clone deep-copies the slices, maps and pointers of c.
func (c Config) clone() Config {
	t := &c.Telemetry
	t.Tracing.Propagation = append([]string(nil), t.Tracing.Propagation...)
	if t.Tracing.Tags != nil {
		tags := make(map[string]string, len(t.Tracing.Tags))
		for k, v := range t.Tracing.Tags {
			tags[k] = v
		}
		t.Tracing.Tags = tags
	}
	if t.AccessLog.File != nil {
		f := *t.AccessLog.File
		t.AccessLog.File = &f
	}
	return c
}

// Validate checks every setting. Each error names the field, its value and
// what is allowed; all of them are reported at once.
func (c Config) Validate() error {
	var errs []error
	add := func(field string, value any, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s = %s: %s", field, show(value), fmt.Sprintf(format, args...)))
	}
	tr := c.Telemetry.Tracing
	switch tr.Provider {
	case ProviderZipkin, ProviderOpenTelemetry, ProviderNone:
	default:
		add("telemetry.tracing.provider", tr.Provider, "want zipkin, opentelemetry or none")
	}
	switch {
	case tr.Zipkin.URL != "":
		if _, err := parseZipkinURL(tr.Zipkin.URL); err != nil {
			add("telemetry.tracing.zipkin.url", tr.Zipkin.URL, "%v", err)
		}
	case tr.Provider == ProviderZipkin:
		add("telemetry.tracing.zipkin.url", "", "empty; set the Zipkin collector URL, http(s)://host[:port]/path (signalbox fills in its own endpoint with WithSelfZipkinURL)")
	}
	if err := checkEncoding(tr.Zipkin.Encoding); err != nil {
		add("telemetry.tracing.zipkin.encoding", tr.Zipkin.Encoding, "%v", err)
	}
	switch {
	case tr.OpenTelemetry.Address != "":
		if _, err := parseHostPort(tr.OpenTelemetry.Address); err != nil {
			add("telemetry.tracing.opentelemetry.address", tr.OpenTelemetry.Address, "%v", err)
		}
	case tr.Provider == ProviderOpenTelemetry:
		add("telemetry.tracing.opentelemetry.address", "", "empty; provider opentelemetry needs the collector's host:port")
	}
	for _, s := range []struct {
		field string
		v     float64
	}{
		{"telemetry.tracing.sampling", tr.Sampling},
		{"telemetry.tracing.clientSampling", tr.ClientSampling},
		{"telemetry.tracing.overallSampling", tr.OverallSampling},
	} {
		if err := checkPercent(s.v); err != nil {
			add(s.field, s.v, "%v", err)
		}
	}
	if len(tr.Propagation) == 0 {
		add("telemetry.tracing.propagation", raw("[]"), "empty; list b3, w3c or both")
	}
	seen := map[string]bool{}
	for i, p := range tr.Propagation {
		field := fmt.Sprintf("telemetry.tracing.propagation[%d]", i)
		switch {
		case p != PropagationB3 && p != PropagationW3C:
			add(field, p, "want b3 or w3c")
		case seen[p]:
			add(field, p, "listed twice")
		}
		seen[p] = true
	}
	for _, k := range sortedKeys(tr.Tags) {
		field := fmt.Sprintf("telemetry.tracing.tags[%q]", k)
		if err := checkTag(k, tr.Tags[k]); err != nil {
			add(field, tr.Tags[k], "%v", err)
		}
	}

	if f := c.Telemetry.AccessLog.File; f != nil {
		if err := checkLogPath(f.Path); err != nil {
			add("telemetry.accessLog.file.path", f.Path, "%v", err)
		}
		if err := checkMinStatus(uint64(f.MinStatus)); err != nil {
			add("telemetry.accessLog.file.minStatus", f.MinStatus, "%v", err)
		}
		if time.Duration(f.MinDurationMs)*time.Millisecond > MaxAccessLogDuration {
			add("telemetry.accessLog.file.minDurationMs", f.MinDurationMs, "want 0 (all) to %d (1h)", MaxAccessLogDuration.Milliseconds())
		}
	}

	t := c.Traffic
	if err := checkConnectTimeout(time.Duration(t.ConnectTimeout)); err != nil {
		add("traffic.connectTimeout", t.ConnectTimeout, "%v", err)
	}
	if err := checkRequestTimeout(time.Duration(t.RequestTimeout)); err != nil {
		add("traffic.requestTimeout", t.RequestTimeout, "%v", err)
	}
	if t.Retries > MaxRetries {
		add("traffic.retries", t.Retries, "want 0 to %d", MaxRetries)
	}
	if t.RetryOn != "" {
		if _, err := parseRetryOn(t.RetryOn); err != nil {
			add("traffic.retryOn", t.RetryOn, "%v", err)
		}
	} else if t.Retries > 0 {
		add("traffic.retryOn", "", "empty while traffic.retries is %d; list the conditions to retry on, e.g. %s, or set retries to 0", t.Retries, DefaultRetryOn)
	}
	if err := checkPercent(t.RetryBudgetPercent); err != nil {
		add("traffic.retryBudgetPercent", t.RetryBudgetPercent, "%v", err)
	}
	o := t.Outlier
	if o.Consecutive5xx > MaxConsecutive5xx {
		add("traffic.outlier.consecutive5xx", o.Consecutive5xx, "want 0 (off) to %d", MaxConsecutive5xx)
	}
	if err := checkOutlierDuration(time.Duration(o.Interval)); err != nil {
		add("traffic.outlier.interval", o.Interval, "%v", err)
	}
	if err := checkOutlierDuration(time.Duration(o.BaseEjection)); err != nil {
		add("traffic.outlier.baseEjection", o.BaseEjection, "%v", err)
	}
	if o.MaxEjectionPercent > 100 {
		add("traffic.outlier.maxEjectionPercent", o.MaxEjectionPercent, "want 0 to 100")
	}
	return errors.Join(errs...)
}

// show renders a value for an error message: strings quoted, numbers plain.
func show(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case fmt.Stringer:
		return v.String()
	default:
		return fmt.Sprint(v)
	}
}

// raw is shown as is in error messages.
type raw string

func (r raw) String() string { return string(r) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
