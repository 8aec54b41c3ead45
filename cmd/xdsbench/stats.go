package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
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

// clockTick is USER_HZ; 100 on every Linux this runs on.
const clockTick = 100

func readProcStat(pid int) procStat {
	name := "self"
	if pid > 0 {
		name = strconv.Itoa(pid)
	}
	var st procStat
	data, err := os.ReadFile("/proc/" + name + "/stat")
	if err != nil {
		return st
	}
	cpu, err := parseStatCPU(data)
	if err != nil {
		return st
	}
	st.CPU = cpu
	status, err := os.ReadFile("/proc/" + name + "/status")
	if err != nil {
		return st
	}
	st.RSS, st.HWM = parseStatusMem(status)
	st.Valid = true
	return st
}

// parseStatCPU reads utime+stime (fields 14 and 15) of /proc/<pid>/stat. The
// command name (field 2) may hold spaces, so fields count from its ')'.
func parseStatCPU(data []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("no ')' in stat")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime is field 14 → f[11], stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat has %d fields after the name", len(f))
	}
	ut, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	stime, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return time.Duration(ut+stime) * time.Second / clockTick, nil
}

// parseStatusMem reads VmRSS and VmHWM (kB) of /proc/<pid>/status, in bytes.
func parseStatusMem(data []byte) (rss, hwm int64) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				*dst = v * 1024
			}
		}
	}
	return rss, hwm
}

// histogram is a Prometheus histogram read from a text exposition: upper
// bounds (seconds) and cumulative counts.
type histogram struct {
	Bounds []float64
	Counts []float64 // cumulative, same length as Bounds (+Inf last)
	Count  float64
	Sum    float64
}

// parseHistogram extracts the histogram name{labels...} from a Prometheus text
// exposition, keeping only series whose label set contains every label in
// match (written as `key="value"`).
func parseHistogram(text []byte, name string, match ...string) histogram {
	var h histogram
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		ok := true
		for _, m := range match {
			if !strings.Contains(rest, m) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		sp := strings.LastIndexByte(rest, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(rest[sp+1:], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(rest, "_bucket{"):
			i := strings.Index(rest, `le="`)
			if i < 0 {
				continue
			}
			j := strings.IndexByte(rest[i+4:], '"')
			if j < 0 {
				continue
			}
			le, err := strconv.ParseFloat(rest[i+4:i+4+j], 64)
			if err != nil {
				continue
			}
			h.Bounds = append(h.Bounds, le)
			h.Counts = append(h.Counts, v)
		case strings.HasPrefix(rest, "_count"):
			h.Count = v
		case strings.HasPrefix(rest, "_sum"):
			h.Sum = v
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
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		m = parseMachineCPU(data)
	}
	if data, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		m.Stall = parsePSISome(data)
	}
	return m
}

// parseMachineCPU reads the aggregate "cpu" line of /proc/stat.
func parseMachineCPU(data []byte) machineStat {
	var m machineStat
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return m
	}
	v := make([]int64, 8)
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return m
		}
		v[i] = n
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }
	user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
	m.Busy = tick(user + nice + system + irq + softirq + steal)
	m.Total = m.Busy + tick(idle+iowait)
	m.Steal = tick(steal)
	m.Valid = true
	return m
}

// parsePSISome reads the "some ... total=<µs>" line of /proc/pressure/cpu.
func parsePSISome(data []byte) time.Duration {
	for line := range strings.SplitSeq(string(data), "\n") {
		if !strings.HasPrefix(line, "some ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err == nil {
					return time.Duration(n) * time.Microsecond
				}
			}
		}
	}
	return 0
}
