package topology

import (
	"fmt"
	"math"

	"github.com/DataDog/sketches-go/ddsketch/mapping"
)

// Latency histograms.
//
// A latency histogram is a DDSketch reduced to what the store needs: the
// sketch library's logarithmic index mapping, shared by every histogram of
// the store, over a dense array of integer counts. Any value v is counted
// under the key i = floor(log_γ v) with γ = (1+α)/(1−α), and a key is read
// back as γ^i·(1+α), which is within the relative accuracy α of every value
// of that key: the DDSketch guarantee.
//
// Because the mapping is fixed, histograms add and subtract exactly, bin by
// bin: a window's histogram is a sum of arrays, and a window that slides by
// one bucket is one addition and one subtraction (see window.go), not a
// sketch merge per bucket.

const (
	// Latencies (ms) are indexed between minLatencyMs (0.1 ns, below
	// anything a time.Duration holds) and maxLatencyMs (about 11.6 days);
	// a longer one counts as maxLatencyMs. A latency of 0 (or less) counts
	// as zero, as DDSketch's zero count does.
	minLatencyMs = 1e-7
	maxLatencyMs = 1e9
	// maxBins caps one histogram's array whatever the accuracy: beyond it,
	// the lowest latencies share the lowest key (as a collapsing-lowest
	// DDSketch store does). At the default 1% the whole range above takes
	// about 1,840 keys, so nothing collapses.
	maxBins = 1 << 14
	// growSlack is the headroom a histogram array gets when it grows, so
	// that a bucket filling up does not reallocate at every new key.
	growSlack = 16
)

// latencyMapping maps latencies (ms) to histogram keys and back.
type latencyMapping struct {
	m              *mapping.LogarithmicMapping
	minKey, maxKey int
	values         []float64 // values[k-minKey] is the value of key k
}

func newLatencyMapping(relativeAccuracy float64) latencyMapping {
	m, err := mapping.NewLogarithmicMapping(relativeAccuracy)
	if err != nil {
		panic(fmt.Sprintf("topology: latency mapping: %v", err)) // accuracy is checked in withDefaults
	}
	lm := latencyMapping{m: m, minKey: m.Index(minLatencyMs), maxKey: m.Index(maxLatencyMs)}
	if lm.maxKey-lm.minKey+1 > maxBins {
		lm.minKey = lm.maxKey - maxBins + 1
	}
	lm.values = make([]float64, lm.maxKey-lm.minKey+1)
	for i := range lm.values {
		lm.values[i] = m.Value(lm.minKey + i)
	}
	return lm
}

// key is the key of a latency in ms; ok is false when the latency counts as
// zero.
func (lm *latencyMapping) key(ms float64) (k int, ok bool) {
	if !(ms > 0) { // NaN too
		return 0, false
	}
	if ms >= maxLatencyMs {
		return lm.maxKey, true
	}
	if ms <= minLatencyMs {
		return lm.minKey, true
	}
	return min(max(lm.m.Index(ms), lm.minKey), lm.maxKey), true
}

// value is the latency (ms) a key stands for.
func (lm *latencyMapping) value(k int) float64 { return lm.values[k-lm.minKey] }

// hist counts latencies by key: bins[i] counts key lo+i. Buckets hold
// hist[uint32] (no bucket of one edge sees 4 billion requests of one key)
// and sums over buckets hist[uint64].
type hist[T uint32 | uint64] struct {
	zero uint64 // latencies of 0
	lo   int
	bins []T
}

func (h *hist[T]) hi() int { return h.lo + len(h.bins) - 1 }

// at is the count of key k.
func (h *hist[T]) at(k int) uint64 {
	if i := k - h.lo; uint(i) < uint(len(h.bins)) {
		return uint64(h.bins[i])
	}
	return 0
}

// reset empties h and keeps its array.
func (h *hist[T]) reset() {
	clear(h.bins)
	h.bins = h.bins[:0]
	h.zero = 0
}

// cover grows h's array to hold the keys [lo, hi].
func (h *hist[T]) cover(lo, hi int) {
	if len(h.bins) == 0 {
		n := hi - lo + 1
		if n <= cap(h.bins) {
			h.bins = h.bins[:n]
			clear(h.bins)
		} else {
			h.bins = make([]T, n, n+growSlack)
		}
		h.lo = lo
		return
	}
	oldHi := h.hi()
	if lo >= h.lo && hi <= oldHi {
		return
	}
	newLo, newHi := min(lo, h.lo), max(hi, oldHi)
	n, shift, old := newHi-newLo+1, h.lo-newLo, len(h.bins)
	if n <= cap(h.bins) {
		h.bins = h.bins[:n]
		if shift > 0 {
			copy(h.bins[shift:shift+old], h.bins[:old])
			clear(h.bins[:shift])
		}
		clear(h.bins[shift+old:])
	} else {
		nb := make([]T, n, n+n/2+growSlack)
		copy(nb[shift:], h.bins)
		h.bins = nb
	}
	h.lo = newLo
}

// add counts one latency of key k (ok) or of zero (!ok).
func (h *hist[T]) add(k int, ok bool) {
	if !ok {
		h.zero++
		return
	}
	h.cover(k, k)
	h.bins[k-h.lo]++
}

// addHist adds src to dst.
func addHist[S uint32 | uint64](dst *hist[uint64], src *hist[S]) {
	dst.zero += src.zero
	if len(src.bins) == 0 {
		return
	}
	dst.cover(src.lo, src.hi())
	d := dst.bins[src.lo-dst.lo:]
	d = d[:len(src.bins)]
	for i, c := range src.bins {
		d[i] += uint64(c)
	}
}

// subHist takes src, which was added to dst, away from it, and trims dst's
// empty ends. It reports false (dst then is garbage) when src holds more
// than dst does: src was not added to dst.
func subHist[S uint32 | uint64](dst *hist[uint64], src *hist[S]) bool {
	if src.zero > dst.zero {
		return false
	}
	dst.zero -= src.zero
	// Trim src's empty ends first: a bucket's array may be wider than
	// what it counts.
	s, lo := src.bins, src.lo
	for len(s) > 0 && s[0] == 0 {
		s, lo = s[1:], lo+1
	}
	for len(s) > 0 && s[len(s)-1] == 0 {
		s = s[:len(s)-1]
	}
	if len(s) == 0 {
		return true
	}
	if lo < dst.lo || lo+len(s)-1 > dst.hi() {
		return false
	}
	d := dst.bins[lo-dst.lo:]
	d = d[:len(s)]
	for i, c := range s {
		if uint64(c) > d[i] {
			return false
		}
		d[i] -= uint64(c)
	}
	b := dst.bins
	for len(b) > 0 && b[0] == 0 {
		b, dst.lo = b[1:], dst.lo+1
	}
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		// Keep the array for the next sum.
		b = dst.bins[:0]
	}
	dst.bins = b
	return true
}

// graphQuantiles are the quantiles a graph edge reports.
var graphQuantiles = [3]float64{0.5, 0.95, 0.99}

// quantiles sets out[i] to the quantile qs[i] (ascending) of the union of
// a and b (either may be nil), which hold n latencies together (n > 0). It
// answers as DDSketch's GetValueAtQuantile does: the value of the key at
// rank q·(n−1), 0 for a rank among the zeros. It walks the two arrays side
// by side (no sum is made), in runs where the same arrays cover the keys,
// with no branch on a bin's count.
func (lm *latencyMapping) quantiles(out, qs []float64, n uint64, a *hist[uint64], b *hist[uint32]) {
	var zero uint64
	var ab []uint64
	var bb []uint32
	var alo, blo int
	if a != nil {
		zero, ab, alo = zero+a.zero, a.bins, a.lo
	}
	if b != nil {
		zero, bb, blo = zero+b.zero, b.bins, b.lo
	}
	ahi, bhi := alo+len(ab)-1, blo+len(bb)-1
	w := quantileWalk{lm: lm, out: out, qs: qs, n: n, cum: zero}
	// The key at rank r is the first whose cumulative count passes r, that
	// is reaches floor(r)+1.
	for w.qi < len(qs) && zero >= w.need() {
		out[w.qi] = 0
		w.qi++
	}
	if w.qi == len(qs) {
		return
	}
	w.next = w.need()
	lo, hi := math.MaxInt, math.MinInt
	if len(ab) > 0 {
		lo, hi = alo, ahi
	}
	if len(bb) > 0 {
		lo, hi = min(lo, blo), max(hi, bhi)
	}
	for k := lo; k <= hi && w.qi < len(qs); {
		// The run from k to the next place an array starts or ends.
		end := hi
		for _, edge := range [...]int{alo - 1, ahi, blo - 1, bhi} {
			if edge >= k && edge < end {
				end = edge
			}
		}
		inA, inB := len(ab) > 0 && k >= alo && k <= ahi, len(bb) > 0 && k >= blo && k <= bhi
		switch {
		case inA && inB:
			w.both(k, ab[k-alo:end-alo+1], bb[k-blo:end-blo+1])
		case inA:
			w.one64(k, ab[k-alo:end-alo+1])
		case inB:
			w.one32(k, bb[k-blo:end-blo+1])
		}
		k = end + 1
	}
	if w.qi < len(qs) {
		// Only when a and b hold fewer than n: the highest key, as
		// DDSketch does.
		top, ok := 0, false
		for k := hi; k >= lo && !ok; k-- {
			if (k >= alo && k <= ahi && ab[k-alo] > 0) || (k >= blo && k <= bhi && bb[k-blo] > 0) {
				top, ok = k, true
			}
		}
		for ; w.qi < len(qs); w.qi++ {
			out[w.qi] = 0
			if ok {
				out[w.qi] = lm.value(top)
			}
		}
	}
}

// quantileWalk is quantiles' state: the count so far (cum), and the count
// (next) at which the next quantile (qi) is reached.
type quantileWalk struct {
	lm        *latencyMapping
	out, qs   []float64
	n         uint64
	cum, next uint64
	qi        int
}

func (w *quantileWalk) need() uint64 { return uint64(float64(w.qs[w.qi]*float64(w.n-1))) + 1 }

// reached records key k for the quantiles its count reaches; false when
// none are left.
func (w *quantileWalk) reached(k int) bool {
	for w.cum >= w.next {
		w.out[w.qi] = w.lm.value(k)
		if w.qi++; w.qi == len(w.qs) {
			return false
		}
		w.next = w.need()
	}
	return true
}

func (w *quantileWalk) one64(k int, bins []uint64) {
	for i, c := range bins {
		if w.cum += c; w.cum >= w.next && !w.reached(k+i) {
			return
		}
	}
}

func (w *quantileWalk) one32(k int, bins []uint32) {
	for i, c := range bins {
		if w.cum += uint64(c); w.cum >= w.next && !w.reached(k+i) {
			return
		}
	}
}

func (w *quantileWalk) both(k int, a []uint64, b []uint32) {
	b = b[:len(a)]
	for i, c := range a {
		if w.cum += c + uint64(b[i]); w.cum >= w.next && !w.reached(k+i) {
			return
		}
	}
}
