// Command alsbench measures how many Envoy access log entries signalbox
// ingests per second over real gRPC, and whether its memory stays flat.
//
// The process runs the Access Log Service as `signalbox serve` does (the same
// gRPC server options, als.Server recording into a topology.Store with the
// default options) on a loopback port, and re-executes itself as a separate
// load generator process. The generator simulates --sidecars Envoy sidecars,
// one ALS stream each (identifier on the first message), spread over --conns
// connections. Each sidecar sends one pre-encoded batch of realistic
// HTTPAccessLogEntry messages over and over, restamped with the current time;
// a batch fills Envoy's default 16 KiB buffer_size_bytes unless --batch sets
// the number of entries. The sidecars' upstreams make about --edges edges
// among --services services, with mixed statuses, gRPC and connection
// failures. The generator does no protobuf work per message, so what is
// measured is the server.
//
// Throughput run (entries/s, CPU of both processes, allocations, RSS):
//
//	go run ./cmd/alsbench --duration 30s
//
// Soak (RSS and heap every --sample, to show that memory stays flat), with
// a dashboard-like reader of the graph (--query) and 2 s buckets so that the
// store's ring fills within it:
//
//	go run ./cmd/alsbench --soak 10m --sample 30s --bucket 2s --query 1s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type config struct {
	duration, warmup, soak, sample time.Duration
	bucket                         time.Duration
	buckets                        int
	services, sidecars, edges      int
	conns                          int
	batch, bufferBytes             int
	inbound                        float64
	generated, codec               bool
	cpuProfile, memProfile         string
	loadCPUProfile                 string
	seed                           uint64
	query                          time.Duration
}

func (c config) gen() genConfig {
	return genConfig{services: c.services, sidecars: c.sidecars, edges: c.edges, batch: c.batch,
		bufferBytes: c.bufferBytes, inbound: c.inbound, seed: c.seed}
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("alsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: alsbench [flags]

Measures signalbox's Access Log Service ingest over loopback gRPC, with the
load from a separate process: entries/s, CPU of both processes, allocations
and RSS (--duration), or memory over time (--soak). See go doc ./cmd/alsbench.

`)
		fs.PrintDefaults()
	}
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "length of the measured throughput run")
	fs.DurationVar(&c.warmup, "warmup", 5*time.Second, "load before measuring starts")
	fs.DurationVar(&c.soak, "soak", 0, "instead of a throughput run, load this long and print memory every --sample")
	fs.DurationVar(&c.sample, "sample", 30*time.Second, "soak sampling interval")
	fs.DurationVar(&c.query, "query", 0, "also read the graph every this often (windows 5m by version and 15m by service, as two dashboards do) and advance the window sums as buckets close, as signalbox serve does; 0: no reader")
	fs.DurationVar(&c.bucket, "bucket", 10*time.Second, "the store's time bucket (signalbox's default)")
	fs.IntVar(&c.buckets, "buckets", 90, "the store's buckets per edge (signalbox's default): memory grows until they are all in use")
	fs.IntVar(&c.services, "services", 1000, "services in the graph")
	fs.IntVar(&c.sidecars, "sidecars", 1000, "simulated sidecars, one ALS stream each (sidecar i fronts service i mod --services)")
	fs.IntVar(&c.edges, "edges", 5000, "edges: each sidecar calls --edges/--sidecars upstreams")
	fs.IntVar(&c.conns, "conns", 4, "gRPC connections of the load generator, each driven by one goroutine")
	fs.IntVar(&c.batch, "batch", 0, "entries per message (0: fill --buffer-bytes, as Envoy does)")
	fs.IntVar(&c.bufferBytes, "buffer-bytes", 16384, "Envoy's buffer_size_bytes: a message is flushed once it holds this much")
	fs.Float64Var(&c.inbound, "inbound", 0, "share of sidecars that log their inbound side (served view) instead of outbound")
	fs.BoolVar(&c.generated, "generated", false, "register the service the generated way (decode every field) instead of als.Server.Register")
	fs.BoolVar(&c.codec, "codec", true, "give the gRPC server als.ServerOption() (messages reach the decoder in gRPC's buffers)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the server process over the measured run")
	fs.StringVar(&c.memProfile, "memprofile", "", "write a heap profile of the server process at the end")
	fs.StringVar(&c.loadCPUProfile, "load-cpuprofile", "", "write a CPU profile of the load generator")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the generated workload")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var errs []error
	for name, v := range map[string]int{"services": c.services, "sidecars": c.sidecars, "edges": c.edges, "conns": c.conns, "buffer-bytes": c.bufferBytes, "buckets": c.buckets} {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("--%s %d: must be positive", name, v))
		}
	}
	if c.batch < 0 {
		errs = append(errs, fmt.Errorf("--batch %d: must not be negative", c.batch))
	}
	if c.services < 2 {
		errs = append(errs, fmt.Errorf("--services %d: need two to make an edge", c.services))
	}
	if c.inbound < 0 || c.inbound > 1 {
		errs = append(errs, fmt.Errorf("--inbound %v: want 0..1", c.inbound))
	}
	for name, d := range map[string]time.Duration{"duration": c.duration, "sample": c.sample, "bucket": c.bucket} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("--%s %v: must be positive", name, d))
		}
	}
	if c.warmup < 0 || c.soak < 0 {
		errs = append(errs, errors.New("--warmup and --soak must not be negative"))
	}
	return c, errors.Join(errs...)
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "alsbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if addr := os.Getenv(loadEnv); addr != "" {
		err = runLoad(ctx, cfg, addr, os.Stdout)
	} else {
		err = (&bench{cfg: cfg, out: os.Stdout, log: os.Stderr, args: os.Args[1:]}).run(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "alsbench:", err)
		os.Exit(1)
	}
}
