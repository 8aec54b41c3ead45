package main

import (
	"math"
	"slices"
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

func TestParseStat(t *testing.T) {
	// The command name holds a space and a ')' to be sure fields count from the last one.
	stat := "1234 (sig (x) box) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 12 0 100 0 0\n"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3800 * time.Millisecond; cpu != want {
		t.Fatalf("cpu = %v, want %v", cpu, want)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Fatal("no error for garbage")
	}
	status := "Name:\tsignalbox\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n"
	rss, hwm := parseStatusMem([]byte(status))
	if rss != 1024*1024 || hwm != 2048*1024 {
		t.Fatalf("rss, hwm = %d, %d", rss, hwm)
	}
	// The bench's own entry parses.
	if st := readProcStat(0); !st.Valid || st.HWM <= 0 {
		t.Fatalf("readProcStat(self) = %+v", st)
	}
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

const metricsAfter = `signalbox_xds_convergence_seconds_bucket{type="cds",le="0.001"} 70
signalbox_xds_convergence_seconds_bucket{type="eds",le="0.001"} 1
signalbox_xds_convergence_seconds_bucket{type="eds",le="0.01"} 92
signalbox_xds_convergence_seconds_bucket{type="eds",le="+Inf"} 102
signalbox_xds_convergence_seconds_sum{type="eds"} 1.005
signalbox_xds_convergence_seconds_count{type="eds"} 102
`

func TestHistogram(t *testing.T) {
	before := parseHistogram([]byte(metricsBefore), "signalbox_xds_convergence_seconds", `type="eds"`)
	if before.Count != 2 || len(before.Bounds) != 3 || !math.IsInf(before.Bounds[2], 1) {
		t.Fatalf("before = %+v", before)
	}
	d := parseHistogram([]byte(metricsAfter), "signalbox_xds_convergence_seconds", `type="eds"`).sub(before)
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

func TestMachineStat(t *testing.T) {
	m := parseMachineCPU([]byte("cpu  100 5 50 800 10 3 2 40 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if !m.Valid || m.Busy != 2*time.Second || m.Total != 10100*time.Millisecond || m.Steal != 400*time.Millisecond {
		t.Fatalf("machine = %+v", m)
	}
	if parseMachineCPU([]byte("intr 1 2 3")).Valid {
		t.Fatal("valid without a cpu line")
	}
	psi := "some avg10=1.00 avg60=2.00 avg300=3.00 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"
	if got := parsePSISome([]byte(psi)); got != 2500*time.Millisecond {
		t.Fatalf("psi some = %v", got)
	}
}
