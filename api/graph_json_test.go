package api

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signalbox/signalbox/topology"
)

// sampleGraph is a graph with every field set, and the awkward values:
// names that need escaping, tiny and huge floats, the largest counts.
func sampleGraph() topology.Graph {
	return topology.Graph{
		GeneratedAt: time.Date(2026, 11, 23, 17, 4, 5, 123456789, time.UTC),
		Window:      "5m0s",
		Nodes: []topology.GraphNode{
			{ID: "web", Service: "web", RPS: 12.5, ErrorRate: 0},
			{ID: "greeter/v2", Service: "greeter", Version: "v2", RPS: 1.0 / 3, ErrorRate: 0.0000004},
			{ID: `we"ird<&>\name`, Service: "ünïcode\x01\u2028", Version: "\xff", RPS: 1e21, ErrorRate: 1},
		},
		Edges: []topology.GraphEdge{
			{
				Source: "web", Target: "greeter/v2", Protocol: topology.GRPC, Requests: math.MaxUint64, Errors: 7, Bytes: 1 << 40,
				RPS: 0.016666666666666666, ErrorRate: 1e-7, ByClass: topology.ClassCounts{C2xx: 1, C3xx: 2, C4xx: 3, C5xx: 4, ConnFailure: 5},
				P50Ms: 1.5, P95Ms: 123456789.125, P99Ms: 5e-324,
			},
			{Source: "a", Target: "b", Protocol: topology.TCP, P99Ms: math.Copysign(0, -1)},
		},
	}
}

func TestEncodeGraphIsEncodingJSON(t *testing.T) {
	for name, g := range map[string]topology.Graph{
		"every field":  sampleGraph(),
		"empty":        {},
		"empty slices": {Nodes: []topology.GraphNode{}, Edges: []topology.GraphEdge{}},
	} {
		t.Run(name, func(t *testing.T) {
			checkGraphEncoding(t, g)
		})
	}
}

func TestEncodeGraphRefusesNaN(t *testing.T) {
	g := sampleGraph()
	g.Edges[1].P99Ms = math.NaN()
	_, err := encodeGraph(g)
	if err == nil || !strings.Contains(err.Error(), "edge a -> b: p99Ms: NaN is not a JSON number") {
		t.Fatalf("err = %v, want it to name the edge and the field", err)
	}
	g = sampleGraph()
	g.Nodes[0].RPS = math.Inf(1)
	if _, err := encodeGraph(g); err == nil || !strings.Contains(err.Error(), "node web: rps") {
		t.Fatalf("err = %v, want it to name the node and the field", err)
	}
}

// checkGraphEncoding holds encodeGraph to json.Encoder's bytes.
func checkGraphEncoding(t *testing.T, g topology.Graph) {
	t.Helper()
	var want bytes.Buffer
	wantErr := json.NewEncoder(&want).Encode(g)
	got, err := encodeGraph(g)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("error %v, encoding/json's %v", err, wantErr)
	}
	if err == nil && !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("encoded\n%s\nencoding/json\n%s", got, want.Bytes())
	}
}

// FuzzEncodeGraph: for any names and numbers, the hand-written encoder
// writes what encoding/json writes (or fails where it fails).
func FuzzEncodeGraph(f *testing.F) {
	f.Add("web", "greeter", "v1", 1.5, 0.25, uint64(10), uint64(1), 12.75, int64(1700000000123456789))
	f.Add(`a"b\c`, "<x>&", "\xff\xfe", 1e-7, 1e21, uint64(math.MaxUint64), uint64(0), math.Inf(-1), int64(0))
	f.Add("\u2028\u2029", "\x00\x1f", "ü", 5e-324, math.Copysign(0, -1), uint64(3), uint64(2), math.NaN(), int64(-62135596800000000))
	f.Fuzz(func(t *testing.T, src, dst, version string, rps, rate float64, requests, errors uint64, p99 float64, unixNano int64) {
		g := topology.Graph{
			GeneratedAt: time.Unix(0, unixNano).UTC(),
			Window:      version,
			Nodes:       []topology.GraphNode{{ID: src, Service: dst, Version: version, RPS: rps, ErrorRate: rate}},
			Edges: []topology.GraphEdge{{
				Source: src, Target: dst, Protocol: topology.Protocol(version), Requests: requests, Errors: errors, Bytes: requests ^ errors,
				RPS: rps, ErrorRate: rate, ByClass: topology.ClassCounts{C2xx: requests, C5xx: errors}, P50Ms: rps / 3, P95Ms: rate * 1e20, P99Ms: p99,
			}},
		}
		checkGraphEncoding(t, g)
		// And as served: rounded, so written by appendShortFloat.
		roundGraph(&g)
		checkGraphEncoding(t, g)
	})
}

// FuzzRoundedFloat: a number rounded to 1…15 significant digits is within
// half a unit of its last digit, and appendJSONFloat writes it (and the
// number as it was) as encoding/json does.
func FuzzRoundedFloat(f *testing.F) {
	for _, v := range []float64{0.3, 1.5, 12.75, 1 / 3.0, 9.9996, 99.95, 1e-6, 9.99999e-7, 1e21, 123456789, 0.001, 1e-3 * (1 - 1e-16), 2e-20, -4.56} {
		f.Add(v, uint8(3))
	}
	f.Fuzz(func(t *testing.T, v float64, digits uint8) {
		n := 1 + int(digits)%15
		checkFloat(t, v)
		r := roundSig(v, n)
		checkFloat(t, r)
		a := math.Abs(v)
		switch {
		case !(a >= 1e-20 && a < 1e21):
			if !(r == v || math.IsNaN(r) && math.IsNaN(v)) {
				t.Fatalf("roundSig(%v, %d) = %v, want it unchanged", v, n, r)
			}
			return
		case a < math.Pow(10, float64(n-21)) && r == v:
			// Too small to scale by a power of ten a float64 holds
			// exactly (a decade of slack: decade may misjudge by one).
			return
		}
		// Half a unit of the last digit, plus the float64 rounding of the
		// scaled value and of the answer.
		if rel, bound := math.Abs(r-v)/a, 0.5*math.Pow(10, float64(1-n))*(1+1e-9)+1e-15; rel > bound {
			t.Fatalf("roundSig(%v, %d) = %v: off by %v, more than %v", v, n, r, rel, bound)
		}
		if rr := roundSig(r, n); rr != r {
			t.Fatalf("roundSig(%v, %d) = %v, and again %v", v, n, r, rr)
		}
		if sig := significantDigits(strconv.FormatFloat(r, 'e', -1, 64)); sig > n {
			t.Fatalf("roundSig(%v, %d) = %v has %d significant digits", v, n, r, sig)
		}
	})
}

// checkFloat holds appendJSONFloat to encoding/json for one number.
func checkFloat(t *testing.T, v float64) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	got, err := appendJSONFloat(nil, v)
	if (err != nil) != (wantErr != nil) || err == nil && !bytes.Equal(got, want) {
		t.Fatalf("%v (%016x): appendJSONFloat %q %v, encoding/json %q %v", v, math.Float64bits(v), got, err, want, wantErr)
	}
}

// significantDigits counts the digits of a number in strconv's 'e' form.
func significantDigits(e string) int {
	mant, _, _ := strings.Cut(strings.TrimPrefix(e, "-"), "e")
	return len(strings.ReplaceAll(mant, ".", ""))
}

// TestShortFloats writes, as encoding/json does, the numbers a served graph
// has: every rounding to 1…4 digits of numbers across the magnitudes, and
// the powers of ten and the ends of the plain (not exponent) form.
func TestShortFloats(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for range 200000 {
		v := math.Pow(10, r.Float64()*28-22) // 1e-22 … 1e6
		if r.IntN(4) == 0 {
			v *= 1e14 // … 1e20
		}
		if r.IntN(8) == 0 {
			v = -v
		}
		checkFloat(t, v)
		for n := 1; n <= shortDigits+1; n++ {
			checkFloat(t, roundSig(v, n))
		}
	}
	for e := -25; e <= 22; e++ {
		p := math.Pow(10, float64(e))
		for _, v := range []float64{p, math.Nextafter(p, 0), math.Nextafter(p, 2*p), 9.999 * p, 9.9995 * p, 1.0005 * p} {
			checkFloat(t, v)
			checkFloat(t, roundSig(v, 3))
		}
	}
	for _, v := range []float64{1e-6, math.Nextafter(1e-6, 0), 1e21, math.Nextafter(1e21, 0), 999999999999999999999, 0, math.Copysign(0, -1), 5e-324, math.MaxFloat64} {
		checkFloat(t, v)
	}
}

func TestRoundSig(t *testing.T) {
	for _, c := range []struct {
		v      float64
		digits int
		want   float64
	}{
		{11.948839294004245, 3, 11.9},
		{0.016666666666666666, 4, 0.01667},
		{100.0 / 30, 4, 3.333},
		{9.9996, 4, 10},
		{123456.7, 3, 123000},
		{0.000012345, 3, 0.0000123},
		{-2.675, 2, -2.7},
		{0.3, 4, 0.3},
		{1, 3, 1},
		{0, 3, 0},
		{1e-21, 3, 1e-21}, // outside what it rounds
		{1e21, 3, 1e21},
	} {
		if got := roundSig(c.v, c.digits); got != c.want {
			t.Errorf("roundSig(%v, %d) = %v, want %v", c.v, c.digits, got, c.want)
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := roundSig(v, 3); !(got == v || math.IsNaN(v) && math.IsNaN(got)) {
			t.Errorf("roundSig(%v) = %v, want it unchanged", v, got)
		}
	}
}

// TestRoundGraph rounds rates and quantiles and leaves counts and names.
func TestRoundGraph(t *testing.T) {
	g := sampleGraph()
	want := sampleGraph()
	roundGraph(&g)
	want.Nodes[1].RPS, want.Nodes[1].ErrorRate = 0.3333, 0.0000004
	want.Edges[0].RPS, want.Edges[0].P95Ms = 0.01667, 123000000
	// 5e-324 is below what it rounds, and so are the rest already.
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("rounded\n%+v\nwant\n%+v", g, want)
	}
}
