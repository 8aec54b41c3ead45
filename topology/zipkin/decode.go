package zipkin

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/openzipkin/zipkin-go/proto/zipkin_proto3"
	"google.golang.org/protobuf/proto"
)

// Reject reasons, for the counters and DecodeError.
const (
	RejectMethod    = "method"
	RejectMediaType = "media_type"
	RejectTooLarge  = "too_large"
	RejectMalformed = "malformed"
)

// RejectReasons lists the reasons a request is refused.
func RejectReasons() []string {
	return []string{RejectMethod, RejectMediaType, RejectTooLarge, RejectMalformed}
}

// DecodeError says why a body was refused and what the sender should fix.
type DecodeError struct {
	// Reason is RejectMalformed or RejectTooLarge.
	Reason string
	Msg    string
	Hint   string
}

func (e *DecodeError) Error() string { return e.Msg }

const (
	hintJSON  = "send a JSON array of Zipkin v2 spans, as POST /api/v2/spans takes (https://zipkin.io/zipkin-api/#/default/post_spans)"
	hintProto = "send a serialized zipkin.proto3.ListOfSpans (https://github.com/openzipkin/zipkin-api/blob/master/zipkin.proto) with Content-Type application/x-protobuf"
	hintIDs   = "traceId is 16 or 32 hex characters, id and parentId 16, and neither traceId nor id is all zeros"
	hintKind  = "kind is CLIENT, SERVER, PRODUCER or CONSUMER, or left out for a local span"
)

func malformed(hint, format string, args ...any) error {
	return &DecodeError{Reason: RejectMalformed, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

func tooMany(limit int) error {
	return &DecodeError{
		Reason: RejectTooLarge,
		Msg:    fmt.Sprintf("the body holds more than %d spans", limit),
		Hint:   fmt.Sprintf("send at most %d spans per request: lower the sender's batch size", limit),
	}
}

// DecodeJSON reads a Zipkin v2 JSON body: an array of spans. maxSpans > 0
// caps the spans read; past it the error is a DecodeError with reason
// RejectTooLarge. Like Zipkin, timestamps and durations may be numbers or
// quoted numbers, and tag values strings, numbers or booleans.
//
// zipkin-go's model.SpanModel is not used to decode: it wraps microsecond
// values that overflow, takes a non-string id by cutting off its first
// and last characters, and keeps every tag and annotation of every span.
func DecodeJSON(body []byte, maxSpans int) ([]Span, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		return nil, malformed(hintJSON, "the body is empty")
	}
	if err != nil {
		return nil, malformed(hintJSON, "the body is not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, malformed(hintJSON, "the body is %s, not a JSON array of spans", jsonKind(tok))
	}
	var out []Span
	for dec.More() {
		if maxSpans > 0 && len(out) >= maxSpans {
			return nil, tooMany(maxSpans)
		}
		var w jsonSpan
		if err := dec.Decode(&w); err != nil {
			return nil, malformed(hintJSON, "span %d: %s", len(out), jsonErr(err))
		}
		s, err := w.span()
		if err != nil {
			return nil, fmt.Errorf("span %d: %w", len(out), err)
		}
		out = append(out, s)
	}
	if _, err := dec.Token(); err != nil {
		return nil, malformed(hintJSON, "after span %d: %s", len(out), jsonErr(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, malformed(hintJSON, "there is more after the array of spans")
	}
	return out, nil
}

// jsonKind names the JSON value a token starts.
func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return "a JSON object"
		}
	case string:
		return "a JSON string"
	case float64, json.Number:
		return "a JSON number"
	case bool:
		return "a JSON boolean"
	case nil:
		return "JSON null"
	}
	return "not a JSON value"
}

// jsonErr words encoding/json's errors for a sender, without Go type names.
func jsonErr(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Sprintf("a span is a JSON object, not a %s", te.Value)
		}
		return fmt.Sprintf("field %s: a JSON %s is not allowed here", te.Field, te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "the JSON ends too early"
	}
	return err.Error()
}

type jsonSpan struct {
	TraceID        string        `json:"traceId"`
	ID             string        `json:"id"`
	ParentID       string        `json:"parentId"`
	Kind           string        `json:"kind"`
	Shared         bool          `json:"shared"`
	Timestamp      jsonMicros    `json:"timestamp"`
	Duration       jsonMicros    `json:"duration"`
	LocalEndpoint  *jsonEndpoint `json:"localEndpoint"`
	RemoteEndpoint *jsonEndpoint `json:"remoteEndpoint"`
	Tags           jsonTags      `json:"tags"`
}

type jsonEndpoint struct {
	ServiceName string `json:"serviceName"`
	IPv4        string `json:"ipv4"`
	IPv6        string `json:"ipv6"`
	Port        int    `json:"port"`
}

func (w *jsonSpan) span() (Span, error) {
	var s Span
	var err error
	if s.TraceID, err = parseTraceID(w.TraceID); err != nil {
		return Span{}, err
	}
	if s.ID, err = parseSpanID("id", w.ID); err != nil {
		return Span{}, err
	}
	if s.ID == 0 {
		return Span{}, malformed(hintIDs, "id is missing or all zeros")
	}
	if w.ParentID != "" {
		if s.ParentID, err = parseSpanID("parentId", w.ParentID); err != nil {
			return Span{}, err
		}
	}
	switch w.Kind {
	case "":
	case "CLIENT":
		s.Kind = KindClient
	case "SERVER":
		s.Kind = KindServer
	case "PRODUCER":
		s.Kind = KindProducer
	case "CONSUMER":
		s.Kind = KindConsumer
	default:
		return Span{}, malformed(hintKind, "kind %q is not a span kind", w.Kind)
	}
	s.Shared = w.Shared
	s.Timestamp = microsToTime(int64(w.Timestamp))
	s.Duration = microsToDuration(int64(w.Duration))
	if e := w.LocalEndpoint; e != nil {
		s.Local = Endpoint{Service: e.ServiceName, IPv4: parseIP(e.IPv4, true), IPv6: parseIP(e.IPv6, false)}
		if e.Port > 0 && e.Port <= math.MaxUint16 {
			s.Local.Port = uint16(e.Port)
		}
	}
	if e := w.RemoteEndpoint; e != nil {
		s.RemoteService = e.ServiceName
	}
	s.normalize()
	applyTags(&s, &w.Tags)
	return s, nil
}

// parseIP reads an endpoint address; Zipkin ignores one that does not
// parse, and so does this.
func parseIP(s string, v4 bool) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is4() != v4 && !(v4 && a.Is4In6()) {
		return netip.Addr{}
	}
	if v4 {
		return a.Unmap()
	}
	return a
}

func parseTraceID(h string) (TraceID, error) {
	if h == "" || len(h) > 32 {
		return TraceID{}, malformed(hintIDs, "traceId %q: want 16 or 32 hex characters", clip(h))
	}
	var t TraceID
	var err error
	if len(h) > 16 {
		if t.High, err = strconv.ParseUint(h[:len(h)-16], 16, 64); err != nil {
			return TraceID{}, malformed(hintIDs, "traceId %q is not hex", clip(h))
		}
		h = h[len(h)-16:]
	}
	if t.Low, err = strconv.ParseUint(h, 16, 64); err != nil {
		return TraceID{}, malformed(hintIDs, "traceId %q is not hex", clip(h))
	}
	if t == (TraceID{}) {
		return TraceID{}, malformed(hintIDs, "traceId is all zeros")
	}
	return t, nil
}

func parseSpanID(field, h string) (uint64, error) {
	if len(h) > 16 {
		return 0, malformed(hintIDs, "%s %q: want 16 hex characters", field, clip(h))
	}
	if h == "" {
		return 0, nil
	}
	id, err := strconv.ParseUint(h, 16, 64)
	if err != nil {
		return 0, malformed(hintIDs, "%s %q is not hex", field, clip(h))
	}
	return id, nil
}

// clip keeps an echoed value short.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// jsonMicros is a timestamp or duration in microseconds: a number or a
// quoted number (older Envoys quote them), negative taken as absent.
type jsonMicros int64

func (m *jsonMicros) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		*m = jsonMicros(max(n, 0))
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) {
		return fmt.Errorf("%s is not a whole number of microseconds", clip(string(b)))
	}
	switch {
	case f <= 0:
		*m = 0
	case f >= math.MaxInt64:
		*m = math.MaxInt64
	default:
		*m = jsonMicros(f)
	}
	return nil
}

// jsonTags keeps, of a span's tags, the ones attribution reads: decoding
// every tag into a map was most of the cost of decoding a span. Zipkin's
// tag values are strings; numbers and booleans are taken as their text,
// as Zipkin's own reader does, and a null value as no tag.
type jsonTags struct {
	has  [numTagsRead]bool
	vals [numTagsRead]string
}

const numTagsRead = 12

// tagIndex is where jsonTags keeps a tag, -1 when it does not.
func tagIndex(k string) int {
	switch k {
	case TagServiceVersion:
		return 0
	case TagVersion:
		return 1
	case TagError:
		return 2
	case TagHTTPStatus:
		return 3
	case TagHTTPStatusOTel:
		return 4
	case TagGRPCStatusOTel:
		return 5
	case TagGRPCStatusEnvoy:
		return 6
	case TagRPCSystem:
		return 7
	case TagUpstreamCluster:
		return 8
	case TagRPCSystemName:
		return 9
	case TagRPCResponseStatus:
		return 10
	case TagALS:
		return 11
	}
	return -1
}

func (t *jsonTags) tag(k string) (string, bool) {
	if i := tagIndex(k); i >= 0 && t.has[i] {
		return t.vals[i], true
	}
	return "", false
}

// UnmarshalJSON walks the tags object. encoding/json has checked that b is
// one valid JSON value; bounds are checked all the same.
func (t *jsonTags) UnmarshalJSON(b []byte) error {
	i := skipSpace(b, 0)
	if i < len(b) && b[i] == 'n' {
		return nil // null: no tags
	}
	if i >= len(b) || b[i] != '{' {
		return errors.New("tags is a JSON object of strings")
	}
	i++
	for {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
		if i >= len(b) {
			return errors.New("the tags object is cut short")
		}
		if b[i] == '}' {
			return nil
		}
		key, next, err := jsonString(b, i)
		if err != nil {
			return err
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return errors.New("the tags object is cut short")
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return errors.New("the tags object is cut short")
		}
		var val []byte
		switch b[i] {
		case '{', '[':
			return errors.New("a tag value is a string, not an object or array")
		case '"':
			if val, i, err = jsonString(b, i); err != nil {
				return err
			}
		default: // a number, true, false or null
			j := i
			for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
				j++
			}
			val, i = b[i:j], j
			if string(val) == "null" {
				continue
			}
		}
		if k := tagIndex(string(key)); k >= 0 {
			t.has[k], t.vals[k] = true, string(val)
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// jsonString reads the JSON string at b[i], unescaped, and the index past
// it. A string with escapes or bytes that are not UTF-8 is read by
// encoding/json, which replaces such bytes with U+FFFD as it does in the
// span's other strings: a tag value may become a version, and a label.
func jsonString(b []byte, i int) ([]byte, int, error) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, errors.New("a tag is not a string")
	}
	escaped, ascii := false, true
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '\\':
			escaped = true
			j++
		case c >= utf8.RuneSelf:
			ascii = false
		case c == '"':
			if raw := b[i+1 : j]; !escaped && (ascii || utf8.Valid(raw)) {
				return raw, j + 1, nil
			}
			var s string
			if err := json.Unmarshal(b[i:j+1], &s); err != nil {
				return nil, 0, err
			}
			return []byte(s), j + 1, nil
		}
	}
	return nil, 0, errors.New("a tag string is cut short")
}

// DecodeProto reads a zipkin.proto3 ListOfSpans. Unlike zipkin-go's
// ParseSpans it takes 8-byte trace ids (Envoy sends them without
// trace_id_128bit) and leaves a missing timestamp zero.
func DecodeProto(body []byte, maxSpans int) ([]Span, error) {
	if len(body) == 0 {
		return nil, malformed(hintProto, "the body is empty")
	}
	var l zipkin_proto3.ListOfSpans
	if err := proto.Unmarshal(body, &l); err != nil {
		return nil, malformed(hintProto, "the body is not a zipkin.proto3 ListOfSpans: %v", err)
	}
	if maxSpans > 0 && len(l.GetSpans()) > maxSpans {
		return nil, tooMany(maxSpans)
	}
	out := make([]Span, 0, len(l.GetSpans()))
	for i, p := range l.GetSpans() {
		s, err := protoSpan(p)
		if err != nil {
			return nil, fmt.Errorf("span %d: %w", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func protoSpan(p *zipkin_proto3.Span) (Span, error) {
	var s Span
	switch t := p.GetTraceId(); len(t) {
	case 8:
		s.TraceID.Low = binary.BigEndian.Uint64(t)
	case 16:
		s.TraceID.High, s.TraceID.Low = binary.BigEndian.Uint64(t[:8]), binary.BigEndian.Uint64(t[8:])
	default:
		return Span{}, malformed(hintIDs, "trace_id is %d bytes: want 8 or 16", len(t))
	}
	if s.TraceID == (TraceID{}) {
		return Span{}, malformed(hintIDs, "trace_id is all zeros")
	}
	id := p.GetId()
	if len(id) != 8 {
		return Span{}, malformed(hintIDs, "id is %d bytes: want 8", len(id))
	}
	if s.ID = binary.BigEndian.Uint64(id); s.ID == 0 {
		return Span{}, malformed(hintIDs, "id is all zeros")
	}
	switch pid := p.GetParentId(); len(pid) {
	case 0:
	case 8:
		s.ParentID = binary.BigEndian.Uint64(pid)
	default:
		return Span{}, malformed(hintIDs, "parent_id is %d bytes: want 8, or none", len(pid))
	}
	switch p.GetKind() {
	case zipkin_proto3.Span_SPAN_KIND_UNSPECIFIED:
	case zipkin_proto3.Span_CLIENT:
		s.Kind = KindClient
	case zipkin_proto3.Span_SERVER:
		s.Kind = KindServer
	case zipkin_proto3.Span_PRODUCER:
		s.Kind = KindProducer
	case zipkin_proto3.Span_CONSUMER:
		s.Kind = KindConsumer
	default:
		return Span{}, malformed(hintKind, "kind %d is not a span kind", p.GetKind())
	}
	s.Shared = p.GetShared()
	s.Timestamp = microsToTime(int64(min(p.GetTimestamp(), math.MaxInt64)))
	s.Duration = microsToDuration(int64(min(p.GetDuration(), math.MaxInt64)))
	if e := p.GetLocalEndpoint(); e != nil {
		s.Local.Service = e.GetServiceName()
		if a, ok := netip.AddrFromSlice(e.GetIpv4()); ok && a.Is4() {
			s.Local.IPv4 = a
		}
		if a, ok := netip.AddrFromSlice(e.GetIpv6()); ok && a.Is6() {
			s.Local.IPv6 = a
		}
		if port := e.GetPort(); port > 0 && port <= math.MaxUint16 {
			s.Local.Port = uint16(port)
		}
	}
	s.RemoteService = p.GetRemoteEndpoint().GetServiceName()
	s.normalize()
	applyTags(&s, mapTags(p.GetTags()))
	return s, nil
}

// mediaJSON and mediaProto are the content types accepted.
const (
	mediaJSON  = "application/json"
	mediaProto = "application/x-protobuf"
)

// decoderFor picks the decoder of a media type ("" is JSON, as in Zipkin).
func decoderFor(mediaType string) func([]byte, int) ([]Span, error) {
	switch strings.ToLower(mediaType) {
	case "", mediaJSON:
		return DecodeJSON
	case mediaProto, "application/protobuf":
		return DecodeProto
	}
	return nil
}
