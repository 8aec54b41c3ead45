package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const selfURL = "http://signalbox.internal:8080/api/v2/spans"

const exampleYAML = `
telemetry:
  tracing:
    provider: zipkin
    zipkin: {url: "http://zipkin.internal:9411/api/v2/spans", encoding: proto}
    opentelemetry: {address: "otel-collector:4317"}
    sampling: 0.5
    clientSampling: 50
    overallSampling: 90
    propagation: [w3c]
    tags: {team: payments}
  accessLog:
    als: false
    file: {path: /var/log/envoy/access.json, minStatus: 500, minDurationMs: 250, skipHealthChecks: true}
traffic:
  connectTimeout: 1s
  requestTimeout: 30s
  retries: 3
  retryOn: connect-failure,5xx
  retryBudgetPercent: 25
  outlier: {consecutive5xx: 7, interval: 5s, baseEjection: 1m, maxEjectionPercent: 30}
`

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(c *Config) // applied to DefaultConfig("")
	}{
		{name: "empty", yaml: "", want: func(*Config) {}},
		{name: "only comments", yaml: "# nothing\n", want: func(*Config) {}},
		{name: "null sections keep defaults", yaml: "telemetry:\ntraffic: ~\n", want: func(*Config) {}},
		{name: "null leaf keeps default", yaml: "telemetry: {tracing: {sampling: null}}", want: func(*Config) {}},
		{
			name: "partial overlay keeps the rest",
			yaml: "telemetry:\n  tracing:\n    zipkin: {encoding: proto}\ntraffic:\n  retries: 0\n",
			want: func(c *Config) {
				c.Telemetry.Tracing.Zipkin.Encoding = EncodingProto
				c.Traffic.Retries = 0
			},
		},
		{
			name: "propagation list replaces the default",
			yaml: "telemetry: {tracing: {propagation: [b3]}}",
			want: func(c *Config) { c.Telemetry.Tracing.Propagation = []string{PropagationB3} },
		},
		{
			name: "full example",
			yaml: exampleYAML,
			want: func(c *Config) {
				tr := &c.Telemetry.Tracing
				tr.Zipkin = ZipkinConfig{URL: "http://zipkin.internal:9411/api/v2/spans", Encoding: EncodingProto}
				tr.OpenTelemetry.Address = "otel-collector:4317"
				tr.Sampling, tr.ClientSampling, tr.OverallSampling = 0.5, 50, 90
				tr.Propagation = []string{PropagationW3C}
				tr.Tags = map[string]string{"team": "payments"}
				c.Telemetry.AccessLog = AccessLogConfig{File: &FileLogConfig{Path: "/var/log/envoy/access.json", MinStatus: 500, MinDurationMs: 250, SkipHealthChecks: true}}
				c.Traffic = TrafficConfig{
					ConnectTimeout: Duration(time.Second), RequestTimeout: Duration(30 * time.Second),
					Retries: 3, RetryOn: "connect-failure,5xx", RetryBudgetPercent: 25,
					Outlier: OutlierConfig{Consecutive5xx: 7, Interval: Duration(5 * time.Second), BaseEjection: Duration(time.Minute), MaxEjectionPercent: 30},
				}
			},
		},
		{
			name: "request timeout 0 means none",
			yaml: "traffic: {requestTimeout: 0s}",
			want: func(c *Config) { c.Traffic.RequestTimeout = 0 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			want := DefaultConfig("")
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseConfig (-want +got):\n%s", diff)
			}
			if err := got.WithSelfZipkinURL(selfURL).Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"unknown top-level key", "consul: {address: x}", []string{`top level: unknown key "consul"; known keys: telemetry, traffic`}},
		{"unknown nested key", "telemetry: {tracing: {sampleRate: 5}}", []string{`telemetry.tracing: unknown key "sampleRate"`, "known keys: provider, zipkin,"}},
		{"typo suggestion", "telemetry: {accesslog: {als: true}}", []string{`telemetry: unknown key "accesslog" (did you mean "accessLog"?)`}},
		{"typo suggestion by distance", "traffic: {retrys: 3}", []string{`traffic: unknown key "retrys" (did you mean "retries"?)`}},
		{"unknown key in file", "telemetry: {accessLog: {file: {path: /x, format: json}}}", []string{`telemetry.accessLog.file: unknown key "format"`}},
		{"every error reported", "traffic: {a: 1, b: 2}", []string{`unknown key "a"`, `unknown key "b"`}},
		{"duplicated key", "traffic:\n  retries: 1\n  retries: 2\n", []string{"not valid YAML (or a duplicated key)", "retries"}},
		{"not YAML", "telemetry: [", []string{"not valid YAML"}},
		{"top level is a list", "- a\n- b\n", []string{"top level: got a list, want a mapping with the keys telemetry, traffic"}},
		{"section is a string", "telemetry: on", []string{"telemetry: got true, want a mapping with the keys tracing, accessLog"}},
		{"string for a number", "traffic: {retries: two}", []string{`traffic.retries: got "two", want a whole number`}},
		{"negative whole number", "telemetry: {accessLog: {file: {minStatus: -1}}}", []string{"telemetry.accessLog.file.minStatus: got number -1, want a whole number from 0 to 4294967295"}},
		{"fraction for a whole number", "traffic: {retries: 1.5}", []string{"traffic.retries: got number 1.5, want a whole number"}},
		{"string for a float", "telemetry: {tracing: {sampling: \"5%\"}}", []string{`telemetry.tracing.sampling: got "5%", want a number`}},
		{"number for a duration", "traffic: {connectTimeout: 2}", []string{"traffic.connectTimeout: got number 2, want a duration string such as 2s or 250ms"}},
		{"bad duration", "traffic: {outlier: {interval: soon}}", []string{`traffic.outlier.interval: got "soon", want a duration such as 250ms, 2s or 1m`}},
		{"number for a tag", "telemetry: {tracing: {tags: {build: 42}}}", []string{`telemetry.tracing.tags["build"]: got number 42, want a string (quote it)`}},
		{"string for a list", "telemetry: {tracing: {propagation: b3}}", []string{`telemetry.tracing.propagation: got "b3", want a list`}},
		{"empty list entry", "telemetry: {tracing: {propagation: [b3, ~]}}", []string{"telemetry.tracing.propagation[1]: empty list entry"}},
		{"string for a bool", "telemetry: {accessLog: {als: maybe}}", []string{`telemetry.accessLog.als: got "maybe", want true or false`}},
		{"too big", strings.Repeat("#", maxConfigBytes+1), []string{"at most 1048576 are read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if err == nil {
				t.Fatal("ParseConfig: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string // substrings of the error; none: valid
	}{
		{name: "defaults", change: func(*Config) {}},
		{name: "provider none needs no collector", change: func(c *Config) {
			c.Telemetry.Tracing.Provider = ProviderNone
			c.Telemetry.Tracing.Zipkin.URL = ""
		}},
		{name: "opentelemetry with address", change: func(c *Config) {
			c.Telemetry.Tracing.Provider = ProviderOpenTelemetry
			c.Telemetry.Tracing.OpenTelemetry.Address = "[::1]:4317"
		}},
		{name: "no retries, no conditions", change: func(c *Config) { c.Traffic.Retries, c.Traffic.RetryOn = 0, "" }},
		{name: "file log", change: func(c *Config) {
			c.Telemetry.AccessLog.File = &FileLogConfig{Path: "/dev/stdout", MinStatus: 599, MinDurationMs: 3600000}
		}},
		{name: "bad provider", change: func(c *Config) { c.Telemetry.Tracing.Provider = "jaeger" },
			want: []string{`telemetry.tracing.provider = "jaeger": want zipkin, opentelemetry or none`}},
		{name: "bad zipkin scheme", change: func(c *Config) { c.Telemetry.Tracing.Zipkin.URL = "ftp://z/spans" },
			want: []string{`telemetry.tracing.zipkin.url = "ftp://z/spans": scheme "ftp" is not http or https; want http(s)://host[:port]/path`}},
		{name: "zipkin url missing", change: func(c *Config) { c.Telemetry.Tracing.Zipkin.URL = "" },
			want: []string{`telemetry.tracing.zipkin.url = "": empty; set the Zipkin collector URL`}},
		{name: "bad encoding", change: func(c *Config) { c.Telemetry.Tracing.Zipkin.Encoding = "thrift" },
			want: []string{`telemetry.tracing.zipkin.encoding = "thrift": want json or proto`}},
		{name: "otel without address", change: func(c *Config) { c.Telemetry.Tracing.Provider = ProviderOpenTelemetry },
			want: []string{`telemetry.tracing.opentelemetry.address = "": empty; provider opentelemetry needs the collector's host:port`}},
		{name: "otel address without port", change: func(c *Config) { c.Telemetry.Tracing.OpenTelemetry.Address = "collector" },
			want: []string{`telemetry.tracing.opentelemetry.address = "collector": no port; want host:port`}},
		{name: "sampling above 100", change: func(c *Config) { c.Telemetry.Tracing.Sampling = 150 },
			want: []string{"telemetry.tracing.sampling = 150: out of range; want a percentage from 0 to 100"}},
		{name: "negative client sampling", change: func(c *Config) { c.Telemetry.Tracing.ClientSampling = -1 },
			want: []string{"telemetry.tracing.clientSampling = -1: out of range"}},
		{name: "overall sampling NaN", change: func(c *Config) { c.Telemetry.Tracing.OverallSampling = nan() },
			want: []string{"telemetry.tracing.overallSampling = NaN: out of range"}},
		{name: "no propagation", change: func(c *Config) { c.Telemetry.Tracing.Propagation = nil },
			want: []string{"telemetry.tracing.propagation = []: empty; list b3, w3c or both"}},
		{name: "bad propagation", change: func(c *Config) { c.Telemetry.Tracing.Propagation = []string{"b3", "xray", "b3"} },
			want: []string{`telemetry.tracing.propagation[1] = "xray": want b3 or w3c`, `telemetry.tracing.propagation[2] = "b3": listed twice`}},
		{name: "reserved tag", change: func(c *Config) { c.Telemetry.Tracing.Tags = map[string]string{"service": "x"} },
			want: []string{`telemetry.tracing.tags["service"] = "x": reserved tag name; signalbox sets service, version, host and datacenter itself`}},
		{name: "empty tag name", change: func(c *Config) { c.Telemetry.Tracing.Tags = map[string]string{"": "x"} },
			want: []string{`telemetry.tracing.tags[""] = "x": empty tag name`}},
		{name: "relative log path", change: func(c *Config) { c.Telemetry.AccessLog.File = &FileLogConfig{Path: "access.log"} },
			want: []string{`telemetry.accessLog.file.path = "access.log": not absolute; want a path that starts with /`}},
		{name: "log path is a directory", change: func(c *Config) { c.Telemetry.AccessLog.File = &FileLogConfig{Path: "/var/log/"} },
			want: []string{`telemetry.accessLog.file.path = "/var/log/": a directory; want a file path`}},
		{name: "bad min status", change: func(c *Config) { c.Telemetry.AccessLog.File = &FileLogConfig{Path: "/a", MinStatus: 42} },
			want: []string{"telemetry.accessLog.file.minStatus = 42: want 0 (all) or an HTTP status from 100 to 599"}},
		{name: "min duration too long", change: func(c *Config) {
			c.Telemetry.AccessLog.File = &FileLogConfig{Path: "/a", MinDurationMs: 3600001}
		},
			want: []string{"telemetry.accessLog.file.minDurationMs = 3600001: want 0 (all) to 3600000 (1h)"}},
		{name: "connect timeout 0", change: func(c *Config) { c.Traffic.ConnectTimeout = 0 },
			want: []string{"traffic.connectTimeout = 0s: want 1ms to 1m0s"}},
		{name: "negative request timeout", change: func(c *Config) { c.Traffic.RequestTimeout = Duration(-time.Second) },
			want: []string{"traffic.requestTimeout = -1s: want 0 (none) or 1ms to 24h0m0s"}},
		{name: "retries above 10", change: func(c *Config) { c.Traffic.Retries = 11 },
			want: []string{"traffic.retries = 11: want 0 to 10"}},
		{name: "unknown retry condition", change: func(c *Config) { c.Traffic.RetryOn = "5xx,bogus" },
			want: []string{`traffic.retryOn = "5xx,bogus": unknown condition "bogus"; want a comma-separated list of 5xx, gateway-error,`}},
		{name: "retries without conditions", change: func(c *Config) { c.Traffic.RetryOn = "" },
			want: []string{`traffic.retryOn = "": empty while traffic.retries is 2`}},
		{name: "budget above 100", change: func(c *Config) { c.Traffic.RetryBudgetPercent = 101 },
			want: []string{"traffic.retryBudgetPercent = 101: out of range; want a percentage from 0 to 100"}},
		{name: "outlier out of range", change: func(c *Config) {
			c.Traffic.Outlier = OutlierConfig{Consecutive5xx: 1001, Interval: 0, BaseEjection: Duration(2 * time.Hour), MaxEjectionPercent: 101}
		},
			want: []string{
				"traffic.outlier.consecutive5xx = 1001: want 0 (off) to 1000",
				"traffic.outlier.interval = 0s: want 1ms to 1h0m0s",
				"traffic.outlier.baseEjection = 2h0m0s: want 1ms to 1h0m0s",
				"traffic.outlier.maxEjectionPercent = 101: want 0 to 100",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig(selfURL)
			tt.change(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate: no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
				t.Errorf("got %d errors, want %d:\n%v", n, len(tt.want), err)
			}
		})
	}
}

func TestWithSelfZipkinURL(t *testing.T) {
	c := DefaultConfig("")
	if got := c.WithSelfZipkinURL(selfURL).Telemetry.Tracing.Zipkin.URL; got != selfURL {
		t.Errorf("empty URL: got %q, want %q", got, selfURL)
	}
	c.Telemetry.Tracing.Zipkin.URL = "http://z/"
	if got := c.WithSelfZipkinURL(selfURL).Telemetry.Tracing.Zipkin.URL; got != "http://z/" {
		t.Errorf("set URL: got %q, want it kept", got)
	}
}

func TestDefaultConfigIsFresh(t *testing.T) {
	a := DefaultConfig(selfURL)
	a.Telemetry.Tracing.Propagation[0] = "x"
	if b := DefaultConfig(selfURL); b.Telemetry.Tracing.Propagation[0] != PropagationB3 {
		t.Error("DefaultConfig shares its propagation slice")
	}
}
