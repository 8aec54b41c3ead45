// Command xdsbench measures how fast signalbox delivers a Consul catalog
// change to its xDS clients, next to Consul's own built-in xDS server fed by
// the same Consul and the same changes (issue 2).
//
// It starts a dev Consul agent and `signalbox serve` as child processes,
// registers S services × I instances (each instance on its own node, with a
// node check the bench flips and, for the Consul peer, a connect-proxy
// sidecar), connects C simulated proxyless gRPC clients to signalbox (raw ADS
// streams, SotW and delta, K services each) and P simulated Envoy sidecars to
// Consul's xDS server (delta, K upstreams each), then flips the health of one
// instance at a time and measures, for each server, the time from the Consul
// write to the last subscribed client holding an EDS that reflects it.
//
//	go run ./cmd/xdsbench --services 20 --instances 3 --clients 20 --per-client 3 --changes 20
//
// Logs of the children go to --log-dir (default bin/xdsbench-logs/<time>/).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type config struct {
	services, instances, clients, perClient, changes int
	deltaShare                                       float64
	consulPeer                                       bool
	peerClients                                      int
	signalboxBin, consulBin                          string
	signalboxArgs                                    string
	report                                           string
	cpuprofileSignalbox, traceSignalbox              string
	profileSeconds                                   int
	cpuprofileBench                                  string
	logDir                                           string
	keep                                             bool
	changeTimeout, gap, idle                         time.Duration
	readyTimeout                                     time.Duration
	seed                                             uint64
	perConn, workers                                 int
	probe                                            bool
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("xdsbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.services, "services", 1000, "services S registered in Consul")
	fs.IntVar(&c.instances, "instances", 10, "instances I per service, each on its own node")
	fs.IntVar(&c.clients, "clients", 2000, "simulated signalbox clients C (proxyless gRPC, raw ADS streams)")
	fs.IntVar(&c.perClient, "per-client", 10, "services K each client subscribes to")
	fs.IntVar(&c.changes, "changes", 60, "health changes N to measure, one at a time")
	fs.Float64Var(&c.deltaShare, "delta-share", 0.5, "fraction of signalbox clients that use delta xDS (the rest SotW)")
	fs.BoolVar(&c.consulPeer, "consul-peer", true, "also measure Consul's built-in xDS server on the same changes")
	fs.IntVar(&c.peerClients, "peer-clients", -1, "simulated Envoy sidecars on Consul's xDS server (default min(clients, 200))")
	fs.StringVar(&c.signalboxBin, "signalbox", "bin/signalbox", "signalbox binary")
	fs.StringVar(&c.consulBin, "consul", "bin/consul", "consul binary")
	fs.StringVar(&c.signalboxArgs, "signalbox-args", "", "extra arguments for `signalbox serve`, space separated")
	fs.StringVar(&c.report, "report", "", "append the markdown report to this file")
	fs.StringVar(&c.cpuprofileSignalbox, "cpuprofile-signalbox", "", "save a CPU profile of signalbox taken during the change phase (needs /debug/pprof/ on its HTTP address)")
	fs.StringVar(&c.traceSignalbox, "trace-signalbox", "", "save an execution trace of signalbox taken during the change phase (/debug/pprof/trace)")
	fs.IntVar(&c.profileSeconds, "profile-seconds", 20, "length of the signalbox CPU profile and trace")
	fs.StringVar(&c.cpuprofileBench, "cpuprofile-bench", "", "save a CPU profile of the bench process during the change phase")
	fs.StringVar(&c.logDir, "log-dir", "", "directory for the children's logs (default bin/xdsbench-logs/<time>)")
	fs.BoolVar(&c.keep, "keep", false, "after the report, keep Consul and signalbox running until Ctrl-C")
	fs.DurationVar(&c.changeTimeout, "change-timeout", 10*time.Second, "longest wait for one change to reach every client")
	fs.DurationVar(&c.gap, "gap", 100*time.Millisecond, "pause between changes")
	fs.DurationVar(&c.idle, "idle", 10*time.Second, "idle period before the changes that measures each process's CPU baseline (0: none)")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 10*time.Minute, "longest wait for each setup phase")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the order of changed services and instances")
	fs.IntVar(&c.perConn, "streams-per-conn", 50, "client streams per gRPC connection")
	fs.IntVar(&c.workers, "register-workers", 32, "parallel catalog registrations")
	fs.BoolVar(&c.probe, "probe", true, "time a blocking query of the changed service (Consul's own answer time)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if c.peerClients < 0 {
		c.peerClients = min(c.clients, 200)
	}
	if !c.consulPeer {
		c.peerClients = 0
	}
	var errs []error
	for name, v := range map[string]int{"services": c.services, "instances": c.instances, "clients": c.clients, "per-client": c.perClient, "changes": c.changes, "streams-per-conn": c.perConn, "register-workers": c.workers} {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("--%s %d: must be positive", name, v))
		}
	}
	if c.deltaShare < 0 || c.deltaShare > 1 {
		errs = append(errs, fmt.Errorf("--delta-share %v: want 0..1", c.deltaShare))
	}
	if c.consulPeer && c.peerClients == 0 {
		errs = append(errs, errors.New("--peer-clients 0 with --consul-peer: use --consul-peer=false"))
	}
	if c.instances > 1<<20 || c.services*c.instances > 1<<23 {
		errs = append(errs, errors.New("too many instances for the fake address space"))
	}
	if c.perClient > c.services {
		c.perClient = c.services
	}
	return c, errors.Join(errs...)
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xdsbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.logDir == "" {
		cfg.logDir = filepath.Join("bin", "xdsbench-logs", time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(cfg.logDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "xdsbench:", err)
		os.Exit(1)
	}
	b := &bench{cfg: cfg, out: os.Stdout, log: os.Stderr, start: time.Now()}
	err = b.run(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xdsbench:", err)
		fmt.Fprintln(os.Stderr, "xdsbench: logs in", cfg.logDir)
		os.Exit(1)
	}
}

// splitArgs splits extra arguments on spaces.
func splitArgs(s string) []string { return strings.Fields(s) }
