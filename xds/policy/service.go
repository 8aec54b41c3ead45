package policy

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/signalbox/signalbox/xds/ir"
)

// Consul service meta keys that override the config file for one service.
// The package doc lists their values and defaults.
const (
	MetaPrefix                = "signalbox-"
	MetaTraceProvider         = "signalbox-trace-provider"
	MetaTraceSampling         = "signalbox-trace-sampling"
	MetaTraceClientSampling   = "signalbox-trace-client-sampling"
	MetaTraceOverallSampling  = "signalbox-trace-overall-sampling"
	MetaZipkinURL             = "signalbox-zipkin-url"
	MetaZipkinEncoding        = "signalbox-zipkin-encoding"
	MetaOTelAddress           = "signalbox-otel-address"
	MetaAccessLog             = "signalbox-access-log"
	MetaAccessLogMinStatus    = "signalbox-access-log-min-status"
	MetaAccessLogMinDuration  = "signalbox-access-log-min-duration"
	MetaALS                   = "signalbox-als"
	MetaConnectTimeout        = "signalbox-connect-timeout"
	MetaRequestTimeout        = "signalbox-request-timeout"
	MetaRetries               = "signalbox-retries"
	MetaRetryOn               = "signalbox-retry-on"
	MetaOutlierConsecutive5xx = "signalbox-outlier-consecutive-5xx"
	MetaProtocol              = "signalbox-protocol"
)

const (
	accessLogOff                = "off"
	configProblemKey            = "config"
	unknownKeyReasonPrefix      = "unknown signalbox meta key; ignored"
	noFileLogReason             = "no file access log for this service (set " + MetaAccessLog + " to a path, or telemetry.accessLog.file in the config file); ignored"
	invalidConfigReasonSuffix   = "; using the built-in defaults (validate the config at startup)"
	maxMetaValueLengthInProblem = 200
)

// MetaKeys lists every meta key ForService reads, in the order it applies
// them.
func MetaKeys() []string {
	return []string{
		MetaTraceProvider, MetaTraceSampling, MetaTraceClientSampling, MetaTraceOverallSampling,
		MetaZipkinURL, MetaZipkinEncoding, MetaOTelAddress,
		MetaAccessLog, MetaAccessLogMinStatus, MetaAccessLogMinDuration, MetaALS,
		MetaConnectTimeout, MetaRequestTimeout, MetaRetries, MetaRetryOn, MetaOutlierConsecutive5xx,
		MetaProtocol,
	}
}

// Literal span tags set per instance.
const (
	TagService    = "service"
	TagVersion    = "version"
	TagHost       = "host"
	TagDatacenter = "datacenter"
)

// InstanceInfo is what the span tags say about the instance a sidecar
// fronts. Empty fields are left out of the tags.
type InstanceInfo struct {
	Service    string
	Version    string
	Node       string // the Consul node, tagged as "host"
	Datacenter string
}

// ServicePolicy is the telemetry and traffic policy of one service, with the
// meta values that were rejected.
type ServicePolicy struct {
	Telemetry ir.Telemetry
	Traffic   ir.TrafficPolicy
	// Problems are the rejected meta values, in MetaKeys order, then unknown
	// keys sorted. Each kept its default.
	Problems []Problem
}

// Problem is a meta value that was not applied, and why.
type Problem struct {
	// Key is the meta key, or "config" when the config itself was invalid.
	Key   string
	Value string
	// Reason says what is wrong and what was used instead.
	Reason string
}

// String is e.g. `meta signalbox-trace-sampling="abc": not a number between
// 0 and 100; using 1`.
func (p Problem) String() string {
	v := p.Value
	if len(v) > maxMetaValueLengthInProblem {
		v = v[:maxMetaValueLengthInProblem] + "…"
	}
	if p.Key == configProblemKey {
		return "config: " + p.Reason
	}
	return fmt.Sprintf("meta %s=%q: %s", p.Key, v, p.Reason)
}

// ForService is the policy of one service: the config c, overridden by the
// service's meta (see Merge). It never fails: a meta value that is bad
// becomes a Problem and the config's value is kept. c should have passed
// Validate; if it has not, the built-in defaults are used and a Problem
// says so.
func ForService(c Config, inst InstanceInfo, meta map[string]string) ServicePolicy {
	var probs []Problem
	if err := c.Validate(); err != nil {
		probs = append(probs, Problem{Key: configProblemKey, Reason: oneLine(err.Error()) + invalidConfigReasonSuffix})
		self := ""
		if _, err := parseZipkinURL(c.Telemetry.Tracing.Zipkin.URL); err == nil {
			self = c.Telemetry.Tracing.Zipkin.URL
		}
		c = DefaultConfig(self)
		if self == "" {
			c.Telemetry.Tracing.Provider = ProviderNone
		}
	} else {
		c = c.clone()
	}
	a := applier{meta: meta, probs: probs}

	// Tracing.
	tc := c.Telemetry.Tracing
	provider := tc.Provider
	if v, ok := a.get(MetaTraceProvider); ok {
		switch p := strings.ToLower(v); p {
		case ProviderZipkin, ProviderOpenTelemetry, ProviderNone:
			provider = p
		default:
			a.reject(MetaTraceProvider, "want zipkin, opentelemetry or none", tc.Provider)
		}
	}
	rnd := a.percent(MetaTraceSampling, tc.Sampling)
	client := a.percent(MetaTraceClientSampling, tc.ClientSampling)
	overall := a.percent(MetaTraceOverallSampling, tc.OverallSampling)

	zipkin, zipkinErr := parseZipkinURL(tc.Zipkin.URL)
	if v, ok := a.get(MetaZipkinURL); ok {
		if col, err := parseZipkinURL(v); err != nil {
			a.reject(MetaZipkinURL, err.Error(), orNone(tc.Zipkin.URL))
		} else {
			zipkin, zipkinErr = col, nil
		}
	}
	zipkin.Encoding = tc.Zipkin.Encoding
	if v, ok := a.get(MetaZipkinEncoding); ok {
		if e := strings.ToLower(v); checkEncoding(e) != nil {
			a.reject(MetaZipkinEncoding, "want json or proto", tc.Zipkin.Encoding)
		} else {
			zipkin.Encoding = e
		}
	}
	otel, otelErr := parseHostPort(tc.OpenTelemetry.Address)
	if v, ok := a.get(MetaOTelAddress); ok {
		if col, err := parseHostPort(v); err != nil {
			a.reject(MetaOTelAddress, err.Error(), orNone(tc.OpenTelemetry.Address))
		} else {
			otel, otelErr = col, nil
		}
	}
	// A provider from meta needs its collector; the config's provider has
	// one (Validate).
	if provider != tc.Provider {
		switch {
		case provider == ProviderZipkin && zipkinErr != nil:
			a.reject(MetaTraceProvider, "no Zipkin collector URL (set "+MetaZipkinURL+" or telemetry.tracing.zipkin.url)", tc.Provider)
			provider = tc.Provider
		case provider == ProviderOpenTelemetry && otelErr != nil:
			a.reject(MetaTraceProvider, "no OpenTelemetry collector address (set "+MetaOTelAddress+" or telemetry.tracing.opentelemetry.address)", tc.Provider)
			provider = tc.Provider
		}
	}

	var tel ir.Telemetry
	if provider != ProviderNone {
		tr := &ir.Tracing{
			RandomSampling:  rnd,
			ClientSampling:  client,
			OverallSampling: overall,
			Tags:            tags(tc.Tags, inst),
			Propagation:     tc.Propagation,
		}
		if provider == ProviderZipkin {
			tr.Provider, tr.Collector = ir.Zipkin, zipkin
		} else {
			tr.Provider, tr.Collector = ir.OpenTelemetry, otel
		}
		tel.Tracing = tr
	}

	// Access logs.
	al := c.Telemetry.AccessLog
	if v, ok := a.get(MetaAccessLog); ok {
		if strings.EqualFold(v, accessLogOff) {
			al.File = nil
		} else if err := checkLogPath(v); err != nil {
			a.reject(MetaAccessLog, err.Error()+` or "off"`, fileDefault(c.Telemetry.AccessLog.File))
		} else {
			if al.File == nil {
				al.File = &FileLogConfig{}
			}
			al.File.Path = v
		}
	}
	if v, ok := a.get(MetaAccessLogMinStatus); ok {
		n, err := strconv.ParseUint(v, 10, 32)
		switch {
		case err != nil || checkMinStatus(n) != nil:
			a.reject(MetaAccessLogMinStatus, "want 0 (all) or an HTTP status from 100 to 599", minStatusDefault(c.Telemetry.AccessLog.File))
		case al.File == nil:
			a.problem(MetaAccessLogMinStatus, noFileLogReason)
		default:
			al.File.MinStatus = uint32(n)
		}
	}
	if v, ok := a.get(MetaAccessLogMinDuration); ok {
		d, err := parseDuration(v)
		if err == nil {
			err = checkAccessLogDuration(d)
		}
		switch {
		case err != nil:
			a.reject(MetaAccessLogMinDuration, err.Error(), minDurationDefault(c.Telemetry.AccessLog.File))
		case al.File == nil:
			a.problem(MetaAccessLogMinDuration, noFileLogReason)
		default:
			al.File.MinDurationMs = millis(d)
		}
	}
	if v, ok := a.get(MetaALS); ok {
		if b, err := strconv.ParseBool(v); err != nil {
			a.reject(MetaALS, "want true or false", strconv.FormatBool(c.Telemetry.AccessLog.ALS))
		} else {
			al.ALS = b
		}
	}
	tel.AccessLog.ALS = al.ALS
	if f := al.File; f != nil {
		tel.AccessLog.File = &ir.FileLog{Path: f.Path, MinStatus: f.MinStatus, MinDurationMs: f.MinDurationMs, SkipHealthChecks: f.SkipHealthChecks}
	}

	// Traffic.
	t := c.Traffic
	connect := a.duration(MetaConnectTimeout, time.Duration(t.ConnectTimeout), checkConnectTimeout)
	request := a.duration(MetaRequestTimeout, time.Duration(t.RequestTimeout), checkRequestTimeout)
	retries := t.Retries
	retriesFromMeta := false
	if v, ok := a.get(MetaRetries); ok {
		if n, err := strconv.ParseUint(v, 10, 32); err != nil || n > MaxRetries {
			a.reject(MetaRetries, fmt.Sprintf("want a whole number from 0 to %d", MaxRetries), strconv.FormatUint(uint64(t.Retries), 10))
		} else {
			retries, retriesFromMeta = uint32(n), true
		}
	}
	retryOn := t.RetryOn
	if retryOn != "" {
		retryOn, _ = parseRetryOn(retryOn) // normalised; valid (Validate)
	}
	if v, ok := a.get(MetaRetryOn); ok {
		if list, err := parseRetryOn(v); err != nil {
			a.reject(MetaRetryOn, err.Error(), orNone(t.RetryOn))
		} else {
			retryOn = list
		}
	}
	if retriesFromMeta && retries > 0 && retryOn == "" {
		a.reject(MetaRetries, "no conditions to retry on (set "+MetaRetryOn+" or traffic.retryOn)", strconv.FormatUint(uint64(t.Retries), 10))
		retries = t.Retries
	}
	consecutive := t.Outlier.Consecutive5xx
	if v, ok := a.get(MetaOutlierConsecutive5xx); ok {
		if n, err := strconv.ParseUint(v, 10, 32); err != nil || n > MaxConsecutive5xx {
			a.reject(MetaOutlierConsecutive5xx, fmt.Sprintf("want a whole number from 0 (off) to %d", MaxConsecutive5xx), strconv.FormatUint(uint64(consecutive), 10))
		} else {
			consecutive = uint32(n)
		}
	}
	var protocol ir.Protocol // HTTP: left empty, as before the key existed
	if v, ok := a.get(MetaProtocol); ok {
		switch p := ir.Protocol(strings.ToLower(v)); p {
		case ir.ProtocolHTTP:
		case ir.ProtocolTCP:
			protocol = p
		default:
			a.reject(MetaProtocol, "want http (HTTP/1.1, HTTP/2, gRPC) or tcp", string(ir.ProtocolHTTP))
		}
	}
	traffic := ir.TrafficPolicy{
		Protocol:           protocol,
		ConnectTimeoutMs:   millis(connect),
		RequestTimeoutMs:   millis(request),
		Retries:            retries,
		RetryOn:            retryOn,
		RetryBudgetPercent: t.RetryBudgetPercent,
		Outlier: ir.Outlier{
			Consecutive5xx:     consecutive,
			IntervalMs:         millis(time.Duration(t.Outlier.Interval)),
			BaseEjectionMs:     millis(time.Duration(t.Outlier.BaseEjection)),
			MaxEjectionPercent: t.Outlier.MaxEjectionPercent,
		},
	}

	a.unknownKeys()
	rank := map[string]int{configProblemKey: -1}
	for i, k := range MetaKeys() {
		rank[k] = i + 1
	}
	sort.SliceStable(a.probs, func(i, j int) bool {
		ri, ok := rank[a.probs[i].Key]
		if !ok {
			ri = len(rank)
		}
		rj, ok := rank[a.probs[j].Key]
		if !ok {
			rj = len(rank)
		}
		return ri < rj
	})
	return ServicePolicy{Telemetry: tel, Traffic: traffic, Problems: a.probs}
}

// applier reads meta values and collects problems.
type applier struct {
	meta  map[string]string
	probs []Problem
}

// get returns the trimmed value of key; an empty value counts as unset.
func (a *applier) get(key string) (string, bool) {
	v := strings.TrimSpace(a.meta[key])
	return v, v != ""
}

func (a *applier) problem(key, reason string) {
	a.probs = append(a.probs, Problem{Key: key, Value: a.meta[key], Reason: reason})
}

// reject records that key's value was not used, and which value was.
func (a *applier) reject(key, reason, using string) {
	a.problem(key, reason+"; using "+using)
}

func (a *applier) percent(key string, def float64) float64 {
	v, ok := a.get(key)
	if !ok {
		return def
	}
	f, err := parsePercent(v)
	if err != nil {
		a.reject(key, err.Error(), strconv.FormatFloat(def, 'g', -1, 64))
		return def
	}
	return f
}

func (a *applier) duration(key string, def time.Duration, check func(time.Duration) error) time.Duration {
	v, ok := a.get(key)
	if !ok {
		return def
	}
	d, err := parseDuration(v)
	if err == nil {
		err = check(d)
	}
	if err != nil {
		a.reject(key, err.Error(), def.String())
		return def
	}
	return d
}

// unknownKeys reports signalbox-* keys ForService does not know.
// isRoutingKey: ir.InstanceMetaInboundPort is read per instance by
// xds/build; it is no policy key, but no unknown key either, and instances
// are expected to differ in it.
func isRoutingKey(k string) bool { return k == ir.InstanceMetaInboundPort }

func (a *applier) unknownKeys() {
	known := MetaKeys()
	isKnown := map[string]bool{}
	for _, k := range known {
		isKnown[k] = true
	}
	for _, k := range sortedKeys(a.meta) {
		if !strings.HasPrefix(k, MetaPrefix) || isKnown[k] || isRoutingKey(k) {
			continue
		}
		reason := unknownKeyReasonPrefix
		if s := suggest(k, known); s != "" {
			reason += fmt.Sprintf(" (did you mean %s?)", s)
		}
		a.problem(k, reason)
	}
}

// tags are the literal span tags: the configured extras, then the
// instance's (reserved names, so they win).
func tags(extra map[string]string, inst InstanceInfo) map[string]string {
	out := make(map[string]string, len(extra)+4)
	for k, v := range extra {
		out[k] = v
	}
	for k, v := range map[string]string{
		TagService: inst.Service, TagVersion: inst.Version, TagHost: inst.Node, TagDatacenter: inst.Datacenter,
	} {
		if v != "" {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func fileDefault(f *FileLogConfig) string {
	if f == nil {
		return accessLogOff
	}
	return f.Path
}

func minStatusDefault(f *FileLogConfig) string {
	if f == nil {
		return "0"
	}
	return strconv.FormatUint(uint64(f.MinStatus), 10)
}

func minDurationDefault(f *FileLogConfig) string {
	if f == nil {
		return "0s"
	}
	return (time.Duration(f.MinDurationMs) * time.Millisecond).String()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
