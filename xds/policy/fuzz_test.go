package policy

import (
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/signalbox/signalbox/xds/ir"
	"sigs.k8s.io/yaml"
)

// checkPolicy holds a ServicePolicy to the ranges translate relies on.
func checkPolicy(t *testing.T, p ServicePolicy) {
	t.Helper()
	if tr := p.Telemetry.Tracing; tr != nil {
		for name, s := range map[string]float64{"random": tr.RandomSampling, "client": tr.ClientSampling, "overall": tr.OverallSampling} {
			if math.IsNaN(s) || s < 0 || s > 100 {
				t.Errorf("%s sampling %v out of 0–100", name, s)
			}
		}
		if tr.Collector.Host == "" || tr.Collector.Port == 0 || tr.Collector.Port > 65535 {
			t.Errorf("collector %+v: no host or port", tr.Collector)
		}
		switch tr.Provider {
		case ir.Zipkin:
			if !strings.HasPrefix(tr.Collector.Path, "/") || (tr.Collector.Encoding != EncodingJSON && tr.Collector.Encoding != EncodingProto) {
				t.Errorf("zipkin collector %+v: bad path or encoding", tr.Collector)
			}
		case ir.OpenTelemetry:
		default:
			t.Errorf("provider %q", tr.Provider)
		}
		if len(tr.Propagation) == 0 {
			t.Error("no propagation")
		}
	}
	if f := p.Telemetry.AccessLog.File; f != nil {
		if checkLogPath(f.Path) != nil || checkMinStatus(uint64(f.MinStatus)) != nil || f.MinDurationMs > 3600000 {
			t.Errorf("file log %+v out of range", *f)
		}
	}
	tp := p.Traffic
	if tp.ConnectTimeoutMs < 1 || tp.ConnectTimeoutMs > 60000 {
		t.Errorf("connect timeout %dms out of range", tp.ConnectTimeoutMs)
	}
	if tp.RequestTimeoutMs > 24*3600*1000 {
		t.Errorf("request timeout %dms out of range", tp.RequestTimeoutMs)
	}
	if tp.Retries > MaxRetries || (tp.Retries > 0 && tp.RetryOn == "") {
		t.Errorf("retries %d on %q", tp.Retries, tp.RetryOn)
	}
	if tp.RetryOn != "" {
		if got, err := parseRetryOn(tp.RetryOn); err != nil || got != tp.RetryOn {
			t.Errorf("retryOn %q not normalised: %q, %v", tp.RetryOn, got, err)
		}
	}
	if math.IsNaN(tp.RetryBudgetPercent) || tp.RetryBudgetPercent < 0 || tp.RetryBudgetPercent > 100 {
		t.Errorf("retry budget %v", tp.RetryBudgetPercent)
	}
	o := tp.Outlier
	if o.Consecutive5xx > MaxConsecutive5xx || o.IntervalMs < 1 || o.BaseEjectionMs < 1 || o.MaxEjectionPercent > 100 {
		t.Errorf("outlier %+v out of range", o)
	}
	for _, pr := range p.Problems {
		if pr.Key == "" || pr.Reason == "" {
			t.Errorf("problem without key or reason: %+v", pr)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"", exampleYAML,
		"telemetry: {tracing: {provider: none}}",
		"telemetry: {tracing: {provider: opentelemetry, opentelemetry: {address: 'otel:4317'}}}",
		"telemetry: {tracing: {sampling: 150, tags: {service: x}}}",
		"telemetry: {tracing: {tags: {a: '1', b: yes}}}",
		"telemetry: {accessLog: {file: {path: /dev/stdout}}}",
		"traffic: {connectTimeout: 1ns, requestTimeout: 0s, retries: 0, retryOn: ''}",
		"traffic: {outlier: {interval: -1s}}",
		"traffic:\n  retries: 1\n  retries: 2\n",
		"consul: {}", "- a", "telemetry: [", "a: &a [*a, *a]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		c = c.WithSelfZipkinURL(selfURL)
		p := ForService(c, testInst, nil)
		checkPolicy(t, p)
		if c.Validate() != nil {
			return
		}
		if len(p.Problems) != 0 {
			t.Errorf("valid config, problems: %q", p.Problems)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		c2, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("ParseConfig of marshalled config: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, c2, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip (-before +after):\n%s\n%s", diff, out)
		}
	})
}

// fuzzConfigs are the configs FuzzForService starts from.
func fuzzConfigs() []Config {
	plain := DefaultConfig(selfURL)
	rich := DefaultConfig(selfURL)
	rich.Telemetry.Tracing.Provider = ProviderOpenTelemetry
	rich.Telemetry.Tracing.OpenTelemetry.Address = "otel:4317"
	rich.Telemetry.Tracing.Tags = map[string]string{"team": "x"}
	rich.Telemetry.AccessLog.File = &FileLogConfig{Path: "/var/log/a.json", MinStatus: 500, SkipHealthChecks: true}
	bare := DefaultConfig("")
	bare.Telemetry.Tracing.Provider = ProviderNone
	bare.Traffic.Retries, bare.Traffic.RetryOn = 0, ""
	bare.Traffic.RequestTimeout = 0
	return []Config{plain, rich, bare}
}

func FuzzForService(f *testing.F) {
	// Arguments: config index, then the values of MetaKeys() in order (those
	// it has values for: keys added since come through the extra key), then
	// one more key and value.
	f.Add(uint8(0), "zipkin", "5", "100", "50%", "https://z.example/api/v2/spans", "proto", "otel:4317",
		"/var/log/p.json", "500", "250ms", "false", "1s", "0", "3", "5xx,reset", "0", "signalbox-x", "1")
	f.Add(uint8(1), "jaeger", "abc", "101", "-1", "ftp://z", "thrift", "otel", "rel/path", "99", "250",
		"maybe", "0s", "30", "11", "5xx,bogus", "1001", "signalbox-trace-sample", "5")
	f.Add(uint8(2), "opentelemetry", "NaN", "+Inf", "1e309", "http://[::1]:0/", "JSON", "[::1]:4317",
		"off", "0", "2h", "1", "1m1s", "25h", "-1", ",,", "1000", "other", "x")
	f.Add(uint8(2), "zipkin", " 0 ", "0x10", "1_0", "http://u@h/", "", "h:65536", "/", "600", "-1ms",
		"T", "999us", "1us", "010", "RESET", "+5", "", "")
	f.Add(uint8(0), "zipkin", "5", "100", "50%", "", "", "", "", "", "", "", "", "", "", "", "", "signalbox-protocol", " Tcp")
	f.Add(uint8(1), "zipkin", "5", "100", "50%", "", "", "", "", "", "", "", "", "", "", "", "", "signalbox-protocol", "udp")
	f.Fuzz(func(t *testing.T, which uint8, provider, sampling, client, overall, zipkinURL, encoding, otel,
		accessLog, minStatus, minDuration, als, connect, request, retries, retryOn, outlier, extraKey, extraValue string) {
		configs := fuzzConfigs()
		c := configs[int(which)%len(configs)]
		values := []string{provider, sampling, client, overall, zipkinURL, encoding, otel,
			accessLog, minStatus, minDuration, als, connect, request, retries, retryOn, outlier}
		meta := map[string]string{}
		for i, k := range MetaKeys()[:len(values)] {
			meta[k] = values[i]
		}
		if _, known := meta[extraKey]; !known {
			meta[extraKey] = extraValue
		}
		p := ForService(c, testInst, meta)
		checkPolicy(t, p)

		problem := map[string]bool{}
		for _, pr := range p.Problems {
			problem[pr.Key] = true
			if !strings.HasPrefix(pr.Key, MetaPrefix) {
				t.Errorf("problem with key %q: valid config, so only meta keys", pr.Key)
			}
		}
		if strings.HasPrefix(extraKey, MetaPrefix) && !slices.Contains(MetaKeys(), extraKey) && !problem[extraKey] {
			t.Errorf("unknown key %q not reported", extraKey)
		}
		// Every value that was not reported must be valid, and applied where
		// it applies: a rejected value always has a Problem.
		tr, file, tp := p.Telemetry.Tracing, p.Telemetry.AccessLog.File, p.Traffic
		accepted := func(key string) (string, bool) {
			v := strings.TrimSpace(meta[key])
			return v, v != "" && !problem[key]
		}
		if v, ok := accepted(MetaTraceProvider); ok {
			switch strings.ToLower(v) {
			case "none":
				if tr != nil {
					t.Errorf("provider %q accepted, tracing on", v)
				}
			case "zipkin", "opentelemetry":
				if tr == nil || string(tr.Provider) != strings.ToLower(v) {
					t.Errorf("provider %q accepted, tracing %+v", v, tr)
				}
			default:
				t.Errorf("provider %q accepted", v)
			}
		}
		for key, got := range map[string]func() float64{
			MetaTraceSampling:        func() float64 { return tr.RandomSampling },
			MetaTraceClientSampling:  func() float64 { return tr.ClientSampling },
			MetaTraceOverallSampling: func() float64 { return tr.OverallSampling },
		} {
			if v, ok := accepted(key); ok {
				want, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, "%")), 64)
				if err != nil || !(want >= 0 && want <= 100) {
					t.Errorf("%s=%q accepted", key, v)
				} else if tr != nil && got() != want {
					t.Errorf("%s=%q accepted, got %v", key, v, got())
				}
			}
		}
		if v, ok := accepted(MetaZipkinURL); ok {
			lower := strings.ToLower(v)
			if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
				t.Errorf("zipkin url %q accepted", v)
			}
			if tr != nil && tr.Provider == ir.Zipkin && !strings.Contains(v, tr.Collector.Host) {
				t.Errorf("zipkin url %q accepted, collector %+v", v, tr.Collector)
			}
		}
		if v, ok := accepted(MetaZipkinEncoding); ok {
			e := strings.ToLower(v)
			if e != "json" && e != "proto" {
				t.Errorf("encoding %q accepted", v)
			} else if tr != nil && tr.Provider == ir.Zipkin && tr.Collector.Encoding != e {
				t.Errorf("encoding %q accepted, collector %+v", v, tr.Collector)
			}
		}
		if v, ok := accepted(MetaOTelAddress); ok {
			host, port, err := net.SplitHostPort(v)
			if err != nil || host == "" || port == "" {
				t.Errorf("otel address %q accepted", v)
			} else if tr != nil && tr.Provider == ir.OpenTelemetry && (tr.Collector.Host != host || strconv.Itoa(int(tr.Collector.Port)) != port) {
				t.Errorf("otel address %q accepted, collector %+v", v, tr.Collector)
			}
		}
		if v, ok := accepted(MetaAccessLog); ok {
			if strings.EqualFold(v, "off") {
				if file != nil {
					t.Errorf("access log %q accepted, file %+v", v, *file)
				}
			} else if !strings.HasPrefix(v, "/") || file == nil || file.Path != v {
				t.Errorf("access log %q accepted, file %+v", v, file)
			}
		}
		if v, ok := accepted(MetaAccessLogMinStatus); ok {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || (n != 0 && (n < 100 || n > 599)) || file == nil || uint64(file.MinStatus) != n {
				t.Errorf("min status %q accepted, file %+v", v, file)
			}
		}
		if v, ok := accepted(MetaAccessLogMinDuration); ok {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Hour || file == nil || file.MinDurationMs != ceilMs(d) {
				t.Errorf("min duration %q accepted, file %+v", v, file)
			}
		}
		if v, ok := accepted(MetaALS); ok {
			b, err := strconv.ParseBool(v)
			if err != nil || p.Telemetry.AccessLog.ALS != b {
				t.Errorf("als %q accepted, got %v", v, p.Telemetry.AccessLog.ALS)
			}
		}
		if v, ok := accepted(MetaConnectTimeout); ok {
			d, err := time.ParseDuration(v)
			if err != nil || d < time.Millisecond || d > time.Minute || tp.ConnectTimeoutMs != ceilMs(d) {
				t.Errorf("connect timeout %q accepted, got %dms", v, tp.ConnectTimeoutMs)
			}
		}
		if v, ok := accepted(MetaRequestTimeout); ok {
			d, err := time.ParseDuration(v)
			if err != nil || (d != 0 && (d < time.Millisecond || d > 24*time.Hour)) || tp.RequestTimeoutMs != ceilMs(d) {
				t.Errorf("request timeout %q accepted, got %dms", v, tp.RequestTimeoutMs)
			}
		}
		if v, ok := accepted(MetaRetries); ok {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n > 10 || uint64(tp.Retries) != n {
				t.Errorf("retries %q accepted, got %d", v, tp.Retries)
			}
		}
		if v, ok := accepted(MetaRetryOn); ok {
			var want []string
			for _, e := range strings.Split(v, ",") {
				if e = strings.ToLower(strings.TrimSpace(e)); e != "" && !slices.Contains(want, e) {
					want = append(want, e)
				}
			}
			for _, e := range want {
				if !slices.Contains(RetryOnValues(), e) {
					t.Errorf("retry-on %q accepted with unknown %q", v, e)
				}
			}
			if got := strings.Split(tp.RetryOn, ","); !slices.Equal(got, want) {
				t.Errorf("retry-on %q accepted, got %q", v, tp.RetryOn)
			}
		}
		if v, ok := accepted(MetaOutlierConsecutive5xx); ok {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n > 1000 || uint64(tp.Outlier.Consecutive5xx) != n {
				t.Errorf("outlier %q accepted, got %d", v, tp.Outlier.Consecutive5xx)
			}
		}
		if v, ok := accepted(MetaProtocol); ok {
			switch strings.ToLower(v) {
			case "http":
				if tp.Protocol != "" {
					t.Errorf("protocol %q accepted, got %q", v, tp.Protocol)
				}
			case "tcp":
				if tp.Protocol != ir.ProtocolTCP {
					t.Errorf("protocol %q accepted, got %q", v, tp.Protocol)
				}
			default:
				t.Errorf("protocol %q accepted", v)
			}
		} else if tp.Protocol != "" {
			t.Errorf("protocol %q without an accepted %s", tp.Protocol, MetaProtocol)
		}
	})
}

func ceilMs(d time.Duration) uint32 {
	return uint32((d + time.Millisecond - 1) / time.Millisecond)
}
