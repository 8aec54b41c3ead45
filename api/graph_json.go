package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/signalbox/signalbox/topology"
)

// appendGraphJSON appends g as compact JSON, byte for byte what
// encoding/json writes for it (a fuzz test holds it to that). The graph is
// the one large answer signalbox serves: at 5,000 edges, reflection made
// encoding cost more than the store's query.
func appendGraphJSON(b []byte, g topology.Graph) ([]byte, error) {
	b = append(b, `{"generatedAt":`...)
	ts, err := g.GeneratedAt.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode graph: generatedAt: %w", err)
	}
	b = append(b, ts...)
	b = append(b, `,"window":`...)
	b = appendJSONString(b, g.Window)
	b = append(b, `,"nodes":`...)
	if g.Nodes == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, n := range g.Nodes {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = appendJSONString(b, n.ID)
			b = append(b, `,"service":`...)
			b = appendJSONString(b, n.Service)
			if n.Version != "" {
				b = append(b, `,"version":`...)
				b = appendJSONString(b, n.Version)
			}
			b = append(b, `,"rps":`...)
			if b, err = appendJSONFloat(b, n.RPS); err != nil {
				return nil, fmt.Errorf("encode graph: node %s: rps: %w", n.ID, err)
			}
			b = append(b, `,"errorRate":`...)
			if b, err = appendJSONFloat(b, n.ErrorRate); err != nil {
				return nil, fmt.Errorf("encode graph: node %s: errorRate: %w", n.ID, err)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"edges":`...)
	if g.Edges == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range g.Edges {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendEdgeJSON(b, &g.Edges[i]); err != nil {
				e := &g.Edges[i]
				return nil, fmt.Errorf("encode graph: edge %s -> %s: %w", e.Source, e.Target, err)
			}
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// appendEdgeJSON appends one edge, its fields in the struct's order.
func appendEdgeJSON(b []byte, e *topology.GraphEdge) ([]byte, error) {
	var err error
	b = append(b, `{"source":`...)
	b = appendJSONString(b, e.Source)
	b = append(b, `,"target":`...)
	b = appendJSONString(b, e.Target)
	b = append(b, `,"protocol":`...)
	b = appendJSONString(b, string(e.Protocol))
	b = append(b, `,"requests":`...)
	b = strconv.AppendUint(b, e.Requests, 10)
	b = append(b, `,"errors":`...)
	b = strconv.AppendUint(b, e.Errors, 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendUint(b, e.Bytes, 10)
	b = append(b, `,"rps":`...)
	if b, err = appendJSONFloat(b, e.RPS); err != nil {
		return nil, fmt.Errorf("rps: %w", err)
	}
	b = append(b, `,"errorRate":`...)
	if b, err = appendJSONFloat(b, e.ErrorRate); err != nil {
		return nil, fmt.Errorf("errorRate: %w", err)
	}
	c := &e.ByClass
	b = append(b, `,"byClass":{"2xx":`...)
	b = strconv.AppendUint(b, c.C2xx, 10)
	b = append(b, `,"3xx":`...)
	b = strconv.AppendUint(b, c.C3xx, 10)
	b = append(b, `,"4xx":`...)
	b = strconv.AppendUint(b, c.C4xx, 10)
	b = append(b, `,"5xx":`...)
	b = strconv.AppendUint(b, c.C5xx, 10)
	b = append(b, `,"connFailure":`...)
	b = strconv.AppendUint(b, c.ConnFailure, 10)
	b = append(b, `},"p50Ms":`...)
	if b, err = appendJSONFloat(b, e.P50Ms); err != nil {
		return nil, fmt.Errorf("p50Ms: %w", err)
	}
	b = append(b, `,"p95Ms":`...)
	if b, err = appendJSONFloat(b, e.P95Ms); err != nil {
		return nil, fmt.Errorf("p95Ms: %w", err)
	}
	b = append(b, `,"p99Ms":`...)
	if b, err = appendJSONFloat(b, e.P99Ms); err != nil {
		return nil, fmt.Errorf("p99Ms: %w", err)
	}
	return append(b, '}'), nil
}

// appendJSONFloat is encoding/json's float64 encoding: the shortest
// decimal, in exponent form only for very small or large magnitudes, and
// an error for NaN and infinities (JSON has neither).
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, fmt.Errorf("%v is not a JSON number", f)
	}
	abs := math.Abs(f)
	if abs >= 1e-6 && abs < 1e21 {
		if s, ok := appendShortFloat(b, f); ok {
			return s, nil
		}
	}
	if abs == 0 || (abs >= 1e-6 && abs < 1e21) {
		return strconv.AppendFloat(b, f, 'f', -1, 64), nil
	}
	b = strconv.AppendFloat(b, f, 'e', -1, 64)
	// e-07 → e-7, as encoding/json writes it.
	if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
		b[n-2] = b[n-1]
		b = b[:n-1]
	}
	return b, nil
}

// shortDigits is the most significant digits appendShortFloat writes.
const shortDigits = 4

// appendShortFloat appends f (1e-6 ≤ |f| < 1e21) as strconv's shortest 'f'
// form does, when f is the float64 nearest to a decimal of at most
// shortDigits significant digits (as roundGraph makes the graph's numbers);
// ok is false otherwise. Float formatting was half of encoding a graph:
// this writes such a number in 15 ns, strconv in 30 (50 unrounded), and a
// number it cannot write costs 8 ns more. Why it writes the same: two
// decimals of at most 15 significant digits never round to the same
// float64, so the shortest decimal of f is this one, its trailing zeros
// dropped.
func appendShortFloat(b []byte, f float64) ([]byte, bool) {
	a := math.Abs(f)
	// a·10^k has shortDigits digits before the point, or one fewer or
	// more when decade misjudges a power of ten: then f is only less
	// likely to pass the check below, which is what makes it right.
	k := shortDigits - 1 - decade(a)
	var m float64
	switch {
	case k >= 0 && k < len(pow10):
		m = math.Round(a * pow10[k])
		if m == 0 || m/pow10[k] != a {
			return b, false
		}
	case k < 0 && -k < len(pow10):
		m = math.Round(a / pow10[-k])
		if m == 0 || m*pow10[-k] != a {
			return b, false
		}
	default:
		return b, false
	}
	// Division and multiplication are correctly rounded and m and 10^|k|
	// are exact, so f is the float64 nearest to m·10^-k.
	if f < 0 {
		b = append(b, '-')
	}
	u := uint64(m)
	if k <= 0 {
		b = strconv.AppendUint(b, u, 10)
		for ; k < 0; k++ {
			b = append(b, '0')
		}
		return b, true
	}
	for k > 0 && u%10 == 0 {
		u, k = u/10, k-1
	}
	// The digits from the right: k after the point, then at least one.
	var buf [32]byte
	i := len(buf)
	for ; k > 0; k-- {
		i--
		buf[i] = byte('0' + u%10)
		u /= 10
	}
	if i < len(buf) {
		i--
		buf[i] = '.'
	}
	for {
		i--
		buf[i] = byte('0' + u%10)
		if u /= 10; u == 0 {
			break
		}
	}
	return append(b, buf[i:]...), true
}

// pow10 are the powers of ten a float64 holds exactly.
var pow10 = [...]float64{
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
}

// decade is floor(log10 a) for a normal, positive and below 1e22, but for
// a next to a negative power of ten, where it may be one off (callers
// tolerate that). It is math.Log10's answer without its cost.
func decade(a float64) int {
	// a is in [2^(e-1), 2^e); 78913/2^18 is log10(2) rounded down, so d
	// is floor((e-1)·log10 2): 10^d ≤ a < 10^(d+2).
	e := int(math.Float64bits(a)>>52&0x7ff) - 1022
	d := (e - 1) * 78913 >> 18
	if d+1 >= 0 {
		if a >= pow10[d+1] {
			d++
		}
	} else if -(d+1) < len(pow10) && a*pow10[-(d+1)] >= 1 {
		d++
	}
	return d
}

// The graph's rates and quantiles are rounded before they are encoded:
// latencies to what the sketch measures (within 1%), rates to more than
// a dashboard shows. Shorter numbers make the answer smaller and quicker
// to write (a 5,000-edge graph has 27,000 of them); the counts stay exact.
const (
	rateDigits     = 4 // rps, errorRate: within 0.05%
	quantileDigits = 3 // p50Ms, p95Ms, p99Ms: within 0.5%
)

// roundGraph rounds g's rates and quantiles in place (see rateDigits).
func roundGraph(g *topology.Graph) {
	for i := range g.Nodes {
		n := &g.Nodes[i]
		n.RPS, n.ErrorRate = roundSig(n.RPS, rateDigits), roundSig(n.ErrorRate, rateDigits)
	}
	for i := range g.Edges {
		e := &g.Edges[i]
		e.RPS, e.ErrorRate = roundSig(e.RPS, rateDigits), roundSig(e.ErrorRate, rateDigits)
		e.P50Ms, e.P95Ms, e.P99Ms = roundSig(e.P50Ms, quantileDigits), roundSig(e.P95Ms, quantileDigits), roundSig(e.P99Ms, quantileDigits)
	}
}

// roundSig is f rounded to digits (1…15) significant digits: the float64
// nearest to that decimal, so that it is written short. f is returned as
// it is when 0, not finite, at or above 1e21, or below 1e-20 or
// 10^(digits-22), where the scale is not a power of ten a float64 holds
// exactly (no rate or latency of the store is that small).
func roundSig(f float64, digits int) float64 {
	a := math.Abs(f)
	if !(a >= 1e-20 && a < 1e21) {
		return f
	}
	var r float64
	switch k := digits - 1 - decade(a); {
	case k >= 0 && k < len(pow10):
		r = math.Round(a*pow10[k]) / pow10[k]
	case k < 0 && -k < len(pow10):
		r = math.Round(a/pow10[-k]) * pow10[-k]
	default:
		return f
	}
	return math.Copysign(r, f)
}

// appendJSONString appends s quoted. Names are nearly always plain ASCII,
// copied as they are; anything else (quotes, control characters, the
// HTML-sensitive <, > and &, non-ASCII, invalid UTF-8) goes through
// encoding/json, so the escaping is its own.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// graphJSONSize guesses the encoded size of g (≈ 240 bytes an edge
// rounded, 280 not, 90 a node), so the buffer grows once.
func graphJSONSize(g topology.Graph) int {
	return 128 + 100*len(g.Nodes) + 300*len(g.Edges)
}

// encodeGraph is g as compact JSON ending in a newline, as json.Encoder
// writes it.
func encodeGraph(g topology.Graph) ([]byte, error) {
	b, err := appendGraphJSON(make([]byte, 0, graphJSONSize(g)), g)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
