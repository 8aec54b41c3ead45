package consul

import "time"

// backoff is the delay before retry number attempt (1 for the first retry):
// a uniformly random duration in [lo, min(hi, lo·2^(attempt-1))], that is
// exponential growth with full jitter above the floor lo. rnd(n) must return
// a value in [0, n).
func backoff(attempt int, lo, hi time.Duration, rnd func(n int64) int64) time.Duration {
	if lo <= 0 {
		lo = time.Millisecond
	}
	if hi < lo {
		hi = lo
	}
	ceil := lo
	for i := 1; i < attempt && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	if ceil == lo {
		return lo
	}
	return lo + time.Duration(rnd(int64(ceil-lo)+1))
}

// nextIndex is the wait index for the query after an answer that carried
// index got, when the previous query waited on prev, following Consul's
// blocking-query rules. An index that went backwards (backwards is true)
// resets to 0, so the next query returns at once with a fresh index; an index
// below 1 becomes 1, so a broken answer cannot make every later query return
// at once.
func nextIndex(prev, got uint64) (next uint64, backwards bool) {
	if got < prev {
		return 0, true
	}
	if got < 1 {
		return 1, false
	}
	return got, false
}

// spreadWait picks a blocking query's wait uniformly in [wait/2, wait], so
// that watches started together do not all time out together: with a
// thousand services, Consul would otherwise answer (and signalbox decode) a
// thousand unchanged results in the same few seconds, once a wait.
func spreadWait(wait time.Duration, rnd func(n int64) int64) time.Duration {
	half := wait / 2
	if half <= 0 {
		return wait
	}
	return half + time.Duration(rnd(int64(half)+1))
}
