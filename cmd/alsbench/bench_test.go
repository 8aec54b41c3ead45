package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	alsv3 "github.com/envoyproxy/go-control-plane/envoy/service/accesslog/v3"
	"google.golang.org/protobuf/proto"

	"github.com/signalbox/signalbox/topology"
	"github.com/signalbox/signalbox/topology/als"
)

// TestMain lets the test binary be the load generator the bench starts.
func TestMain(m *testing.M) {
	if addr := os.Getenv(loadEnv); addr != "" {
		cfg, err := parseFlags(os.Args[1:], os.Stderr)
		if err == nil {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
			err = runLoad(ctx, cfg, addr, os.Stdout)
			stop()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func small(t *testing.T, args ...string) config {
	t.Helper()
	cfg, err := parseFlags(append([]string{"--services", "20", "--sidecars", "10", "--edges", "30"}, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestWorkloadIsWhatEnvoySends: every batch, with and without its
// identifier, is a valid message; stamping sets every entry's start time;
// the entries make the edges the flags ask for.
func TestWorkloadIsWhatEnvoySends(t *testing.T) {
	cfg := small(t)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	w, err := buildWorkload(cfg.gen(), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.sidecars) != 10 || w.edges != 30 {
		t.Fatalf("%d sidecars, %d edges; want 10 and 30", len(w.sidecars), w.edges)
	}
	store := topology.New(topology.Options{})
	later := now.Add(time.Hour).Unix()
	for _, sc := range w.sidecars {
		if len(sc.batch.msg) < cfg.bufferBytes {
			t.Errorf("%s: batch of %d bytes, under the %d-byte buffer", sc.service, len(sc.batch.msg), cfg.bufferBytes)
		}
		buf := append(append([]byte(nil), sc.ident...), sc.batch.msg...)
		sc.batch.stamp(buf, len(sc.ident), later)
		var msg alsv3.StreamAccessLogsMessage
		if err := proto.Unmarshal(buf, &msg); err != nil {
			t.Fatalf("%s: %v", sc.service, err)
		}
		id, err := als.IdentityOf(msg.GetIdentifier())
		if err != nil || id.Service != sc.service || id.LogName != als.LogOutbound {
			t.Fatalf("identity %+v, %v", id, err)
		}
		entries := msg.GetHttpLogs().GetLogEntry()
		if len(entries) != sc.batch.entries {
			t.Fatalf("%d entries, batch says %d", len(entries), sc.batch.entries)
		}
		for _, e := range entries {
			if s := e.GetCommonProperties().GetStartTime().GetSeconds(); s != later {
				t.Fatalf("start time %d after stamping, want %d", s, later)
			}
			a := als.Attribute(id, e)
			if a.Skip != "" || !store.Record(a.Obs) {
				t.Fatalf("entry not an edge: %+v", a)
			}
		}
	}
	if store.Edges() != 30 {
		t.Errorf("the entries make %d edges, want 30", store.Edges())
	}
}

func TestBatchOfFixedSize(t *testing.T) {
	w, err := buildWorkload(small(t, "--batch", "7").gen(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range w.sidecars {
		if sc.batch.entries != 7 || len(sc.batch.seconds) != 7 {
			t.Fatalf("%d entries (%d stamps), want 7", sc.batch.entries, len(sc.batch.seconds))
		}
	}
}

// TestThroughputRun runs the bench for a second with a separate load
// process and checks the report.
func TestThroughputRun(t *testing.T) {
	cfg := small(t, "--duration", "1s", "--warmup", "0s")
	var out, log bytes.Buffer
	b := &bench{cfg: cfg, out: &out, log: &log, args: []string{"--services", "20", "--sidecars", "10", "--edges", "30"}}
	if err := b.run(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	report := out.String()
	m := regexp.MustCompile(`\| \*\*(\d+)\*\* \|`).FindStringSubmatch(report)
	if m == nil {
		t.Fatalf("no rate in the report:\n%s", report)
	}
	if rate, _ := strconv.Atoi(m[1]); rate <= 0 {
		t.Errorf("rate %d", rate)
	}
	for _, want := range []string{"entries received/s", "Server allocations:", "30 edges held, 0 dropped", "Goal ≥ 500000 entries/s", " 0 send errors"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
}

func TestSoakRun(t *testing.T) {
	cfg := small(t, "--soak", "2s", "--sample", "1s", "--warmup", "0s", "--inbound", "0.5")
	var out, log bytes.Buffer
	b := &bench{cfg: cfg, out: &out, log: &log, args: []string{"--services", "20", "--sidecars", "10", "--edges", "30", "--inbound", "0.5"}}
	if err := b.run(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	rows := regexp.MustCompile(`(?m)^\| \d+s \| \d+ \|`).FindAllString(out.String(), -1)
	if len(rows) != 2 {
		t.Fatalf("%d sample rows, want 2:\n%s", len(rows), out.String())
	}
	if !strings.Contains(out.String(), "RSS") || b.srv.Served.Load() == 0 {
		t.Errorf("served %d; report:\n%s", b.srv.Served.Load(), out.String())
	}
}

func TestFlags(t *testing.T) {
	for _, args := range [][]string{{"--conns", "0"}, {"--inbound", "2"}, {"--services", "1"}, {"--batch", "-1"}, {"--duration", "0s"}, {"extra"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestProcReadings(t *testing.T) {
	// Burn enough CPU that the 10 ms clock ticks of /proc/<pid>/stat cannot
	// hide a unit error, then check it against getrusage's microseconds.
	for selfCPU() < 200*time.Millisecond {
	}
	lo := selfCPU()
	cpu, err := procCPU(os.Getpid())
	hi := selfCPU()
	// utime and stime are each rounded down to a tick.
	if err != nil || cpu < lo-30*time.Millisecond || cpu > hi {
		t.Fatalf("procCPU(self) = %v, %v; getrusage says %v..%v", cpu, err, lo, hi)
	}
	if _, err := procCPU(1 << 30); err == nil {
		t.Error("procCPU of a pid beyond pid_max: no error")
	}
	if rss, hwm := selfMem(); rss <= 0 || hwm < rss {
		t.Errorf("rss %d, peak %d", rss, hwm)
	}
	if busy := machineBusy(); busy < hi {
		t.Errorf("machine busy %v, but this process alone used %v", busy, hi)
	}
}
