package policy

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/signalbox/signalbox/xds/ir"
)

// The checks below are shared by Config.Validate and ForService, so the
// config file and the meta keys accept exactly the same values. Their errors
// say what is wrong and what is allowed, without the field name.

// parsePercent reads a percentage 0–100, optionally ending in "%".
func parsePercent(s string) (float64, error) {
	num := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, errors.New("not a number between 0 and 100")
	}
	if err := checkPercent(f); err != nil {
		return 0, err
	}
	return f, nil
}

func checkPercent(f float64) error {
	if math.IsNaN(f) || f < 0 || f > 100 {
		return errors.New("out of range; want a percentage from 0 to 100")
	}
	return nil
}

// parseZipkinURL turns http(s)://host[:port][/path] into a collector.
func parseZipkinURL(s string) (ir.Collector, error) {
	const want = "want http(s)://host[:port]/path"
	if hasControlOrSpace(s) {
		return ir.Collector{}, errors.New("contains spaces or control characters; " + want)
	}
	u, err := url.Parse(s)
	if err != nil {
		return ir.Collector{}, errors.New("not a URL; " + want)
	}
	var port uint32
	switch strings.ToLower(u.Scheme) {
	case "http":
		port = 80
	case "https":
		port = 443
	case "":
		return ir.Collector{}, errors.New("no scheme; " + want)
	default:
		return ir.Collector{}, fmt.Errorf("scheme %q is not http or https; %s", u.Scheme, want)
	}
	if u.Opaque != "" || u.Host == "" {
		return ir.Collector{}, errors.New("no host; " + want)
	}
	if strings.Contains(u.Host, "%") {
		return ir.Collector{}, errors.New("percent-encoded or zoned host; " + want)
	}
	if u.User != nil {
		return ir.Collector{}, errors.New("user info is not supported; " + want)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return ir.Collector{}, errors.New("query and fragment are not supported; " + want)
	}
	host := u.Hostname()
	if err := checkHost(host); err != nil {
		return ir.Collector{}, fmt.Errorf("%v; %s", err, want)
	}
	if p := u.Port(); p != "" {
		n, err := parsePort(p)
		if err != nil {
			return ir.Collector{}, fmt.Errorf("%v; %s", err, want)
		}
		port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return ir.Collector{}, errors.New("empty port; " + want)
	}
	p := u.EscapedPath()
	if p == "" || p == "/" {
		p = DefaultZipkinPath
	}
	return ir.Collector{Host: host, Port: port, Path: p, TLS: strings.EqualFold(u.Scheme, "https")}, nil
}

// parseHostPort reads host:port.
func parseHostPort(s string) (ir.Collector, error) {
	const want = "want host:port, e.g. otel-collector:4317"
	if hasControlOrSpace(s) {
		return ir.Collector{}, errors.New("contains spaces or control characters; " + want)
	}
	if strings.Contains(s, "://") {
		return ir.Collector{}, errors.New("a URL, not an address; " + want)
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return ir.Collector{}, errors.New("no port; " + want)
	}
	if err := checkHost(host); err != nil {
		return ir.Collector{}, fmt.Errorf("%v; %s", err, want)
	}
	port, err := parsePort(p)
	if err != nil {
		return ir.Collector{}, fmt.Errorf("%v; %s", err, want)
	}
	return ir.Collector{Host: host, Port: port}, nil
}

func parsePort(p string) (uint32, error) {
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not 1–65535", p)
	}
	return uint32(n), nil
}

// checkHost accepts an IP address or a DNS name.
func checkHost(h string) error {
	if h == "" {
		return errors.New("no host")
	}
	if net.ParseIP(h) != nil {
		return nil
	}
	if len(h) > 253 {
		return fmt.Errorf("host name is %d characters long (at most 253)", len(h))
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q is not an IP address or a DNS name", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("host %q is not an IP address or a DNS name", h)
			}
		}
	}
	return nil
}

func hasControlOrSpace(s string) bool {
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return true
		}
	}
	return false
}

func checkEncoding(e string) error {
	if e != EncodingJSON && e != EncodingProto {
		return errors.New("want json or proto")
	}
	return nil
}

// checkLogPath accepts an absolute file path.
func checkLogPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty; want an absolute file path")
	case !strings.HasPrefix(p, "/"):
		return errors.New("not absolute; want a path that starts with /")
	case strings.HasSuffix(p, "/") || path.Clean(p) == "/":
		return errors.New("a directory; want a file path")
	case len(p) > 4096:
		return fmt.Errorf("%d characters long; want at most 4096", len(p))
	}
	for _, r := range p {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return errors.New("contains control characters or invalid UTF-8")
		}
	}
	return nil
}

func checkMinStatus(n uint64) error {
	if n != 0 && (n < 100 || n > 599) {
		return errors.New("want 0 (all) or an HTTP status from 100 to 599")
	}
	return nil
}

// parseDuration reads a Go duration; a bare number is an error, since its
// unit would be a guess.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, errors.New("not a duration; want e.g. 250ms, 2s or 1m")
	}
	return d, nil
}

func checkConnectTimeout(d time.Duration) error {
	if d < MinConnectTimeout || d > MaxConnectTimeout {
		return fmt.Errorf("want %v to %v", MinConnectTimeout, MaxConnectTimeout)
	}
	return nil
}

func checkRequestTimeout(d time.Duration) error {
	if d != 0 && (d < time.Millisecond || d > MaxRequestTimeout) {
		return fmt.Errorf("want 0 (none) or %v to %v", time.Millisecond, MaxRequestTimeout)
	}
	return nil
}

func checkOutlierDuration(d time.Duration) error {
	if d < MinOutlierDuration || d > MaxOutlierDuration {
		return fmt.Errorf("want %v to %v", MinOutlierDuration, MaxOutlierDuration)
	}
	return nil
}

func checkAccessLogDuration(d time.Duration) error {
	if d < 0 || d > MaxAccessLogDuration {
		return fmt.Errorf("want 0 (all) to %v", MaxAccessLogDuration)
	}
	return nil
}

// millis converts a checked duration to whole milliseconds, rounding a
// non-zero sub-millisecond rest up so that a positive duration stays
// positive.
func millis(d time.Duration) uint32 {
	ms := d / time.Millisecond
	if d%time.Millisecond != 0 {
		ms++
	}
	if ms > math.MaxUint32 {
		return math.MaxUint32
	}
	if ms < 0 {
		return 0
	}
	return uint32(ms)
}

// RetryOnValues are the Envoy retry_on conditions signalbox accepts.
func RetryOnValues() []string {
	return []string{
		"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx",
		"refused-stream", "retriable-status-codes", "retriable-headers",
		"envoy-ratelimited", "http3-post-connect-failure",
		"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
	}
}

// parseRetryOn normalises a comma-separated retry_on list: lower case,
// empty entries and repeats dropped, order kept.
func parseRetryOn(s string) (string, error) {
	known := map[string]bool{}
	for _, v := range RetryOnValues() {
		known[v] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, e := range strings.Split(s, ",") {
		e = strings.ToLower(strings.TrimSpace(e))
		if e == "" || seen[e] {
			continue
		}
		if !known[e] {
			return "", fmt.Errorf("unknown condition %q; want a comma-separated list of %s", e, strings.Join(RetryOnValues(), ", "))
		}
		seen[e] = true
		out = append(out, e)
	}
	if len(out) == 0 {
		return "", fmt.Errorf("no conditions; want a comma-separated list of %s", strings.Join(RetryOnValues(), ", "))
	}
	return strings.Join(out, ","), nil
}

// reservedTags are set per instance by ForService.
func isReservedTag(k string) bool {
	switch k {
	case TagService, TagVersion, TagHost, TagDatacenter:
		return true
	}
	return false
}

func checkTag(k, v string) error {
	switch {
	case k == "":
		return errors.New("empty tag name")
	case isReservedTag(k):
		return errors.New("reserved tag name; signalbox sets " + reservedTagsAsEnglish + " itself")
	case len(k) > maxTagLength || len(v) > maxTagLength:
		return fmt.Errorf("tag name or value longer than %d characters", maxTagLength)
	case hasControl(k) || hasControl(v):
		return errors.New("control characters or invalid UTF-8 in tag name or value")
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return true
		}
	}
	return false
}
