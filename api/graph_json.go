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

// graphJSONSize guesses the encoded size of g (≈ 280 bytes an edge, 90 a
// node), so the buffer grows once.
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
