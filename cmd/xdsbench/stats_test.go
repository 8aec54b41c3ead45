package main

import (
	"math"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3), 50, 2 * time.Millisecond},
		{"median of even is the lower", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 60 is the max", ms(hundred[:60]...), 99, 60 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100", ms(hundred...), 100, 100 * time.Millisecond},
		{"tiny p is the min", ms(hundred...), 0.001, time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: percentile(p%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestSummarizeDoesNotReorderInput(t *testing.T) {
	in := []time.Duration{30, 10, 20}
	s := summarize(in, 2)
	if !slices.Equal(in, []time.Duration{30, 10, 20}) {
		t.Fatalf("input reordered: %v", in)
	}
	if s.N != 3 || s.Timeouts != 2 || s.P50 != 20 || s.Max != 30 || s.Mean != 20 {
		t.Fatalf("summary = %+v", s)
	}
	if z := summarize(nil, 1); z.N != 0 || z.P99 != 0 || z.Timeouts != 1 {
		t.Fatalf("empty summary = %+v", z)
	}
}

func TestAssignServices(t *testing.T) {
	if got := assignServices(3, 4, 10); !slices.Equal(got, []int{2, 3, 4, 5}) {
		t.Fatalf("assignServices(3, 4, 10) = %v", got)
	}
	// The goal scale: every service has the same number of subscribers.
	count := map[int]int{}
	for c := range 2000 {
		got := assignServices(c, 10, 1000)
		if len(got) != 10 {
			t.Fatalf("client %d: %d services", c, len(got))
		}
		seen := map[int]bool{}
		for _, s := range got {
			if s < 0 || s >= 1000 || seen[s] {
				t.Fatalf("client %d: bad or repeated service in %v", c, got)
			}
			seen[s] = true
			count[s]++
		}
	}
	for s := range 1000 {
		if count[s] != 20 {
			t.Fatalf("service %d has %d subscribers, want 20", s, count[s])
		}
	}
	// The first ceil(S/K) clients cover everything (the Consul peer's share).
	covered := map[int]bool{}
	for c := range 100 {
		for _, s := range assignServices(c, 10, 1000) {
			covered[s] = true
		}
	}
	if len(covered) != 1000 {
		t.Fatalf("100 clients cover %d services, want 1000", len(covered))
	}
	// K larger than S: each service once.
	if got := assignServices(1, 5, 3); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("assignServices(1, 5, 3) = %v", got)
	}
}

func TestReadProcAndMachineStat(t *testing.T) {
	// Burn enough CPU that the 10 ms clock ticks of /proc/<pid>/stat cannot
	// hide a unit error, then check it against getrusage's microseconds.
	for rusageCPU(t) < 200*time.Millisecond {
	}
	lo := rusageCPU(t)
	st := readProcStat(0)
	hi := rusageCPU(t)
	// utime and stime are each rounded down to a tick.
	if !st.Valid || st.CPU < lo-30*time.Millisecond || st.CPU > hi {
		t.Fatalf("readProcStat(self) = %+v; getrusage says %v..%v", st, lo, hi)
	}
	if st.RSS <= 0 || st.HWM < st.RSS {
		t.Fatalf("readProcStat(self): RSS %d, peak %d", st.RSS, st.HWM)
	}
	if me := readProcStat(os.Getpid()); !me.Valid || me.CPU < st.CPU {
		t.Fatalf("readProcStat(%d) = %+v, after %+v", os.Getpid(), me, st)
	}
	if gone := readProcStat(1 << 30); gone.Valid {
		t.Fatalf("readProcStat of a pid beyond pid_max = %+v", gone)
	}

	m := readMachineStat()
	if !m.Valid || m.Busy < hi || m.Total < m.Busy || m.Steal > m.Busy {
		t.Fatalf("machine = %+v, this process alone used %v", m, hi)
	}
	// PSI "some" is a share of wall time, so its total stays within the uptime.
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	if up := time.Duration(si.Uptime+1) * time.Second; m.Stall < 0 || m.Stall > up {
		t.Fatalf("CPU stall %v beyond the uptime %v", m.Stall, up)
	}
}

func rusageCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime))
}

const metricsBefore = `# HELP signalbox_xds_convergence_seconds x
# TYPE signalbox_xds_convergence_seconds histogram
signalbox_xds_convergence_seconds_bucket{type="cds",le="0.001"} 50
signalbox_xds_convergence_seconds_bucket{type="eds",le="0.001"} 1
signalbox_xds_convergence_seconds_bucket{type="eds",le="0.01"} 2
signalbox_xds_convergence_seconds_bucket{type="eds",le="+Inf"} 2
signalbox_xds_convergence_seconds_sum{type="eds"} 0.005
signalbox_xds_convergence_seconds_count{type="eds"} 2
`

const metricsAfter = `# HELP signalbox_xds_convergence_seconds x
# TYPE signalbox_xds_convergence_seconds histogram
signalbox_xds_convergence_seconds_bucket{type="cds",le="0.001"} 70
signalbox_xds_convergence_seconds_bucket{type="eds",le="0.001"} 1
signalbox_xds_convergence_seconds_bucket{type="eds",le="0.01"} 92
signalbox_xds_convergence_seconds_bucket{type="eds",le="+Inf"} 102
signalbox_xds_convergence_seconds_sum{type="eds"} 1.005
signalbox_xds_convergence_seconds_count{type="eds"} 102
`

func TestHistogram(t *testing.T) {
	before := parseHistogram([]byte(metricsBefore), "signalbox_xds_convergence_seconds", "type", "eds")
	if before.Count != 2 || len(before.Bounds) != 3 || !math.IsInf(before.Bounds[2], 1) {
		t.Fatalf("before = %+v", before)
	}
	d := parseHistogram([]byte(metricsAfter), "signalbox_xds_convergence_seconds", "type", "eds").sub(before)
	if d.Count != 100 || math.Abs(d.Sum-1) > 1e-9 || !slices.Equal(d.Counts, []float64{0, 90, 100}) {
		t.Fatalf("delta = %+v", d)
	}
	if q, ok := d.quantile(0.5); !ok || q != 0.01 {
		t.Fatalf("p50 = %v, %v", q, ok)
	}
	if q, _ := d.quantile(0.99); !math.IsInf(q, 1) {
		t.Fatalf("p99 = %v, want +Inf", q)
	}
	if _, ok := (histogram{}).quantile(0.5); ok {
		t.Fatal("quantile of an empty histogram")
	}
	if h := parseHistogram([]byte(metricsAfter), "signalbox_xds_convergence_seconds", "type", "lds"); h.Count != 0 || len(h.Bounds) != 0 {
		t.Fatalf("no lds series, got %+v", h)
	}
	if h := parseHistogram([]byte(metricsAfter+"broken{\n"), "signalbox_xds_convergence_seconds", "type", "eds"); h.Count != 0 {
		t.Fatalf("malformed exposition gave %+v", h)
	}
}

func TestUsesDeltaMixesKindsPerService(t *testing.T) {
	for _, tc := range []struct {
		s, k, c int
		share   float64
	}{{1000, 10, 2000, 0.5}, {20, 3, 20, 0.5}, {1000, 10, 2000, 0.25}} {
		delta := 0
		kinds := map[int][2]int{}
		for c := range tc.c {
			d := usesDelta(c, tc.s, tc.k, tc.share)
			if d {
				delta++
			}
			for _, s := range assignServices(c, tc.k, tc.s) {
				n := kinds[s]
				if d {
					n[1]++
				} else {
					n[0]++
				}
				kinds[s] = n
			}
		}
		if got, want := float64(delta)/float64(tc.c), tc.share; math.Abs(got-want) > 0.1 {
			t.Errorf("%+v: delta share %.2f, want about %.2f", tc, got, want)
		}
		for s, n := range kinds {
			if n[0] == 0 || n[1] == 0 {
				t.Errorf("%+v: service %d has %d SotW and %d delta subscribers", tc, s, n[0], n[1])
			}
		}
	}
	if usesDelta(0, 10, 1, 0) || !usesDelta(0, 10, 1, 1) {
		t.Error("share 0 or 1 not honoured")
	}
}
