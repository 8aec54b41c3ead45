// Command rolloutsim is the simulation benchmark of the release analysis
// (package rollout/analysis): how often it rolls back a candidate that is as
// good as the baseline, and how fast it catches one that is not, next to a
// Flagger-style fixed-threshold rule fed the same traffic.
//
// Each simulated second draws the service's requests from a Poisson
// distribution at the given total rate, splits them between candidate and
// baseline binomially at the candidate's share, and draws each version's
// errors binomially: the baseline at the baseline error rate, the candidate
// at that rate times the effect (1 for A/A, where any rollback is a false
// one). Every look interval both rules get the increments since their last
// look. A run ends when both rules have failed the candidate or at the
// maximum duration. Each run has its own seeded random source, so the
// results do not depend on the number of workers.
//
//	go run ./cmd/rolloutsim                       # the full benchmark (docs/benchmarks.md)
//	go run ./cmd/rolloutsim -runs 1000 -rates 200 # a quick look
//
// The Markdown table goes to stdout, progress to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/signalbox/signalbox/rollout/analysis"
)

type config struct {
	runs, detectRuns int
	rates            []float64
	effects          []float64
	share, baseError float64
	look, max        time.Duration
	seed             uint64
	workers          int
	seq              analysis.Config
	fixed            analysis.FixedConfig
	priorSpec        string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "rolloutsim:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := simulate(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "done in %v\n", time.Since(start).Round(time.Second))
	return report(stdout, cfg, args, res)
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("rolloutsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var rates, effects string
	fs.IntVar(&cfg.runs, "runs", 10000, "A/A runs per rate (the false-rollback rate)")
	fs.IntVar(&cfg.detectRuns, "detect-runs", 10000, "runs per rate and effect (the time to detect)")
	fs.StringVar(&rates, "rates", "20,200,2000", "total request rates to simulate, requests/s, comma-separated")
	fs.StringVar(&effects, "effects", "2,5", "candidate error rate multiples to detect, comma-separated")
	fs.Float64Var(&cfg.share, "share", 0.05, "the candidate's share of requests")
	fs.Float64Var(&cfg.baseError, "base-error", 0.005, "the baseline's error rate")
	fs.DurationVar(&cfg.look, "look", time.Second, "how often the rules look (whole seconds)")
	fs.DurationVar(&cfg.max, "max", 30*time.Minute, "simulated duration of a run that nothing stops")
	fs.Uint64Var(&cfg.seed, "seed", 1, "random seed; each run's source derives from it")
	fs.IntVar(&cfg.workers, "workers", runtime.GOMAXPROCS(0), "simulating goroutines")
	fs.Float64Var(&cfg.seq.Alpha, "alpha", analysis.DefaultAlpha, "sequential test: false-rollback rate")
	fs.Uint64Var(&cfg.seq.MinRequests, "min-requests", analysis.DefaultMinRequests, "sequential test: candidate requests before a Continue")
	fs.StringVar(&cfg.priorSpec, "prior", "", "sequential test: prior as low:high:points:median:sigma (see analysis.GridPrior); empty for the default")
	fs.DurationVar(&cfg.fixed.Window, "fixed-window", time.Minute, "fixed rule: check window")
	fs.Float64Var(&cfg.fixed.MinSuccessRate, "fixed-min-success", 0.99, "fixed rule: a window below this success rate is a failed check")
	fs.Uint64Var(&cfg.fixed.MinRequests, "fixed-min-requests", 1, "fixed rule: windows with fewer candidate requests are not checked")
	fs.IntVar(&cfg.fixed.Threshold, "fixed-threshold", 1, "fixed rule: failed checks before rollback")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q: all settings are flags", fs.Args())
	}
	var errs []error
	var err error
	if cfg.rates, err = parseList(rates); err != nil {
		errs = append(errs, fmt.Errorf("-rates: %w", err))
	}
	if cfg.effects, err = parseList(effects); err != nil {
		errs = append(errs, fmt.Errorf("-effects: %w", err))
	}
	if cfg.runs < 1 || cfg.detectRuns < 0 {
		errs = append(errs, fmt.Errorf("-runs %d, -detect-runs %d: want at least 1 A/A run and no negative count", cfg.runs, cfg.detectRuns))
	}
	if !(cfg.share > 0 && cfg.share < 1) {
		errs = append(errs, fmt.Errorf("-share %v: want a share between 0 and 1", cfg.share))
	}
	if !(cfg.baseError >= 0 && cfg.baseError <= 1) {
		errs = append(errs, fmt.Errorf("-base-error %v: want a rate from 0 to 1", cfg.baseError))
	}
	if cfg.look < time.Second || cfg.look%time.Second != 0 {
		errs = append(errs, fmt.Errorf("-look %v: want whole seconds, at least 1s", cfg.look))
	}
	if cfg.max < cfg.look {
		errs = append(errs, fmt.Errorf("-max %v: want at least one look (%v)", cfg.max, cfg.look))
	}
	if cfg.workers < 1 {
		errs = append(errs, fmt.Errorf("-workers %d: want at least 1", cfg.workers))
	}
	if cfg.priorSpec != "" {
		if cfg.seq.Prior, err = parsePrior(cfg.priorSpec); err != nil {
			errs = append(errs, fmt.Errorf("-prior: %w", err))
		}
	}
	cfg.seq = cfg.seq.WithDefaults()
	if err := cfg.seq.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("sequential test: %w", err))
	}
	cfg.fixed = cfg.fixed.WithDefaults()
	if err := cfg.fixed.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("fixed rule: %w", err))
	}
	return cfg, errors.Join(errs...)
}

func parseList(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v > 0) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%q: want positive numbers separated by commas", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func parsePrior(s string) ([]analysis.PriorPoint, error) {
	f := strings.Split(s, ":")
	if len(f) != 5 {
		return nil, fmt.Errorf("%q: want low:high:points:median:sigma, e.g. 1.25:50:24:4:1", s)
	}
	var v [5]float64
	for i, x := range f {
		var err error
		if v[i], err = strconv.ParseFloat(x, 64); err != nil {
			return nil, fmt.Errorf("%q: field %d: %w", s, i+1, err)
		}
	}
	p := analysis.GridPrior(v[0], v[1], int(v[2]), v[3], v[4])
	if p == nil {
		return nil, fmt.Errorf("%q: not a valid prior: want 1 < low ≤ high, 1 to 1000 points, median and sigma above 0", s)
	}
	return p, nil
}

// scenario is one rate and one effect (1 for A/A).
type scenario struct {
	rate, effect float64
	runs         int
}

// outcome is when each rule failed the candidate in one run, in simulated
// seconds; +Inf when it did not within the maximum duration.
type outcome struct{ seq, fixed float64 }

func scenarios(cfg config) []scenario {
	var out []scenario
	for _, r := range cfg.rates {
		out = append(out, scenario{rate: r, effect: 1, runs: cfg.runs})
		for _, e := range cfg.effects {
			if cfg.detectRuns > 0 {
				out = append(out, scenario{rate: r, effect: e, runs: cfg.detectRuns})
			}
		}
	}
	return out
}

// simulate runs every scenario on cfg.workers goroutines and returns the
// outcomes per scenario, indexed by run.
func simulate(ctx context.Context, cfg config, progress io.Writer) ([][]outcome, error) {
	scs := scenarios(cfg)
	res := make([][]outcome, len(scs))
	type job struct{ sc, from, to int }
	const chunk = 50
	var jobs []job
	total := 0
	for i, sc := range scs {
		res[i] = make([]outcome, sc.runs)
		total += sc.runs
		for from := 0; from < sc.runs; from += chunk {
			jobs = append(jobs, job{i, from, min(from+chunk, sc.runs)})
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobc := make(chan job)
	donec := make(chan int)
	errc := make(chan error, cfg.workers)
	var wg sync.WaitGroup
	for range cfg.workers {
		wg.Go(func() {
			for j := range jobc {
				for r := j.from; r < j.to; r++ {
					o, err := simulateRun(cfg, scs[j.sc], j.sc, r)
					if err != nil {
						errc <- fmt.Errorf("rate %g, effect %g, run %d: %w", scs[j.sc].rate, scs[j.sc].effect, r, err)
						cancel() // stops the feeder; the other workers drain and end
						return
					}
					res[j.sc][r] = o // each run owns its slot
				}
				donec <- j.to - j.from
			}
		})
	}
	go func() {
		defer close(jobc)
		for _, j := range jobs {
			select {
			case jobc <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(donec) }()
	done, next := 0, total/20
	for n := range donec {
		done += n
		if done >= next {
			fmt.Fprintf(progress, "%d of %d runs (%d%%)\n", done, total, 100*done/total)
			next += total / 20
		}
	}
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("simulation interrupted after %d of %d runs: %w", done, total, err)
	}
	return res, nil
}

// simulateRun simulates one run of a scenario with its own random source.
func simulateRun(cfg config, sc scenario, scIndex, run int) (outcome, error) {
	src := rand.NewPCG(cfg.seed, uint64(scIndex)<<32|uint64(run))
	pois := distuv.Poisson{Lambda: sc.rate, Src: src}
	binom := func(n, p float64) uint64 {
		if n == 0 || p == 0 {
			return 0
		}
		return uint64(distuv.Binomial{N: n, P: p, Src: src}.Rand())
	}
	candError := min(1, cfg.baseError*sc.effect)
	lookEvery := int(cfg.look / time.Second)
	seconds := int(cfg.max / time.Second)

	o := outcome{seq: math.Inf(1), fixed: math.Inf(1)}
	var seq analysis.State
	var fixed analysis.FixedState
	var inc analysis.Increment
	for t := 1; t <= seconds; t++ {
		total := pois.Rand()
		n1 := binom(total, cfg.share)
		n0 := uint64(total) - n1
		inc.Baseline.Requests += n0
		inc.Candidate.Requests += n1
		inc.Baseline.Errors += binom(float64(n0), cfg.baseError)
		inc.Candidate.Errors += binom(float64(n1), candError)
		if t%lookEvery != 0 {
			continue
		}
		if math.IsInf(o.seq, 1) {
			var d analysis.Decision
			var err error
			if seq, d, err = analysis.Step(seq, inc, cfg.seq); err != nil {
				return o, fmt.Errorf("sequential test at %d s: %w", t, err)
			}
			if d.Verdict == analysis.Fail {
				o.seq = float64(t)
			}
		}
		if math.IsInf(o.fixed, 1) {
			var d analysis.FixedDecision
			var err error
			if fixed, d, err = analysis.StepFixed(fixed, inc, cfg.look, cfg.fixed); err != nil {
				return o, fmt.Errorf("fixed rule at %d s: %w", t, err)
			}
			if d.Verdict == analysis.Fail {
				o.fixed = float64(t)
			}
		}
		if !math.IsInf(o.seq, 1) && !math.IsInf(o.fixed, 1) {
			break
		}
		inc = analysis.Increment{}
	}
	return o, nil
}

// report writes the Markdown table.
func report(w io.Writer, cfg config, args []string, res [][]outcome) error {
	scs := scenarios(cfg)
	var b strings.Builder
	fmt.Fprintf(&b, "Command: `go run ./cmd/rolloutsim")
	for _, a := range args {
		fmt.Fprintf(&b, " %s", a)
	}
	fmt.Fprintf(&b, "` (seed %d)\n\n", cfg.seed)
	fmt.Fprintf(&b, "Candidate share %g%%, baseline error rate %g%%, a look every %v, runs of at most %v. ",
		100*cfg.share, 100*cfg.baseError, cfg.look, cfg.max)
	fmt.Fprintf(&b, "Sequential: α %g, %s. ", cfg.seq.Alpha, priorText(cfg))
	fmt.Fprintf(&b, "Fixed: success rate < %g%% over a %v window (windows with < %d candidate requests unchecked), rollback after %d failed check(s).\n\n",
		100*cfg.fixed.MinSuccessRate, cfg.fixed.Window, cfg.fixed.MinRequests, cfg.fixed.Threshold)

	b.WriteString("| total rps | rule | A/A false rollbacks (95% CI) |")
	for _, e := range cfg.effects {
		fmt.Fprintf(&b, " %g× median | %g× p90 | %g× undetected |", e, e, e)
	}
	b.WriteString("\n|---:|---|---|")
	for range cfg.effects {
		b.WriteString("---:|---:|---:|")
	}
	b.WriteString("\n")
	for _, rate := range cfg.rates {
		for _, rule := range []struct {
			name string
			get  func(outcome) float64
		}{
			{"sequential", func(o outcome) float64 { return o.seq }},
			{"fixed 99%/1m", func(o outcome) float64 { return o.fixed }},
		} {
			fmt.Fprintf(&b, "| %g | %s |", rate, rule.name)
			for i, sc := range scs {
				if sc.rate != rate {
					continue
				}
				times := make([]float64, len(res[i]))
				for r, o := range res[i] {
					times[r] = rule.get(o)
				}
				slices.Sort(times)
				failed := len(times) - countInf(times)
				if sc.effect == 1 {
					lo, hi := clopperPearson(failed, len(times))
					fmt.Fprintf(&b, " %d/%d = %.2f%% (%.2f–%.2f%%) |", failed, len(times), 100*float64(failed)/float64(len(times)), 100*lo, 100*hi)
					continue
				}
				fmt.Fprintf(&b, " %s | %s | %.1f%% |",
					seconds(stat.Quantile(0.5, stat.Empirical, times, nil), cfg.max),
					seconds(stat.Quantile(0.9, stat.Empirical, times, nil), cfg.max),
					100*float64(countInf(times))/float64(len(times)))
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\nTimes are simulated time from the start of the analysis to the rollback; a quantile that falls among the undetected runs shows as > the maximum duration.\n")
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func priorText(cfg config) string {
	if cfg.priorSpec == "" {
		return "default prior (analysis.DefaultPrior)"
	}
	return "prior " + cfg.priorSpec + " (low:high:points:median:sigma)"
}

func countInf(v []float64) int {
	n := 0
	for _, x := range v {
		if math.IsInf(x, 1) {
			n++
		}
	}
	return n
}

// clopperPearson is the exact two-sided 95% interval of a binomial
// proportion k/n, from Beta quantiles.
func clopperPearson(k, n int) (lo, hi float64) {
	const a = 0.05
	lo, hi = 0, 1
	if k > 0 {
		lo = distuv.Beta{Alpha: float64(k), Beta: float64(n - k + 1)}.Quantile(a / 2)
	}
	if k < n {
		hi = distuv.Beta{Alpha: float64(k + 1), Beta: float64(n - k)}.Quantile(1 - a/2)
	}
	return lo, hi
}

func seconds(s float64, max time.Duration) string {
	switch {
	case math.IsInf(s, 1):
		return "> " + max.String()
	case s < 120:
		return fmt.Sprintf("%.0f s", s)
	default:
		return fmt.Sprintf("%.1f min", s/60)
	}
}
