package topology

// Window sums.
//
// A query over a window of n buckets ending at the current (open) bucket
// needs, per series, the sum of n buckets. Summing them at every query is
// edges × buckets work; instead each series keeps, per window length asked
// for (at most maxWindows of them), the running sum of the window's closed
// buckets, [last−n+1, last−1]. A query adds the open bucket to it. When the
// window moves on by d buckets (a bucket closed), the sum slides: the d
// buckets that left are subtracted and the d that closed are added, exactly,
// since counts and latency histograms are integers over one fixed mapping.
// A window length not kept starts from the nearest one that is, when that
// is cheaper than summing its buckets.
//
// The shard's lock guards the sums as it guards the buckets, and record
// keeps them true: an observation for a bucket a sum covers (a late one) is
// added to the sum too, and a bucket whose slot is reused for a newer one is
// taken out of the sums that cover it. So a sum always equals the buckets
// the ring holds in its span, and a query answers exactly what summing the
// buckets answers.

// maxWindows is how many window lengths a series keeps sums for (say the
// dashboard's 1m, 5m and 15m, and the release analysis's window); the least
// recently used goes first.
const maxWindows = 4

// sums are counts and latencies over some buckets.
type sums struct {
	counts        [numClasses]uint64
	errors, bytes uint64
	lat           hist[uint64]
}

func (s *sums) requests() uint64 {
	var n uint64
	for _, c := range s.counts {
		n += c
	}
	return n
}

func (s *sums) reset() {
	s.counts, s.errors, s.bytes = [numClasses]uint64{}, 0, 0
	s.lat.reset()
}

func (s *sums) addBucket(b *bucket) {
	for c := range s.counts {
		s.counts[c] += b.counts[c]
	}
	s.errors += b.errors
	s.bytes += b.bytes
	addHist(&s.lat, &b.lat)
}

// subBucket takes away a bucket that was added; false if it was not.
func (s *sums) subBucket(b *bucket) bool {
	for c := range s.counts {
		if b.counts[c] > s.counts[c] {
			return false
		}
		s.counts[c] -= b.counts[c]
	}
	if b.errors > s.errors || b.bytes > s.bytes {
		return false
	}
	s.errors -= b.errors
	s.bytes -= b.bytes
	return subHist(&s.lat, &b.lat)
}

func (s *sums) addSums(o *sums) {
	for c := range s.counts {
		s.counts[c] += o.counts[c]
	}
	s.errors += o.errors
	s.bytes += o.bytes
	addHist(&s.lat, &o.lat)
}

// window is a series' sum of the closed buckets [first, last] of a window
// of n buckets.
type window struct {
	n           int64
	valid       bool
	first, last int64
	used        uint64 // the series' query clock at the last use
	sums
}

// slot is where bucket j lives in the ring.
func (se *series) slot(j int64) *bucket {
	i := j % int64(len(se.buckets))
	if i < 0 { // before 1970
		i += int64(len(se.buckets))
	}
	return &se.buckets[i]
}

// at is bucket j, nil when the ring does not hold it.
func (se *series) at(j int64) *bucket {
	if b := se.slot(j); b.used && b.index == j {
		return b
	}
	return nil
}

// closed is the sum of the closed buckets [last−n+1, last−1] of the window
// of n buckets ending at last, nil when n is 1. It is the series' cached sum
// (the shard's lock must be held, and the result read under it).
func (se *series) closed(n, last int64) *sums {
	if n <= 1 {
		return nil
	}
	first, end := last-n+1, last-1
	se.clock++
	w := se.window(n)
	w.used = se.clock
	if w.valid && w.first == first && w.last == end {
		return &w.sums
	}
	// Get there from the nearest sum kept, when that is cheaper than
	// summing afresh: usually this window's own, a bucket or so behind; for
	// a window length not asked for lately, another length's.
	if from := se.nearest(w, first, end); from != nil {
		if from != w {
			w.copyFrom(from)
		}
		if w.move(se, first, end) {
			return &w.sums
		}
	}
	w.sums.reset()
	for j := first; j <= end; j++ {
		if b := se.at(j); b != nil {
			w.addBucket(b)
		}
	}
	w.valid, w.first, w.last = true, first, end
	return &w.sums
}

// window is the series' window of n buckets, or a new one in place of the
// least recently used.
func (se *series) window(n int64) *window {
	for i := range se.nwins {
		if se.wins[i].n == n {
			return &se.wins[i]
		}
	}
	if se.nwins < maxWindows {
		se.nwins++
		w := &se.wins[se.nwins-1]
		w.n, w.valid = n, false
		return w
	}
	w := &se.wins[0]
	for i := range se.wins {
		if se.wins[i].used < w.used {
			w = &se.wins[i]
		}
	}
	w.n, w.valid = n, false
	return w
}

// nearest is the kept sum from which w's [first, end] takes the fewest
// bucket additions and subtractions (and a copy, from another window), nil
// when none takes fewer than summing [first, end] afresh.
func (se *series) nearest(w *window, first, end int64) *window {
	var best *window
	bestCost := end - first + 1
	for i := range se.nwins {
		x := &se.wins[i]
		if !x.valid || x.last < first || x.first > end {
			continue
		}
		cost := max(first-x.first, x.first-first) + max(end-x.last, x.last-end)
		if x != w {
			cost++
		}
		if cost < bestCost {
			best, bestCost = x, cost
		}
	}
	return best
}

func (w *window) copyFrom(from *window) {
	w.counts, w.errors, w.bytes = from.counts, from.errors, from.bytes
	w.lat.reset()
	addHist(&w.lat, &from.lat)
	w.valid, w.first, w.last = true, from.first, from.last
}

// move takes w from the buckets it sums to [first, end], which overlap
// them, by subtracting the buckets that are not in [first, end] and adding
// those that were not in w. It reports false (and w is then invalid) when
// a subtraction failed.
func (w *window) move(se *series, first, end int64) bool {
	for j := w.first; j <= w.last; j++ {
		if j >= first && j <= end {
			j = end // jump past the overlap
			continue
		}
		if b := se.at(j); b != nil && !w.subBucket(b) {
			w.valid = false
			return false
		}
	}
	for j := first; j <= end; j++ {
		if j >= w.first && j <= w.last {
			j = w.last
			continue
		}
		if b := se.at(j); b != nil {
			w.addBucket(b)
		}
	}
	w.first, w.last = first, end
	return true
}

// recorded keeps the windows true after record counted an observation in
// bucket idx: a window that covers idx counts it too.
func (se *series) recorded(idx int64, class Class, failed bool, bytes uint64, k int, ok bool) {
	for i := range se.nwins {
		w := &se.wins[i]
		if !w.valid || idx < w.first || idx > w.last {
			continue
		}
		w.counts[class]++
		if failed {
			w.errors++
		}
		w.bytes += bytes
		w.lat.add(k, ok)
	}
}

// evicted takes bucket b, whose slot record is about to reuse, out of the
// windows that cover it: they hold what the ring holds. (Invalidating them
// would do too, but a window as long as the ring covers the oldest bucket
// at every bucket boundary, and would be summed afresh every time.)
func (se *series) evicted(b *bucket) {
	for i := range se.nwins {
		if w := &se.wins[i]; w.valid && b.index >= w.first && b.index <= w.last && !w.subBucket(b) {
			w.valid = false
		}
	}
}

// advance slides the series' kept sums to the windows that end at bucket
// last, when they overlap them (a sum that does not is left for the next
// query to make afresh). It does not count as a use: the LRU order of the
// windows is the queries'.
func (se *series) advance(last int64) {
	for i := range se.nwins {
		w := &se.wins[i]
		if !w.valid || w.n <= 1 {
			continue
		}
		first, end := last-w.n+1, last-1
		if w.last >= end || w.last < first {
			continue
		}
		w.move(se, first, end)
	}
}
