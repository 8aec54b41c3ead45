package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/signalbox/signalbox/topology"
	"github.com/signalbox/signalbox/topology/als"
)

// goal is the ingest rate to sustain on the 2-core machine.
const goal = 500_000

// bench is one run: the server in this process, the load in a child.
type bench struct {
	cfg      config
	out, log io.Writer
	args     []string // passed on to the load generator
	start    time.Time

	store *topology.Store
	srv   *als.Server
	load  *loadProc
	wl    *workload
	// sidecars in the workload
	sidecars int
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// snapshot is the server's counters and resources at one time.
type snapshot struct {
	at                          time.Time
	entries, recorded, served   uint64
	serverCPU, loadCPU, machine time.Duration
	mallocs, allocBytes         uint64
	gcs                         uint32
	heapInuse, heapObjects      uint64
	liveHeap                    uint64 // marked live by the last GC
	rss, hwm                    int64
	goroutines, edges           int
}

func (b *bench) snap() snapshot {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := snapshot{
		at: time.Now(), entries: b.srv.Entries.Load(), recorded: b.srv.Recorded.Load(), served: b.srv.Served.Load(),
		serverCPU: selfCPU(), machine: machineBusy(), mallocs: ms.Mallocs, allocBytes: ms.TotalAlloc, gcs: ms.NumGC,
		heapInuse: ms.HeapInuse, heapObjects: ms.HeapObjects,
		goroutines: runtime.NumGoroutine(), edges: b.store.Edges(),
	}
	s.rss, s.hwm = selfMem()
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	if live[0].Value.Kind() == metrics.KindUint64 {
		s.liveHeap = live[0].Value.Uint64()
	}
	if cpu, err := procCPU(b.load.pid()); err == nil {
		s.loadCPU = cpu
	}
	return s
}

// lockedWriter serialises the bench's log lines and the load generator's
// stderr, which exec copies from a goroutine of its own.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (b *bench) run(ctx context.Context) error {
	b.start = time.Now()
	b.log = &lockedWriter{w: b.log}
	cfg := b.cfg
	var err error
	// The same workload as the load generator's, for the report; only its
	// sizes are kept, so that its batches do not count in the server's RSS.
	if b.wl, err = buildWorkload(cfg.gen(), time.Now()); err != nil {
		return err
	}
	b.sidecars, b.wl.sidecars = len(b.wl.sidecars), nil

	// The server as `signalbox serve` builds it.
	b.store = topology.New(topology.Options{Bucket: cfg.bucket, Buckets: cfg.buckets})
	b.srv = als.NewServer(b.store, time.Now)
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(1 << 20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(als.MaxMessageBytes),
	}
	if cfg.codec {
		opts = append(opts, als.ServerOption())
	}
	g := grpc.NewServer(opts...)
	if cfg.generated {
		alsv3.RegisterAccessLogServiceServer(g, b.srv)
	} else {
		b.srv.Register(g)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()

	if b.load, err = startLoad(b.args, lis.Addr().String(), b.log); err != nil {
		return err
	}
	defer b.load.stop()
	b.logf("load generator pid %d: %d sidecars over %d connections, %d edges, %.1f entries per message",
		b.load.pid(), cfg.sidecars, cfg.conns, b.wl.edges, float64(b.wl.entries)/float64(b.sidecars))

	if err := b.waitFirst(ctx); err != nil {
		return err
	}
	if cfg.query > 0 {
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		go b.read(rctx, cfg.query)
		b.logf("reading the graph every %v", cfg.query)
	}
	b.logf("entries arriving; warming up for %v", cfg.warmup)
	if err := b.wait(ctx, cfg.warmup); err != nil {
		return err
	}
	if cfg.soak > 0 {
		err = b.soakRun(ctx)
	} else {
		err = b.throughput(ctx)
	}
	if err != nil {
		return err
	}
	if cfg.memProfile != "" {
		if err := writeHeapProfile(cfg.memProfile); err != nil {
			return err
		}
	}
	sum, err := b.load.stop()
	if err != nil {
		return err
	}
	fmt.Fprintf(b.out, "\nLoad generator, whole run: %d messages, %d entries sent, %.1f CPU s, %d send errors%s.\n",
		sum.Messages, sum.Entries, sum.CPUSeconds, sum.Errors, firstErrorNote(sum.FirstError))
	if r := b.srv.Rejected.Load(); r > 0 {
		return fmt.Errorf("the server refused %d streams", r)
	}
	return nil
}

func firstErrorNote(e string) string {
	if e == "" {
		return ""
	}
	return " (first: " + e + ")"
}

// waitFirst polls until the server has received entries.
func (b *bench) waitFirst(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for b.srv.Entries.Load() == 0 {
		if time.Now().After(deadline) {
			return errors.New("no entry arrived within 2 minutes")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.load.exited:
			return fmt.Errorf("the load generator exited: %v", b.load.err)
		case <-tick.C:
		}
	}
	return nil
}

// wait waits d, or less when ctx ends or the load generator exits.
func (b *bench) wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-b.load.exited:
		return fmt.Errorf("the load generator exited: %v", b.load.err)
	case <-t.C:
		return nil
	}
}

func (b *bench) throughput(ctx context.Context) error {
	cfg := b.cfg
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	b.logf("measuring for %v", cfg.duration)
	s0 := b.snap()
	if err := b.wait(ctx, cfg.duration); err != nil {
		return err
	}
	s1 := b.snap()
	b.report(s0, s1)
	return nil
}

func mib(v int64) string { return fmt.Sprintf("%.0f MiB", float64(v)/(1<<20)) }

func (b *bench) header() {
	cfg := b.cfg
	p := func(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }
	path := "wire decoder (als.Server.Register)"
	if cfg.generated {
		path = "generated decoding (alsv3.RegisterAccessLogServiceServer)"
	}
	if cfg.codec {
		path += " with als.ServerOption()"
	}
	p("\n### alsbench %s\n\n", b.start.Format("2006-01-02 15:04:05 MST"))
	p("`alsbench %s`: %s; %d CPUs, %s.\n\n", strings.Join(b.args, " "), path, runtime.NumCPU(), runtime.Version())
	p("Workload: %d sidecars (one stream each) over %d connections, %d services, %d edges; %.1f entries per message (%.0f B per entry, %.1f KiB per message); inbound share %.2f. Store: %d buckets of %v per edge.\n\n",
		cfg.sidecars, cfg.conns, cfg.services, b.wl.edges, float64(b.wl.entries)/float64(b.sidecars),
		float64(b.wl.bytes)/float64(b.wl.entries), float64(b.wl.bytes)/float64(b.sidecars)/1024, cfg.inbound, cfg.buckets, cfg.bucket)
}

func (b *bench) report(s0, s1 snapshot) {
	b.header()
	p := func(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }
	secs := s1.at.Sub(s0.at).Seconds()
	n := float64(s1.entries - s0.entries)
	rate := n / secs
	sCPU, lCPU := (s1.serverCPU - s0.serverCPU).Seconds(), (s1.loadCPU - s0.loadCPU).Seconds()
	others := max(0, (s1.machine-s0.machine).Seconds()-sCPU-lCPU)
	p("| over | entries received/s | recorded (edges)/s | served/s | server CPU s (cores) | load CPU s (cores) | other processes (cores) | server µs CPU per entry |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	p("| %.1f s | **%.0f** | %.0f | %.0f | %.1f (%.2f) | %.1f (%.2f) | %.2f | %.2f |\n\n", secs, rate,
		float64(s1.recorded-s0.recorded)/secs, float64(s1.served-s0.served)/secs,
		sCPU, sCPU/secs, lCPU, lCPU/secs, others/secs, sCPU*1e6/max(n, 1))
	p("Server allocations: %.3f per entry, %.1f B per entry, %d GCs; live heap %s, heap in use %s (%d objects), RSS %s, peak RSS %s; %d goroutines; %d edges held, %d dropped.\n\n",
		float64(s1.mallocs-s0.mallocs)/max(n, 1), float64(s1.allocBytes-s0.allocBytes)/max(n, 1), s1.gcs-s0.gcs,
		mib(int64(s1.liveHeap)), mib(int64(s1.heapInuse)), s1.heapObjects, mib(s1.rss), mib(s1.hwm), s1.goroutines, s1.edges, b.store.Dropped())
	verdict := "**met**"
	if rate < goal {
		verdict = "**missed**"
	}
	p("Goal ≥ %d entries/s sustained: %.0f, %s.\n", goal, rate, verdict)
}

// read queries the graph every interval, as dashboards watching a 5-minute
// version graph and a 15-minute service graph do, and advances the window
// sums when a bucket closes, as signalbox serve does, until ctx ends. The
// queries make the window sums that live beside the buckets.
func (b *bench) read(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	next := b.store.NextBucket(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if !now.Before(next) {
				b.store.Advance(now)
				next = b.store.NextBucket(now)
			}
			_, _ = b.store.Graph(now, 5*time.Minute, topology.ByVersion)
			_, _ = b.store.Graph(now, 15*time.Minute, topology.ByService)
		}
	}
}

// soakRun loads for cfg.soak and prints memory every cfg.sample.
func (b *bench) soakRun(ctx context.Context) error {
	cfg := b.cfg
	b.header()
	p := func(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }
	p("| elapsed | entries/s | server cores | load cores | other cores | RSS | live heap (last GC) | heap in use | heap objects | GCs | goroutines | edges |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	first := b.snap()
	prev := first
	var rows []snapshot
	for end := first.at.Add(cfg.soak); time.Now().Before(end); {
		if err := b.wait(ctx, min(cfg.sample, time.Until(end))); err != nil {
			return err
		}
		s := b.snap()
		secs := s.at.Sub(prev.at).Seconds()
		sc, lc := (s.serverCPU - prev.serverCPU).Seconds(), (s.loadCPU - prev.loadCPU).Seconds()
		oc := max(0, (s.machine-prev.machine).Seconds()-sc-lc)
		p("| %s | %.0f | %.2f | %.2f | %.2f | %s | %s | %s | %d | %d | %d | %d |\n", s.at.Sub(first.at).Round(time.Second),
			float64(s.entries-prev.entries)/secs, sc/secs, lc/secs, oc/secs,
			mib(s.rss), mib(int64(s.liveHeap)), mib(int64(s.heapInuse)), s.heapObjects, s.gcs-prev.gcs, s.goroutines, s.edges)
		rows = append(rows, s)
		prev = s
	}
	if len(rows) == 0 {
		return nil
	}
	last := rows[len(rows)-1]
	secs := last.at.Sub(first.at).Seconds()
	p("\nOver %.0f s: %.0f entries/s; RSS %s → %s (peak %s), live heap %s → %s.\n", secs,
		float64(last.entries-first.entries)/secs, mib(rows[0].rss), mib(last.rss), mib(last.hwm), mib(int64(rows[0].liveHeap)), mib(int64(last.liveHeap)))
	if ring := time.Duration(cfg.buckets) * cfg.bucket; time.Since(b.start) < ring {
		p("The store's rings (%d buckets of %v per edge) were not all in use yet: until %v each new bucket of an edge takes a latency sketch.\n",
			cfg.buckets, cfg.bucket, ring)
	}
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}

// loadProc is the load generator process.
type loadProc struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	exited chan struct{}
	err    error // set before exited is closed
}

// startLoad re-executes this binary as the load generator for addr, with
// the same flags.
func startLoad(args []string, addr string, stderr io.Writer) (*loadProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	l := &loadProc{exited: make(chan struct{})}
	l.cmd = exec.Command(exe, args...)
	l.cmd.Env = append(os.Environ(), loadEnv+"="+addr)
	l.cmd.Stdout, l.cmd.Stderr = &l.stdout, stderr
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start load generator: %w", err)
	}
	go func() {
		l.err = l.cmd.Wait()
		close(l.exited)
	}()
	return l, nil
}

func (l *loadProc) pid() int { return l.cmd.Process.Pid }

// stop ends the load generator and reads its summary. Stopping twice is
// harmless.
func (l *loadProc) stop() (loadSummary, error) {
	select {
	case <-l.exited:
	default:
		_ = l.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		select {
		case <-l.exited:
		case <-t.C:
			_ = l.cmd.Process.Kill()
			<-l.exited
		}
	}
	var sum loadSummary
	lines := strings.Split(strings.TrimSpace(l.stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		return sum, fmt.Errorf("load generator summary %q (exit: %v): %w", l.stdout.String(), l.err, err)
	}
	return sum, nil
}
