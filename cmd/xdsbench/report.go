package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// Goals from issue 2, at S=1000, I=10, C=2000, K=10 on the 2-core machine.
const (
	goalP50 = 25 * time.Millisecond
	goalP99 = 100 * time.Millisecond
	goalRSS = 1 << 30
)

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func meanInt(v []int) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0
	for _, x := range v {
		s += x
	}
	return float64(s) / float64(len(v))
}

func (b *bench) report() string {
	cfg, r := b.cfg, &b.rec
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }

	host, _ := os.Hostname()
	p("\n### xdsbench run %s\n\n", b.start.Format("2006-01-02 15:04:05 MST"))
	p("`%s` (signalbox: %s)\n\n", commandLine(), strings.ReplaceAll(r.sbVersion, "\n", "; "))
	p("S=%d services × I=%d instances; C=%d signalbox clients (%d SotW, %d delta) × K=%d services; Consul peer: %v (%d clients × K=%d upstreams); N=%d changes (pairs: critical, then passing again), gap %v. Host %s, %d CPUs, %s.\n\n",
		cfg.services, cfg.instances, cfg.clients, len(b.fleet.clientsOf(sbSotW)), len(b.fleet.clientsOf(sbDelta)), cfg.perClient,
		cfg.consulPeer, cfg.peerClients, cfg.perClient, r.changes, cfg.gap, host, runtime.NumCPU(), runtime.Version())

	p("Time from the Consul write (just before PUT /v1/catalog/register) to the **last** subscribed client holding an EDS that reflects it, in ms:\n\n")
	p("| system | subscribers per change | changes | timeouts | p50 | p90 | p99 | max | mean | first client p50 |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	row := func(name string, subs float64, s summary, first []time.Duration) {
		f := "–"
		if first != nil {
			f = ms(summarize(first, 0).P50)
		}
		p("| %s | %.1f | %d | %d | %s | %s | %s | %s | %s | %s |\n", name, subs, s.N, s.Timeouts, ms(s.P50), ms(s.P90), ms(s.P99), ms(s.Max), ms(s.Mean), f)
	}
	var sums [numKinds]summary
	for k := range numKinds {
		sums[k] = summarize(r.lastBy[k], r.timeouts[k])
	}
	row("signalbox SotW", meanInt(r.subsBy[sbSotW]), sums[sbSotW], r.firstBy[sbSotW])
	row("signalbox delta", meanInt(r.subsBy[sbDelta]), sums[sbDelta], r.firstBy[sbDelta])
	all := summarize(r.sbAll, r.sbAllTO)
	row("**signalbox, all clients**", meanInt(r.subsBy[sbSotW])+meanInt(r.subsBy[sbDelta]), all, nil)
	if cfg.consulPeer {
		row("Consul built-in xDS (delta)", meanInt(r.subsBy[consulDelta]), sums[consulDelta], r.firstBy[consulDelta])
	}
	p("\n")
	if cfg.consulPeer && all.N > 0 && sums[consulDelta].N > 0 {
		c := sums[consulDelta]
		p("Consul ÷ signalbox: p50 %.1f×, p99 %.1f× (signalbox is that many times faster).\n\n",
			float64(c.P50)/float64(all.P50), float64(c.P99)/float64(all.P99))
	}

	peak := r.sbCPU[2].HWM
	p("Goal at S=1000, I=10, C=2000, K=10: p50 ≤ %s ms (%s: %s), p99 ≤ %s ms (%s: %s), peak RSS ≤ 1 GiB (%s: %s).\n\n",
		ms(goalP50), ms(all.P50), pass(all.N > 0 && all.P50 <= goalP50),
		ms(goalP99), ms(all.P99), pass(all.N > 0 && all.P99 <= goalP99 && all.Timeouts == 0),
		mib(peak), pass(peak > 0 && peak <= goalRSS))

	p("Where signalbox's time goes (ms):\n\n")
	p("| leg | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|\n")
	leg := func(name string, s summary) {
		p("| %s | %s | %s | %s | %s |\n", name, ms(s.P50), ms(s.P90), ms(s.P99), ms(s.Max))
	}
	leg("write → PUT returns (raft commit)", summarize(r.writeRTT, 0))
	if len(r.probe) > 0 {
		leg("write → a blocking query on /v1/health/service/<svc> returns", summarize(r.probe, r.probeErrs))
	}
	var sbFirst []time.Duration
	sbFirst = append(sbFirst, r.firstBy[sbSotW]...)
	sbFirst = append(sbFirst, r.firstBy[sbDelta]...)
	leg("write → first signalbox client has it (SotW or delta)", summarize(sbFirst, 0))
	leg("write → last signalbox client has it", all)
	if len(r.sbAfterProbe) > 0 {
		leg("blocking query returns → last signalbox client has it (per change)", summarize(r.sbAfterProbe, 0))
	}
	p("\n")
	if r.conv.Count > 0 {
		q := func(x float64) string {
			v, _ := r.conv.quantile(x)
			return fmt.Sprintf("≤ %g", v*1000)
		}
		p("signalbox's own `signalbox_xds_convergence_seconds{type=\"eds\"}` over the change phase (Consul answer seen → each client's ACK, bucket upper bounds): %d ACKs, mean %.1f ms, p50 %s ms, p99 %s ms.\n\n",
			int(r.conv.Count), r.conv.Sum/r.conv.Count*1000, q(0.5), q(0.99))
	}

	p("Resources (CPU from /proc/<pid>/stat utime+stime; peak RSS is VmHWM; the idle rate is measured over %.0f s with nothing changing, before the changes):\n\n", r.idle.Seconds())
	p("| process | CPU during changes | idle rate | CPU per change above idle | CPU total | peak RSS | RSS at end |\n|---|---:|---:|---:|---:|---:|---:|\n")
	res := func(name string, st [3]procStat, idle time.Duration) {
		during := st[2].CPU - st[1].CPU
		phase := max(r.changePhase.Seconds(), 1e-9)
		idleRate := 0.0
		if r.idle > 0 {
			idleRate = idle.Seconds() / r.idle.Seconds()
		}
		per := "–"
		if r.changes > 0 && r.idle > 0 {
			above := during.Seconds() - idleRate*phase
			per = fmt.Sprintf("%.1f ms", above*1000/float64(r.changes))
		}
		p("| %s | %.2f s (%.1f%% of a core over %.1f s) | %.1f%% of a core | %s | %.2f s | %s | %s |\n", name, during.Seconds(),
			100*during.Seconds()/phase, phase, 100*idleRate, per, st[2].CPU.Seconds(), mib(st[2].HWM), mib(st[2].RSS))
	}
	res("signalbox", r.sbCPU, r.idleCPU[0])
	res("consul (catalog, signalbox's watches and its own xDS)", r.consulCPU, r.idleCPU[1])
	res("xdsbench (all simulated clients)", r.selfCPU, r.idleCPU[2])
	p("\n")
	if m0, m1 := r.machine[1], r.machine[2]; m0.Valid && m1.Valid && r.changePhase > 0 {
		ours := (r.sbCPU[2].CPU - r.sbCPU[1].CPU) + (r.consulCPU[2].CPU - r.consulCPU[1].CPU) + (r.selfCPU[2].CPU - r.selfCPU[1].CPU)
		busy := m1.Busy - m0.Busy
		phase := r.changePhase.Seconds()
		p("The machine during the change phase: %.0f%% of its %d cores busy; processes outside this bench (other builds and tests on the machine) used %.1f core-seconds (%.0f%% of one core); steal %.1f s; some task waited for a CPU %.0f%% of the time (PSI).\n\n",
			100*busy.Seconds()/phase/float64(runtime.NumCPU()), runtime.NumCPU(), (busy - ours).Seconds(), 100*(busy-ours).Seconds()/phase,
			(m1.Steal - m0.Steal).Seconds(), 100*(m1.Stall-m0.Stall).Seconds()/phase)
	}

	p("Setup:\n\n| phase | time | |\n|---|---:|---|\n")
	for _, ph := range b.phases {
		p("| %s | %.1f s | %s |\n", ph.name, ph.d.Seconds(), strings.ReplaceAll(ph.note, "|", "\\|"))
	}
	p("\n")
	var notes []string
	for k := range numKinds {
		if r.stale[k] > 0 {
			notes = append(notes, fmt.Sprintf("%d %s subscribers already held the new state when a change began (left over from a timeout)", r.stale[k], k))
		}
	}
	if r.streamErrs > 0 {
		notes = append(notes, fmt.Sprintf("%d client streams failed; first: %v", r.streamErrs, r.firstErr))
	}
	if r.profile != "" {
		if r.profileErr != nil {
			notes = append(notes, fmt.Sprintf("signalbox CPU profile: %v", r.profileErr))
		} else {
			notes = append(notes, fmt.Sprintf("signalbox CPU profile (%ds of the change phase): %s", cfg.profileSeconds, r.profile))
		}
	}
	if r.trace != "" {
		if r.traceErr != nil {
			notes = append(notes, fmt.Sprintf("signalbox execution trace: %v", r.traceErr))
		} else {
			notes = append(notes, fmt.Sprintf("signalbox execution trace (%ds of the change phase): %s", cfg.profileSeconds, r.trace))
		}
	}
	notes = append(notes, fmt.Sprintf("signalbox started %.1f s after the bench; the change phase ran from %.1f s to %.1f s (changes.csv and cpu.csv in the log directory have per-change times and a CPU timeline)",
		r.sbStarted.Seconds(), r.changesFrom.Seconds(), (r.changesFrom+r.changePhase).Seconds()))
	notes = append(notes, "logs: "+cfg.logDir)
	for _, n := range notes {
		p("- %s\n", n)
	}
	return w.String()
}

func pass(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

func commandLine() string {
	return "xdsbench " + strings.Join(os.Args[1:], " ")
}

func (f *fleet) clientsOf(k kind) []*client {
	var out []*client
	for _, c := range f.clients {
		if c.kind == k {
			out = append(out, c)
		}
	}
	return out
}
