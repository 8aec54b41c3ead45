package policy

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/signalbox/signalbox/xds/ir"
)

func nan() float64 { return math.NaN() }

var testInst = InstanceInfo{Service: "payments", Version: "v2", Node: "host-7", Datacenter: "dc1"}

func defaultPolicy() ServicePolicy {
	return ServicePolicy{
		Telemetry: ir.Telemetry{
			Tracing: &ir.Tracing{
				Provider:        ir.Zipkin,
				Collector:       ir.Collector{Host: "signalbox.internal", Port: 8080, Path: "/api/v2/spans", Encoding: "json"},
				RandomSampling:  1,
				ClientSampling:  100,
				OverallSampling: 100,
				Tags:            map[string]string{"service": "payments", "version": "v2", "host": "host-7", "datacenter": "dc1"},
				Propagation:     []string{"b3", "w3c"},
			},
			AccessLog: ir.AccessLog{ALS: true},
		},
		Traffic: ir.TrafficPolicy{
			ConnectTimeoutMs:   2000,
			RequestTimeoutMs:   15000,
			Retries:            2,
			RetryOn:            "connect-failure,refused-stream,unavailable",
			RetryBudgetPercent: 20,
			Outlier:            ir.Outlier{Consecutive5xx: 5, IntervalMs: 10000, BaseEjectionMs: 30000, MaxEjectionPercent: 50},
		},
	}
}

func TestForServiceDefaults(t *testing.T) {
	got := ForService(DefaultConfig(selfURL), testInst, map[string]string{"version": "v2", "other": "x"})
	if diff := cmp.Diff(defaultPolicy(), got); diff != "" {
		t.Errorf("ForService (-want +got):\n%s", diff)
	}
}

func TestForServiceFromExampleConfig(t *testing.T) {
	c, err := ParseConfig([]byte(exampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	got := ForService(c, InstanceInfo{Service: "cart"}, nil)
	want := ServicePolicy{
		Telemetry: ir.Telemetry{
			Tracing: &ir.Tracing{
				Provider:        ir.Zipkin,
				Collector:       ir.Collector{Host: "zipkin.internal", Port: 9411, Path: "/api/v2/spans", Encoding: "proto"},
				RandomSampling:  0.5,
				ClientSampling:  50,
				OverallSampling: 90,
				Tags:            map[string]string{"service": "cart", "team": "payments"},
				Propagation:     []string{"w3c"},
			},
			AccessLog: ir.AccessLog{File: &ir.FileLog{Path: "/var/log/envoy/access.json", MinStatus: 500, MinDurationMs: 250, SkipHealthChecks: true}},
		},
		Traffic: ir.TrafficPolicy{
			ConnectTimeoutMs: 1000, RequestTimeoutMs: 30000, Retries: 3, RetryOn: "connect-failure,5xx", RetryBudgetPercent: 25,
			Outlier: ir.Outlier{Consecutive5xx: 7, IntervalMs: 5000, BaseEjectionMs: 60000, MaxEjectionPercent: 30},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ForService (-want +got):\n%s", diff)
	}
}

func TestForServiceMeta(t *testing.T) {
	withFile := func(c *Config) {
		c.Telemetry.AccessLog.File = &FileLogConfig{Path: "/var/log/a.json", MinStatus: 500, SkipHealthChecks: true}
	}
	withOTel := func(c *Config) { c.Telemetry.Tracing.OpenTelemetry.Address = "otel:4317" }
	tests := []struct {
		name   string
		config func(c *Config) // applied to DefaultConfig(selfURL)
		meta   map[string]string
		want   func(p *ServicePolicy) // applied to defaultPolicy(), or to the policy of the config
		// problems are substrings of the Problems' String(), one each.
		problems []string
	}{
		// Tracing provider.
		{name: "provider none", meta: map[string]string{MetaTraceProvider: "none"},
			want: func(p *ServicePolicy) { p.Telemetry.Tracing = nil }},
		{name: "provider case and space", meta: map[string]string{MetaTraceProvider: " NONE "},
			want: func(p *ServicePolicy) { p.Telemetry.Tracing = nil }},
		{name: "provider opentelemetry", config: withOTel, meta: map[string]string{MetaTraceProvider: "opentelemetry"},
			want: func(p *ServicePolicy) {
				p.Telemetry.Tracing.Provider = ir.OpenTelemetry
				p.Telemetry.Tracing.Collector = ir.Collector{Host: "otel", Port: 4317}
			}},
		{name: "provider opentelemetry with meta address",
			meta: map[string]string{MetaTraceProvider: "opentelemetry", MetaOTelAddress: "10.0.0.9:4317"},
			want: func(p *ServicePolicy) {
				p.Telemetry.Tracing.Provider = ir.OpenTelemetry
				p.Telemetry.Tracing.Collector = ir.Collector{Host: "10.0.0.9", Port: 4317}
			}},
		{name: "provider opentelemetry without address", meta: map[string]string{MetaTraceProvider: "opentelemetry"},
			want:     func(*ServicePolicy) {},
			problems: []string{`meta signalbox-trace-provider="opentelemetry": no OpenTelemetry collector address (set signalbox-otel-address or telemetry.tracing.opentelemetry.address); using zipkin`}},
		{name: "provider opentelemetry with a bad address",
			meta: map[string]string{MetaTraceProvider: "opentelemetry", MetaOTelAddress: "otel"},
			want: func(*ServicePolicy) {},
			problems: []string{
				`meta signalbox-trace-provider="opentelemetry": no OpenTelemetry collector address`,
				`meta signalbox-otel-address="otel": no port; want host:port, e.g. otel-collector:4317; using none`,
			}},
		{name: "provider unknown", meta: map[string]string{MetaTraceProvider: "jaeger"},
			want:     func(*ServicePolicy) {},
			problems: []string{`meta signalbox-trace-provider="jaeger": want zipkin, opentelemetry or none; using zipkin`}},
		{name: "provider zipkin from opentelemetry default",
			config: func(c *Config) { withOTel(c); c.Telemetry.Tracing.Provider = ProviderOpenTelemetry },
			meta:   map[string]string{MetaTraceProvider: "zipkin"},
			want: func(p *ServicePolicy) {
				p.Telemetry.Tracing.Provider = ir.Zipkin
				p.Telemetry.Tracing.Collector = defaultPolicy().Telemetry.Tracing.Collector
			}},
		{name: "provider zipkin without a URL",
			config: func(c *Config) {
				withOTel(c)
				c.Telemetry.Tracing.Provider = ProviderOpenTelemetry
				c.Telemetry.Tracing.Zipkin.URL = ""
			},
			meta: map[string]string{MetaTraceProvider: "zipkin"},
			want: func(p *ServicePolicy) {
				p.Telemetry.Tracing.Provider = ir.OpenTelemetry
				p.Telemetry.Tracing.Collector = ir.Collector{Host: "otel", Port: 4317}
			},
			problems: []string{`meta signalbox-trace-provider="zipkin": no Zipkin collector URL (set signalbox-zipkin-url or telemetry.tracing.zipkin.url); using opentelemetry`}},

		// Sampling.
		{name: "sampling", meta: map[string]string{MetaTraceSampling: "12.5", MetaTraceClientSampling: "0", MetaTraceOverallSampling: "50%"},
			want: func(p *ServicePolicy) {
				p.Telemetry.Tracing.RandomSampling = 12.5
				p.Telemetry.Tracing.ClientSampling = 0
				p.Telemetry.Tracing.OverallSampling = 50
			}},
		{name: "sampling not a number", meta: map[string]string{MetaTraceSampling: "abc"},
			want:     func(*ServicePolicy) {},
			problems: []string{`meta signalbox-trace-sampling="abc": not a number between 0 and 100; using 1`}},
		{name: "sampling out of range", meta: map[string]string{MetaTraceClientSampling: "100.01", MetaTraceOverallSampling: "-1"},
			want: func(*ServicePolicy) {},
			problems: []string{
				`meta signalbox-trace-client-sampling="100.01": out of range; want a percentage from 0 to 100; using 100`,
				`meta signalbox-trace-overall-sampling="-1": out of range; want a percentage from 0 to 100; using 100`,
			}},
		{name: "sampling NaN and Inf", meta: map[string]string{MetaTraceSampling: "NaN", MetaTraceClientSampling: "+Inf"},
			want:     func(*ServicePolicy) {},
			problems: []string{`signalbox-trace-sampling="NaN": out of range`, `signalbox-trace-client-sampling="+Inf": out of range`}},
		{name: "bad sampling reported with tracing off", meta: map[string]string{MetaTraceProvider: "none", MetaTraceSampling: "x"},
			want:     func(p *ServicePolicy) { p.Telemetry.Tracing = nil },
			problems: []string{`signalbox-trace-sampling="x"`}},

		// Zipkin.
		{name: "zipkin url https default port", meta: map[string]string{MetaZipkinURL: "https://zipkin.example.com/api/v2/spans"},
			want: func(p *ServicePolicy) {
				p.Telemetry.Tracing.Collector = ir.Collector{Host: "zipkin.example.com", Port: 443, Path: "/api/v2/spans", Encoding: "json", TLS: true}
			}},
		{name: "zipkin url http default port and path", meta: map[string]string{MetaZipkinURL: "http://zipkin"},
			want: func(p *ServicePolicy) {
				p.Telemetry.Tracing.Collector = ir.Collector{Host: "zipkin", Port: 80, Path: "/api/v2/spans", Encoding: "json"}
			}},
		{name: "zipkin url IPv6", meta: map[string]string{MetaZipkinURL: "http://[fd00::1]:9411/spans"},
			want: func(p *ServicePolicy) {
				p.Telemetry.Tracing.Collector = ir.Collector{Host: "fd00::1", Port: 9411, Path: "/spans", Encoding: "json"}
			}},
		{name: "zipkin url bad scheme", meta: map[string]string{MetaZipkinURL: "zipkin:9411"},
			want:     func(*ServicePolicy) {},
			problems: []string{`meta signalbox-zipkin-url="zipkin:9411": scheme "zipkin" is not http or https; want http(s)://host[:port]/path; using http://signalbox.internal:8080/api/v2/spans`}},
		{name: "zipkin url bad port", meta: map[string]string{MetaZipkinURL: "http://z:99999/x"},
			want: func(*ServicePolicy) {}, problems: []string{`port "99999" is not 1–65535`}},
		{name: "zipkin url with query", meta: map[string]string{MetaZipkinURL: "http://z/x?a=b"},
			want: func(*ServicePolicy) {}, problems: []string{"query and fragment are not supported"}},
		{name: "zipkin url with user", meta: map[string]string{MetaZipkinURL: "http://u:p@z/x"},
			want: func(*ServicePolicy) {}, problems: []string{"user info is not supported"}},
		{name: "zipkin url bad host", meta: map[string]string{MetaZipkinURL: "http://-bad-/x"},
			want: func(*ServicePolicy) {}, problems: []string{`host "-bad-" is not an IP address or a DNS name`}},
		{name: "zipkin encoding", meta: map[string]string{MetaZipkinEncoding: "Proto"},
			want: func(p *ServicePolicy) { p.Telemetry.Tracing.Collector.Encoding = "proto" }},
		{name: "zipkin encoding bad", meta: map[string]string{MetaZipkinEncoding: "thrift"},
			want:     func(*ServicePolicy) {},
			problems: []string{`meta signalbox-zipkin-encoding="thrift": want json or proto; using json`}},
		{name: "otel address ignored while zipkin", meta: map[string]string{MetaOTelAddress: "otel:4317"},
			want: func(*ServicePolicy) {}},
		{name: "otel address URL", meta: map[string]string{MetaOTelAddress: "http://otel:4317"},
			want: func(*ServicePolicy) {}, problems: []string{`meta signalbox-otel-address="http://otel:4317": a URL, not an address`}},
		{name: "otel address port 0", meta: map[string]string{MetaOTelAddress: "otel:0"},
			want: func(*ServicePolicy) {}, problems: []string{`port "0" is not 1–65535`}},

		// Access logs.
		{name: "access log file from meta", meta: map[string]string{MetaAccessLog: "/var/log/envoy/p.json"},
			want: func(p *ServicePolicy) { p.Telemetry.AccessLog.File = &ir.FileLog{Path: "/var/log/envoy/p.json"} }},
		{name: "access log file keeps config filters", config: withFile,
			meta: map[string]string{MetaAccessLog: "/var/log/b.json"},
			want: func(p *ServicePolicy) {
				p.Telemetry.AccessLog.File = &ir.FileLog{Path: "/var/log/b.json", MinStatus: 500, SkipHealthChecks: true}
			}},
		{name: "access log off", config: withFile, meta: map[string]string{MetaAccessLog: "OFF"},
			want: func(p *ServicePolicy) { p.Telemetry.AccessLog.File = nil }},
		{name: "access log relative path", meta: map[string]string{MetaAccessLog: "logs/a.json"},
			want:     func(*ServicePolicy) {},
			problems: []string{`meta signalbox-access-log="logs/a.json": not absolute; want a path that starts with / or "off"; using off`}},
		{name: "access log bad path keeps config file", config: withFile, meta: map[string]string{MetaAccessLog: "/var/log/"},
			want: func(p *ServicePolicy) {
				p.Telemetry.AccessLog.File = &ir.FileLog{Path: "/var/log/a.json", MinStatus: 500, SkipHealthChecks: true}
			},
			problems: []string{`a directory; want a file path or "off"; using /var/log/a.json`}},
		{name: "access log filters", meta: map[string]string{MetaAccessLog: "/a.json", MetaAccessLogMinStatus: "400", MetaAccessLogMinDuration: "250ms"},
			want: func(p *ServicePolicy) {
				p.Telemetry.AccessLog.File = &ir.FileLog{Path: "/a.json", MinStatus: 400, MinDurationMs: 250}
			}},
		{name: "access log filters to zero", config: withFile, meta: map[string]string{MetaAccessLogMinStatus: "0", MetaAccessLogMinDuration: "0s"},
			want: func(p *ServicePolicy) {
				p.Telemetry.AccessLog.File = &ir.FileLog{Path: "/var/log/a.json", SkipHealthChecks: true}
			}},
		{name: "access log sub-millisecond duration rounds up", config: withFile, meta: map[string]string{MetaAccessLogMinDuration: "1us"},
			want: func(p *ServicePolicy) {
				p.Telemetry.AccessLog.File = &ir.FileLog{Path: "/var/log/a.json", MinStatus: 500, MinDurationMs: 1, SkipHealthChecks: true}
			}},
		{name: "access log bad filters", config: withFile, meta: map[string]string{MetaAccessLogMinStatus: "99", MetaAccessLogMinDuration: "250"},
			want: func(p *ServicePolicy) {
				p.Telemetry.AccessLog.File = &ir.FileLog{Path: "/var/log/a.json", MinStatus: 500, SkipHealthChecks: true}
			},
			problems: []string{
				`meta signalbox-access-log-min-status="99": want 0 (all) or an HTTP status from 100 to 599; using 500`,
				`meta signalbox-access-log-min-duration="250": not a duration; want e.g. 250ms, 2s or 1m; using 0s`,
			}},
		{name: "access log min duration too long", config: withFile, meta: map[string]string{MetaAccessLogMinDuration: "2h"},
			want: func(p *ServicePolicy) {
				p.Telemetry.AccessLog.File = &ir.FileLog{Path: "/var/log/a.json", MinStatus: 500, SkipHealthChecks: true}
			},
			problems: []string{`meta signalbox-access-log-min-duration="2h": want 0 (all) to 1h0m0s; using 0s`}},
		{name: "access log filters without a file", meta: map[string]string{MetaAccessLogMinStatus: "500", MetaAccessLogMinDuration: "1s"},
			want: func(*ServicePolicy) {},
			problems: []string{
				`meta signalbox-access-log-min-status="500": no file access log for this service`,
				`meta signalbox-access-log-min-duration="1s": no file access log for this service`,
			}},
		{name: "als off", meta: map[string]string{MetaALS: "false"},
			want: func(p *ServicePolicy) { p.Telemetry.AccessLog.ALS = false }},
		{name: "als bad", meta: map[string]string{MetaALS: "nope"},
			want: func(*ServicePolicy) {}, problems: []string{`meta signalbox-als="nope": want true or false; using true`}},

		// Traffic.
		{name: "timeouts", meta: map[string]string{MetaConnectTimeout: "500ms", MetaRequestTimeout: "0"},
			want: func(p *ServicePolicy) { p.Traffic.ConnectTimeoutMs, p.Traffic.RequestTimeoutMs = 500, 0 }},
		{name: "timeouts bad", meta: map[string]string{MetaConnectTimeout: "0s", MetaRequestTimeout: "30"},
			want: func(*ServicePolicy) {},
			problems: []string{
				`meta signalbox-connect-timeout="0s": want 1ms to 1m0s; using 2s`,
				`meta signalbox-request-timeout="30": not a duration; want e.g. 250ms, 2s or 1m; using 15s`,
			}},
		{name: "request timeout too long", meta: map[string]string{MetaRequestTimeout: "25h"},
			want: func(*ServicePolicy) {}, problems: []string{"want 0 (none) or 1ms to 24h0m0s; using 15s"}},
		{name: "retries", meta: map[string]string{MetaRetries: "0"},
			want: func(p *ServicePolicy) { p.Traffic.Retries = 0 }},
		{name: "retries bad", meta: map[string]string{MetaRetries: "11"},
			want: func(*ServicePolicy) {}, problems: []string{`meta signalbox-retries="11": want a whole number from 0 to 10; using 2`}},
		{name: "retries negative", meta: map[string]string{MetaRetries: "-1"},
			want: func(*ServicePolicy) {}, problems: []string{`meta signalbox-retries="-1": want a whole number from 0 to 10; using 2`}},
		{name: "retries without conditions", config: func(c *Config) { c.Traffic.Retries, c.Traffic.RetryOn = 0, "" },
			meta: map[string]string{MetaRetries: "3"},
			want: func(p *ServicePolicy) { p.Traffic.Retries, p.Traffic.RetryOn = 0, "" },
			problems: []string{
				`meta signalbox-retries="3": no conditions to retry on (set signalbox-retry-on or traffic.retryOn); using 0`,
			}},
		{name: "retries with meta conditions", config: func(c *Config) { c.Traffic.Retries, c.Traffic.RetryOn = 0, "" },
			meta: map[string]string{MetaRetries: "3", MetaRetryOn: "5xx"},
			want: func(p *ServicePolicy) { p.Traffic.Retries, p.Traffic.RetryOn = 3, "5xx" }},
		{name: "retry on normalised", meta: map[string]string{MetaRetryOn: " 5XX, reset,,5xx ,deadline-exceeded,"},
			want: func(p *ServicePolicy) { p.Traffic.RetryOn = "5xx,reset,deadline-exceeded" }},
		{name: "retry on unknown", meta: map[string]string{MetaRetryOn: "5xx,timeout"},
			want:     func(*ServicePolicy) {},
			problems: []string{`meta signalbox-retry-on="5xx,timeout": unknown condition "timeout"; want a comma-separated list of`}},
		{name: "retry on only commas", meta: map[string]string{MetaRetryOn: ",,"},
			want: func(*ServicePolicy) {}, problems: []string{`meta signalbox-retry-on=",,": no conditions`}},
		{name: "outlier", meta: map[string]string{MetaOutlierConsecutive5xx: "0"},
			want: func(p *ServicePolicy) { p.Traffic.Outlier.Consecutive5xx = 0 }},
		{name: "outlier bad", meta: map[string]string{MetaOutlierConsecutive5xx: "1001"},
			want:     func(*ServicePolicy) {},
			problems: []string{`meta signalbox-outlier-consecutive-5xx="1001": want a whole number from 0 (off) to 1000; using 5`}},
		{name: "protocol tcp", meta: map[string]string{MetaProtocol: " TCP "},
			want: func(p *ServicePolicy) { p.Traffic.Protocol = ir.ProtocolTCP }},
		{name: "protocol http is the default", meta: map[string]string{MetaProtocol: "http"},
			want: func(*ServicePolicy) {}},
		{name: "protocol bad", meta: map[string]string{MetaProtocol: "grpc"},
			want:     func(*ServicePolicy) {},
			problems: []string{`meta signalbox-protocol="grpc": want http (HTTP/1.1, HTTP/2, gRPC) or tcp; using http`}},

		// Other keys.
		{name: "empty values are unset", meta: map[string]string{MetaTraceSampling: "", MetaRetries: "  "},
			want: func(*ServicePolicy) {}},
		{name: "unknown signalbox keys", meta: map[string]string{"signalbox-trace-sample": "5", "signalbox-zzz": "1", "other-key": "x"},
			want: func(*ServicePolicy) {},
			problems: []string{
				`meta signalbox-trace-sample="5": unknown signalbox meta key; ignored (did you mean signalbox-trace-sampling?)`,
				`meta signalbox-zzz="1": unknown signalbox meta key; ignored`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig(selfURL)
			if tt.config != nil {
				tt.config(&c)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("test config: %v", err)
			}
			want := ForService(c, testInst, nil)
			if len(want.Problems) != 0 {
				t.Fatalf("test config has problems: %v", want.Problems)
			}
			if tt.config == nil {
				if diff := cmp.Diff(defaultPolicy(), want); diff != "" {
					t.Fatalf("base policy (-want +got):\n%s", diff)
				}
			}
			tt.want(&want)
			got := ForService(c, testInst, tt.meta)
			if diff := cmp.Diff(want.Telemetry, got.Telemetry); diff != "" {
				t.Errorf("Telemetry (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want.Traffic, got.Traffic); diff != "" {
				t.Errorf("Traffic (-want +got):\n%s", diff)
			}
			if len(got.Problems) != len(tt.problems) {
				t.Errorf("got %d problems, want %d: %q", len(got.Problems), len(tt.problems), got.Problems)
			}
			for i, p := range got.Problems {
				if i < len(tt.problems) && !strings.Contains(p.String(), tt.problems[i]) {
					t.Errorf("problem %d: %q\ndoes not contain %q", i, p, tt.problems[i])
				}
			}
		})
	}
}

func TestForServiceTags(t *testing.T) {
	c := DefaultConfig(selfURL)
	c.Telemetry.Tracing.Tags = map[string]string{"team": "payments", "tier": "1"}
	got := ForService(c, InstanceInfo{Service: "payments", Node: "n1"}, nil)
	want := map[string]string{"service": "payments", "host": "n1", "team": "payments", "tier": "1"}
	if diff := cmp.Diff(want, got.Telemetry.Tracing.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	if got := ForService(DefaultConfig(selfURL), InstanceInfo{}, nil); got.Telemetry.Tracing.Tags != nil {
		t.Errorf("no instance info, no extra tags: got %v, want none", got.Telemetry.Tracing.Tags)
	}
}

// ForService must not share memory with its Config: callers keep one Config
// and build many services from it.
func TestForServiceDoesNotAlias(t *testing.T) {
	c := DefaultConfig(selfURL)
	c.Telemetry.Tracing.Tags = map[string]string{"team": "a"}
	c.Telemetry.AccessLog.File = &FileLogConfig{Path: "/a"}
	p := ForService(c, testInst, map[string]string{MetaAccessLog: "/b", MetaAccessLogMinStatus: "500"})
	p.Telemetry.Tracing.Propagation[0] = "changed"
	p.Telemetry.Tracing.Tags["team"] = "changed"
	if c.Telemetry.Tracing.Propagation[0] != PropagationB3 || c.Telemetry.Tracing.Tags["team"] != "a" {
		t.Error("ForService's result shares the config's slices or maps")
	}
	if c.Telemetry.AccessLog.File.Path != "/a" || c.Telemetry.AccessLog.File.MinStatus != 0 {
		t.Errorf("ForService changed the config's file log: %+v", *c.Telemetry.AccessLog.File)
	}
}

func TestForServiceInvalidConfig(t *testing.T) {
	c := DefaultConfig(selfURL)
	c.Telemetry.Tracing.Sampling = 500
	c.Traffic.Retries = 99
	got := ForService(c, testInst, map[string]string{MetaTraceSampling: "abc"})
	want := defaultPolicy()
	if diff := cmp.Diff(want.Telemetry, got.Telemetry); diff != "" {
		t.Errorf("Telemetry (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want.Traffic, got.Traffic); diff != "" {
		t.Errorf("Traffic (-want +got):\n%s", diff)
	}
	if len(got.Problems) != 2 {
		t.Fatalf("got %d problems, want 2: %q", len(got.Problems), got.Problems)
	}
	s := got.Problems[0].String()
	for _, w := range []string{"config: telemetry.tracing.sampling = 500: out of range", "; traffic.retries = 99: want 0 to 10", "using the built-in defaults"} {
		if !strings.Contains(s, w) {
			t.Errorf("problem %q does not contain %q", s, w)
		}
	}
	if got.Problems[1].Key != MetaTraceSampling {
		t.Errorf("second problem is %q, want the meta key's", got.Problems[1])
	}

	// Without a usable Zipkin URL, tracing is off rather than pointed nowhere.
	c = DefaultConfig("not a url")
	got = ForService(c, testInst, nil)
	if got.Telemetry.Tracing != nil {
		t.Errorf("tracing = %+v, want off", got.Telemetry.Tracing)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{Key: MetaTraceSampling, Value: "abc", Reason: "not a number between 0 and 100; using 1"},
			`meta signalbox-trace-sampling="abc": not a number between 0 and 100; using 1`},
		{Problem{Key: MetaZipkinURL, Value: "a\"b\n", Reason: "r"}, `meta signalbox-zipkin-url="a\"b\n": r`},
		{Problem{Key: "config", Reason: "bad"}, "config: bad"},
		{Problem{Key: MetaAccessLog, Value: strings.Repeat("x", 300), Reason: "r"},
			`meta signalbox-access-log="` + strings.Repeat("x", 200) + `…": r`},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func TestMetaKeysDocumented(t *testing.T) {
	doc := docComment(t)
	for _, k := range MetaKeys() {
		if !strings.Contains(doc, "//\t"+k+" ") {
			t.Errorf("meta key %s is not in the package doc's table", k)
		}
	}
	for _, v := range RetryOnValues() {
		if !strings.Contains(doc, v) {
			t.Errorf("retry condition %s is not in the package doc", v)
		}
	}
}
