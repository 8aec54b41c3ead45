package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"
)

// bench is one run.
type bench struct {
	cfg   config
	out   io.Writer // the report
	log   io.Writer // progress
	start time.Time

	layout layout
	consul *consulAgent
	sb     *signalboxProc
	fleet  *fleet

	phases []phase
	rec    record
}

type phase struct {
	name string
	d    time.Duration
	note string
}

// record is everything the report shows.
type record struct {
	expectedServices int
	catalogServices  int // names in /v1/catalog/services
	sbVersion        string
	sbStatus         sbStatus

	lastBy    [numKinds][]time.Duration
	firstBy   [numKinds][]time.Duration
	timeouts  [numKinds]int
	stale     [numKinds]int
	subsBy    [numKinds][]int
	sbAll     []time.Duration
	sbAllTO   int
	writeRTT  []time.Duration
	probe     []time.Duration
	probeErrs int
	// sbAfterProbe is, per change, the last signalbox client's time minus
	// the probe's: signalbox's own share (negative when the probe lost the
	// race with signalbox's own watch).
	sbAfterProbe []time.Duration
	changes      int

	sbCPU, consulCPU, selfCPU [3]procStat // after setup, before changes, after changes
	machine                   [3]machineStat
	changePhase               time.Duration
	idle                      time.Duration
	sbStarted                 time.Duration    // since the bench started
	changesFrom               time.Duration    // since the bench started
	idleCPU                   [3]time.Duration // signalbox, consul, bench

	rows []changeRow // one per change, for changes.csv

	conv       histogram // signalbox_xds_convergence_seconds{type="eds"} over the change phase
	profile    string
	profileErr error
	trace      string
	traceErr   error
	streamErrs int64
	firstErr   error
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "[%7.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) phase(name string, since time.Time, note string) {
	d := time.Since(since)
	b.phases = append(b.phases, phase{name, d, note})
	b.logf("%s: %s %s", name, d.Round(time.Millisecond), note)
}

func (b *bench) run(ctx context.Context) (err error) {
	cfg := b.cfg
	b.layout = newLayout(cfg.services, cfg.instances, cfg.peerClients, cfg.perClient)
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	b.logf("config: S=%d I=%d C=%d K=%d N=%d delta-share=%.2f consul-peer=%v peer-clients=%d; logs in %s",
		cfg.services, cfg.instances, cfg.clients, cfg.perClient, cfg.changes, cfg.deltaShare, cfg.consulPeer, cfg.peerClients, cfg.logDir)

	// 1. Consul.
	t := time.Now()
	b.consul, err = startConsul(ctx, cfg.consulBin, cfg.logDir)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { b.consul.stop(10 * time.Second) })
	b.phase("consul started", t, "http "+b.consul.httpAddr+", grpc "+b.consul.grpcAddr)

	// 2. Registration.
	t = time.Now()
	var progMu sync.Mutex
	lastPct := -1
	err = b.consul.register(ctx, b.layout, cfg.consulPeer, cfg.workers, func(done, total int) {
		pct := done * 100 / total
		progMu.Lock()
		defer progMu.Unlock()
		if pct/10 > lastPct/10 || done == total {
			lastPct = pct
			b.logf("registration %d%% (%d/%d writes)", pct, done, total)
		}
	})
	if err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	writes := cfg.services * cfg.instances
	if cfg.consulPeer {
		writes = 2*writes + cfg.peerClients
	}
	d := time.Since(t)
	b.phase("registration", t, fmt.Sprintf("%d catalog writes, %.0f/s", writes, float64(writes)/d.Seconds()))
	// signalbox must serve at least the S app services; whether it also
	// counts sidecar, client-proxy and "consul" services as routable services
	// is its business (the clients' readiness below is the real check).
	b.rec.expectedServices = cfg.services
	if b.rec.catalogServices, err = b.consul.serviceCount(ctx); err != nil {
		return fmt.Errorf("count services: %w", err)
	}

	// 3. signalbox.
	if out, err := exec.CommandContext(ctx, cfg.signalboxBin, "version").Output(); err == nil {
		b.rec.sbVersion = strings.TrimSpace(string(out))
	}
	t = time.Now()
	b.sb, err = startSignalbox(ctx, cfg.signalboxBin, b.consul.httpAddr, cfg.logDir, splitArgs(cfg.signalboxArgs))
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { b.sb.stop(10 * time.Second) })
	b.rec.sbStarted = time.Since(b.start)
	samplerCtx, stopSampler := context.WithCancel(ctx)
	var sampler sync.WaitGroup
	sampler.Go(func() { b.sample(samplerCtx, filepath.Join(cfg.logDir, "cpu.csv"), 250*time.Millisecond) })
	cleanups = append(cleanups, func() { stopSampler(); sampler.Wait() })
	if err := b.sb.waitReady(ctx, cfg.readyTimeout); err != nil {
		return err
	}
	b.phase("signalbox ready (/readyz 200)", t, "xds "+b.sb.xdsAddr+", http "+b.sb.httpAddr)
	lastLog := time.Now()
	st, err := b.sb.waitServices(ctx, b.rec.expectedServices, cfg.readyTimeout, func(st sbStatus) {
		if time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			b.logf("signalbox serves %d services, waiting for at least %d", st.Services, b.rec.expectedServices)
		}
	})
	if err != nil {
		return err
	}
	b.rec.sbStatus = st
	b.phase("signalbox serves every service", t, fmt.Sprintf("%d of the catalog's %d service names, resources %v", st.Services, b.rec.catalogServices, st.Resources))
	b.rec.sbCPU[0] = readProcStat(b.sb.pid())
	b.rec.consulCPU[0] = readProcStat(b.consul.pid())
	b.rec.selfCPU[0] = readProcStat(0)
	b.rec.machine[0] = readMachineStat()

	// 4. Clients.
	b.fleet = newFleet(b.layout, &tracker{})
	nDelta := 0
	for c := range cfg.clients {
		k := sbSotW
		if usesDelta(c, cfg.services, cfg.perClient, cfg.deltaShare) {
			k = sbDelta
			nDelta++
		}
		id := fmt.Sprintf("xdsbench-%s-%d", map[kind]string{sbSotW: "sotw", sbDelta: "delta"}[k], c)
		b.fleet.add(k, id, assignServices(c, cfg.perClient, cfg.services), grpcNode(id))
	}
	for p := range cfg.peerClients {
		b.fleet.add(consulDelta, b.layout.peerID(p), assignServices(p, cfg.perClient, cfg.services),
			envoyNode(b.layout.peerID(p), b.layout.peerNode(p)))
	}
	streamCtx, cancelStreams := context.WithCancel(ctx)
	var streams sync.WaitGroup
	cleanups = append(cleanups, func() {
		cancelStreams()
		b.fleet.close()
		streams.Wait()
	})
	t = time.Now()
	if err := b.fleet.start(streamCtx, b.sb.xdsAddr, []kind{sbSotW, sbDelta}, cfg.perConn, &streams); err != nil {
		return err
	}
	if cfg.consulPeer {
		if err := b.consul.waitCARoots(ctx, cfg.readyTimeout); err != nil {
			return err
		}
		if err := b.fleet.start(streamCtx, b.consul.grpcAddr, []kind{consulDelta}, cfg.perConn, &streams); err != nil {
			return err
		}
	}
	if err := b.waitClients(ctx, t); err != nil {
		return err
	}
	b.phase("clients hold every subscribed EDS", t, fmt.Sprintf("%d signalbox (%d delta, %d SotW), %d Consul", cfg.clients, nDelta, cfg.clients-nDelta, cfg.peerClients))

	// 5. Idle baseline: what the processes burn with nothing changing
	// (signalbox's blocking queries still time out and return every
	// --consul-wait).
	if cfg.idle > 0 {
		b.logf("idle for %v to measure the CPU baseline", cfg.idle)
		var before [3]procStat
		before[0], before[1], before[2] = readProcStat(b.sb.pid()), readProcStat(b.consul.pid()), readProcStat(0)
		t := time.Now()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(cfg.idle):
		}
		b.rec.idle = time.Since(t)
		b.rec.idleCPU[0] = readProcStat(b.sb.pid()).CPU - before[0].CPU
		b.rec.idleCPU[1] = readProcStat(b.consul.pid()).CPU - before[1].CPU
		b.rec.idleCPU[2] = readProcStat(0).CPU - before[2].CPU
	}

	// 6. Changes.
	if err := b.changes(ctx); err != nil {
		return err
	}

	// 7. Report.
	rep := b.report()
	fmt.Fprint(b.out, rep)
	if cfg.report != "" {
		f, err := os.OpenFile(cfg.report, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		_, werr := f.WriteString(rep)
		if err := errors.Join(werr, f.Close()); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	if cfg.keep {
		b.logf("--keep: Consul http %s grpc %s; signalbox xds %s http %s; Ctrl-C to stop", b.consul.httpAddr, b.consul.grpcAddr, b.sb.xdsAddr, b.sb.httpAddr)
		<-ctx.Done()
	}
	return nil
}

// waitClients waits until every client holds an EDS with all I endpoints for
// each of its services.
func (b *bench) waitClients(ctx context.Context, since time.Time) error {
	deadline := time.Now().Add(b.cfg.readyTimeout)
	lastLog := time.Time{}
	for {
		ready, total := b.fleet.readiness(b.cfg.instances)
		all := true
		for k := range numKinds {
			all = all && ready[k] == total[k]
		}
		if all {
			return nil
		}
		if time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			b.logf("clients ready: signalbox SotW %d/%d, delta %d/%d, Consul %d/%d; stream errors %d",
				ready[sbSotW], total[sbSotW], ready[sbDelta], total[sbDelta], ready[consulDelta], total[consulDelta], b.fleet.streamErrs.Load())
		}
		if err := b.sb.alive(); err != nil {
			return err
		}
		if err := b.consul.alive(); err != nil {
			return err
		}
		if n := b.fleet.streamErrs.Load(); n > 0 {
			return fmt.Errorf("%d client streams failed; first: %w", n, b.fleet.err())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clients not ready after %s: signalbox SotW %d/%d, delta %d/%d, Consul %d/%d",
				time.Since(since).Round(time.Second), ready[sbSotW], total[sbSotW], ready[sbDelta], total[sbDelta], ready[consulDelta], total[consulDelta])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// changes runs the change phase: pairs of flips (critical, then passing
// again) of one instance of a service that has subscribers of every kind.
func (b *bench) changes(ctx context.Context) error {
	cfg := b.cfg
	var eligible []int
	for s := range cfg.services {
		ok := len(b.fleet.subs[sbSotW][s])+len(b.fleet.subs[sbDelta][s]) > 0
		if cfg.consulPeer {
			ok = ok && len(b.fleet.subs[consulDelta][s]) > 0
		}
		if ok {
			eligible = append(eligible, s)
		}
	}
	if len(eligible) == 0 {
		return errors.New("no service has subscribers of every kind")
	}
	rng := rand.New(rand.NewPCG(cfg.seed, 0x5eed))
	rng.Shuffle(len(eligible), func(i, j int) { eligible[i], eligible[j] = eligible[j], eligible[i] })

	before, _ := b.sb.metrics(ctx)
	var profWG sync.WaitGroup
	if cfg.cpuprofileSignalbox != "" {
		b.rec.profile = cfg.cpuprofileSignalbox
		profWG.Go(func() {
			b.rec.profileErr = b.sb.fetchPprof(ctx, "profile", cfg.profileSeconds, cfg.cpuprofileSignalbox)
		})
	}
	if cfg.traceSignalbox != "" {
		b.rec.trace = cfg.traceSignalbox
		profWG.Go(func() {
			b.rec.traceErr = b.sb.fetchPprof(ctx, "trace", cfg.profileSeconds, cfg.traceSignalbox)
		})
	}
	if cfg.cpuprofileBench != "" {
		f, err := os.Create(cfg.cpuprofileBench)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	b.rec.sbCPU[1] = readProcStat(b.sb.pid())
	b.rec.consulCPU[1] = readProcStat(b.consul.pid())
	b.rec.selfCPU[1] = readProcStat(0)
	b.rec.machine[1] = readMachineStat()
	t := time.Now()
	b.rec.changesFrom = t.Sub(b.start)
	lastLog := time.Now()
	var svc, inst int
	for n := range cfg.changes {
		if n%2 == 0 {
			svc = eligible[(n/2)%len(eligible)]
			inst = rng.IntN(cfg.instances)
		}
		present := n%2 == 1 // critical first, then passing again
		if err := b.oneChange(ctx, svc, inst, present); err != nil {
			return fmt.Errorf("change %d: %w", n+1, err)
		}
		b.rec.changes++
		if time.Since(lastLog) > 2*time.Second || n == cfg.changes-1 {
			lastLog = time.Now()
			b.logf("changes %d/%d; timeouts: signalbox SotW %d, delta %d, Consul %d",
				n+1, cfg.changes, b.rec.timeouts[sbSotW], b.rec.timeouts[sbDelta], b.rec.timeouts[consulDelta])
		}
		if err := b.sb.alive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(cfg.gap):
		}
	}
	b.rec.changePhase = time.Since(t)
	b.rec.sbCPU[2] = readProcStat(b.sb.pid())
	b.rec.consulCPU[2] = readProcStat(b.consul.pid())
	b.rec.selfCPU[2] = readProcStat(0)
	b.rec.machine[2] = readMachineStat()
	after, _ := b.sb.metrics(ctx)
	b.rec.conv = parseHistogram(after, "signalbox_xds_convergence_seconds", "type", "eds").sub(parseHistogram(before, "signalbox_xds_convergence_seconds", "type", "eds"))
	if cfg.cpuprofileSignalbox != "" || cfg.traceSignalbox != "" {
		b.logf("waiting for the signalbox profile/trace (%ds)", cfg.profileSeconds)
		profWG.Wait()
	}
	if err := writeCSV(filepath.Join(cfg.logDir, "changes.csv"), b.rec.rows); err != nil {
		b.logf("changes.csv: %v", err)
	}
	b.rec.streamErrs = b.fleet.streamErrs.Load()
	b.rec.firstErr = b.fleet.err()
	return nil
}

func (b *bench) oneChange(ctx context.Context, svc, inst int, present bool) error {
	var subs [numKinds][]*client
	for k := range numKinds {
		subs[k] = b.fleet.subs[k][svc]
	}
	var pr *probe
	if b.cfg.probe {
		var err error
		if pr, err = b.consul.startProbe(ctx, b.layout.service(svc)); err != nil {
			return err
		}
	}
	tr := b.fleet.tracker
	ch := tr.begin(svc, b.layout.addr(svc, inst), present, subs)
	err := b.consul.setHealth(ctx, b.layout, svc, inst, present)
	b.rec.writeRTT = append(b.rec.writeRTT, time.Since(ch.t0))
	if err != nil {
		tr.end()
		return err
	}
	timer := time.NewTimer(b.cfg.changeTimeout)
	select {
	case <-ch.all:
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
		tr.end()
		return ctx.Err()
	}
	timer.Stop()
	tr.end()
	res := ch.result()
	probeAt := time.Duration(-1)
	if pr != nil {
		select {
		case <-pr.done:
			if pr.err == nil {
				probeAt = pr.at.Sub(ch.t0)
				b.rec.probe = append(b.rec.probe, probeAt)
			} else {
				b.rec.probeErrs++
			}
		case <-time.After(time.Second):
			b.rec.probeErrs++
		}
	}
	row := changeRow{n: b.rec.changes + 1, at: ch.t0.Sub(b.start), service: b.layout.service(svc), instance: inst, present: present,
		write: b.rec.writeRTT[len(b.rec.writeRTT)-1], probe: probeAt, res: res}
	b.rec.rows = append(b.rec.rows, row)
	sbLast, sbOK, sbAny := time.Duration(0), true, false
	for k := range numKinds {
		b.rec.stale[k] += res.stale[k]
		if res.subs[k] == 0 {
			continue
		}
		b.rec.subsBy[k] = append(b.rec.subsBy[k], res.subs[k])
		if res.timedOut[k] {
			b.rec.timeouts[k]++
			if k != consulDelta {
				sbOK = false
			}
			continue
		}
		if res.subs[k] == res.stale[k] {
			continue // nothing to wait for
		}
		b.rec.lastBy[k] = append(b.rec.lastBy[k], res.last[k])
		b.rec.firstBy[k] = append(b.rec.firstBy[k], res.first[k])
		if k != consulDelta {
			sbAny = true
			sbLast = max(sbLast, res.last[k])
		}
	}
	switch {
	case !sbOK:
		b.rec.sbAllTO++
	case sbAny:
		b.rec.sbAll = append(b.rec.sbAll, sbLast)
		if probeAt >= 0 {
			b.rec.sbAfterProbe = append(b.rec.sbAfterProbe, sbLast-probeAt)
		}
	}
	return nil
}

// changeRow is one change as measured.
type changeRow struct {
	n        int
	at       time.Duration // t0 since the bench started
	service  string
	instance int
	present  bool
	write    time.Duration
	probe    time.Duration // -1: none
	res      result
}

// writeCSV writes one line per change (times in ms from the write; empty
// when a kind had no subscriber or timed out).
func writeCSV(path string, rows []changeRow) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprint(w, "n,at_s,service,instance,present,write_ms,probe_ms")
	for _, k := range []string{"sotw", "delta", "consul"} {
		fmt.Fprintf(w, ",%[1]s_subs,%[1]s_first_ms,%[1]s_last_ms,%[1]s_missing", k)
	}
	fmt.Fprintln(w)
	msOrEmpty := func(d time.Duration, ok bool) string {
		if !ok {
			return ""
		}
		return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%d,%.3f,%s,%d,%v,%s,%s", r.n, r.at.Seconds(), r.service, r.instance, r.present, msOrEmpty(r.write, true), msOrEmpty(r.probe, r.probe >= 0))
		for k := range numKinds {
			ok := r.res.subs[k] > 0 && !r.res.timedOut[k]
			fmt.Fprintf(w, ",%d,%s,%s,%d", r.res.subs[k], msOrEmpty(r.res.first[k], ok), msOrEmpty(r.res.last[k], ok), r.res.missing[k])
		}
		fmt.Fprintln(w)
	}
	return errors.Join(w.Flush(), f.Close())
}

// usesDelta spreads delta clients evenly, so that every service has both
// kinds of subscriber: clients c and c+ceil(S/K) take the same services, so
// the choice alternates both along c and along c/ceil(S/K).
func usesDelta(c, services, perClient int, share float64) bool {
	block := (services + perClient - 1) / perClient
	r := c%block + c/block
	return int(float64(r+1)*share) > int(float64(r)*share)
}

// sample writes the CPU seconds and RSS of signalbox, Consul and the bench
// every interval to path, so that latency outliers in changes.csv can be
// lined up with what the processes were doing.
func (b *bench) sample(ctx context.Context, path string, interval time.Duration) {
	f, err := os.Create(path)
	if err != nil {
		b.logf("cpu.csv: %v", err)
		return
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	defer w.Flush()
	fmt.Fprintln(w, "at_s,signalbox_cpu_s,consul_cpu_s,bench_cpu_s,machine_busy_s,machine_steal_s,cpu_stall_s,signalbox_rss_mib,consul_rss_mib")
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		sb, co, me, m := readProcStat(b.sb.pid()), readProcStat(b.consul.pid()), readProcStat(0), readMachineStat()
		fmt.Fprintf(w, "%.3f,%.2f,%.2f,%.2f,%.2f,%.2f,%.3f,%d,%d\n", time.Since(b.start).Seconds(), sb.CPU.Seconds(), co.CPU.Seconds(), me.CPU.Seconds(),
			m.Busy.Seconds(), m.Steal.Seconds(), m.Stall.Seconds(), sb.RSS>>20, co.RSS>>20)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
