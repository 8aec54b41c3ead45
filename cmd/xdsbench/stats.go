package main

import (
	"bytes"
	"math"
	"os"
	"slices"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
)

// percentile is the nearest-rank percentile p (0 < p <= 100) of sorted, or 0
// for no samples. With n samples, p99 is the max as soon as n < 100.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// summary describes one series of latencies.
type summary struct {
	N                  int
	Timeouts           int
	P50, P90, P99, Max time.Duration
	Mean               time.Duration
}

func summarize(samples []time.Duration, timeouts int) summary {
	s := slices.Clone(samples)
	slices.Sort(s)
	out := summary{N: len(s), Timeouts: timeouts}
	if len(s) == 0 {
		return out
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	out.Mean = sum / time.Duration(len(s))
	out.P50 = percentile(s, 50)
	out.P90 = percentile(s, 90)
	out.P99 = percentile(s, 99)
	out.Max = s[len(s)-1]
	return out
}

// assignServices is the set of K services client c subscribes to out of S:
// (c*K + j) mod S for j < K. Consecutive clients take consecutive blocks, so
// the first ceil(S/K) clients already cover every service; with K > S a
// client takes each service once.
func assignServices(c, k, s int) []int {
	k = min(k, s)
	out := make([]int, 0, k)
	for j := range k {
		out = append(out, (c*k+j)%s)
	}
	return out
}

// procStat is a process's CPU time and memory from /proc.
type procStat struct {
	CPU   time.Duration // user + system
	RSS   int64         // VmRSS, bytes
	HWM   int64         // VmHWM (peak RSS), bytes
	Valid bool
}

// seconds turns procfs's float seconds into a Duration.
func seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

// readProcStat reads /proc/<pid>/stat and /proc/<pid>/status; pid 0 is this
// process.
func readProcStat(pid int) procStat {
	if pid <= 0 {
		pid = os.Getpid()
	}
	var st procStat
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return st
	}
	p, err := fs.Proc(pid)
	if err != nil {
		return st
	}
	stat, err := p.Stat()
	if err != nil {
		return st
	}
	st.CPU = seconds(stat.CPUTime())
	status, err := p.NewStatus()
	if err != nil {
		return st
	}
	st.RSS, st.HWM = int64(status.VmRSS), int64(status.VmHWM)
	st.Valid = true
	return st
}

// histogram is a Prometheus histogram read from a text exposition: upper
// bounds (seconds) and cumulative counts.
type histogram struct {
	Bounds []float64
	Counts []float64 // cumulative, same length as Bounds (+Inf last)
	Count  float64
	Sum    float64
}

// parseHistogram extracts the histogram name{label="value"} from a Prometheus
// text exposition; it is empty if the text does not parse or has no such
// series.
func parseHistogram(text []byte, name, label, value string) histogram {
	var h histogram
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return h
	}
	for _, m := range families[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() != label || l.GetValue() != value {
				continue
			}
			ph := m.GetHistogram()
			for _, b := range ph.GetBucket() {
				h.Bounds = append(h.Bounds, b.GetUpperBound())
				h.Counts = append(h.Counts, float64(b.GetCumulativeCount()))
			}
			h.Count, h.Sum = float64(ph.GetSampleCount()), ph.GetSampleSum()
			return h
		}
	}
	return h
}

// sub is h minus an earlier reading of the same histogram.
func (h histogram) sub(before histogram) histogram {
	out := histogram{Bounds: h.Bounds, Counts: slices.Clone(h.Counts), Count: h.Count - before.Count, Sum: h.Sum - before.Sum}
	if len(before.Counts) == len(h.Counts) {
		for i := range out.Counts {
			out.Counts[i] -= before.Counts[i]
		}
	}
	return out
}

// quantile is the upper bound of the bucket that holds quantile q (0..1):
// an upper estimate, as coarse as the buckets.
func (h histogram) quantile(q float64) (float64, bool) {
	if h.Count <= 0 || len(h.Counts) == 0 {
		return 0, false
	}
	want := q * h.Count
	for i, c := range h.Counts {
		if c >= want {
			return h.Bounds[i], true
		}
	}
	return math.Inf(1), true
}

// machineStat is the whole machine's CPU time from /proc/stat and the CPU
// pressure stall total from /proc/pressure/cpu.
type machineStat struct {
	Busy  time.Duration // user+nice+system+irq+softirq+steal, summed over CPUs
	Total time.Duration // Busy + idle + iowait
	Steal time.Duration
	// Stall is how long at least one runnable task waited for a CPU
	// (PSI "some"); 0 when the kernel has no PSI.
	Stall time.Duration
	Valid bool
}

func readMachineStat() machineStat {
	var m machineStat
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return m
	}
	if st, err := fs.Stat(); err == nil {
		c := st.CPUTotal
		m.Busy = seconds(c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal)
		m.Total = m.Busy + seconds(c.Idle+c.Iowait)
		m.Steal = seconds(c.Steal)
		m.Valid = true
	}
	if psi, err := fs.PSIStatsForResource("cpu"); err == nil && psi.Some != nil {
		m.Stall = time.Duration(psi.Some.Total) * time.Microsecond
	}
	return m
}
