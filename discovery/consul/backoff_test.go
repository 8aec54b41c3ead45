package consul

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 10 * time.Second
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	tests := []struct {
		attempt int
		wantMax time.Duration
	}{
		{0, lo}, {1, lo}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond},
		{7, 6400 * time.Millisecond}, {8, hi}, {100, hi}, {1 << 30, hi},
	}
	for _, tt := range tests {
		if got := backoff(tt.attempt, lo, hi, lowest); got != lo {
			t.Errorf("attempt %d, lowest draw: %v, want %v", tt.attempt, got, lo)
		}
		if got := backoff(tt.attempt, lo, hi, highest); got != tt.wantMax {
			t.Errorf("attempt %d, highest draw: %v, want %v", tt.attempt, got, tt.wantMax)
		}
		for range 200 {
			if got := backoff(tt.attempt, lo, hi, rand.Int64N); got < lo || got > tt.wantMax {
				t.Fatalf("attempt %d: %v outside [%v, %v]", tt.attempt, got, lo, tt.wantMax)
			}
		}
	}
}

func TestBackoffDegenerateBounds(t *testing.T) {
	if got := backoff(5, 0, 0, rand.Int64N); got != time.Millisecond {
		t.Errorf("zero bounds: %v, want 1ms floor", got)
	}
	if got := backoff(5, time.Second, time.Millisecond, rand.Int64N); got != time.Second {
		t.Errorf("max below min: %v, want min", got)
	}
}

func TestBackoffJitters(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[backoff(6, 100*time.Millisecond, 10*time.Second, rand.Int64N)] = true
	}
	if len(seen) < 10 {
		t.Errorf("only %d distinct delays in 100 draws: no jitter", len(seen))
	}
}

func TestNextIndex(t *testing.T) {
	tests := []struct {
		prev, got, want uint64
		backwards       bool
	}{
		{0, 0, 1, false},    // first answer with a broken index
		{0, 42, 42, false},  // first answer
		{42, 42, 42, false}, // wait timed out
		{42, 50, 50, false}, // change
		{50, 10, 0, true},   // went backwards: reset
		{50, 0, 0, true},    // backwards to 0: reset, the next answer fixes it
		{1, 0, 0, true},
	}
	for _, tt := range tests {
		got, backwards := nextIndex(tt.prev, tt.got)
		if got != tt.want || backwards != tt.backwards {
			t.Errorf("nextIndex(%d, %d) = %d, %v; want %d, %v", tt.prev, tt.got, got, backwards, tt.want, tt.backwards)
		}
	}
}

func TestSpreadWait(t *testing.T) {
	wait := 60 * time.Second
	if got := spreadWait(wait, func(int64) int64 { return 0 }); got != 30*time.Second {
		t.Fatalf("lowest pick %v, want 30s", got)
	}
	if got := spreadWait(wait, func(n int64) int64 { return n - 1 }); got != wait {
		t.Fatalf("highest pick %v, want %v", got, wait)
	}
	if got := spreadWait(time.Nanosecond, func(int64) int64 { return 0 }); got != time.Nanosecond {
		t.Fatalf("tiny wait %v", got)
	}
}
