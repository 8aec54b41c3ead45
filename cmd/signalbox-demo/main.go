// Command signalbox-demo is what `make demo` runs: a Consul dev agent (unless
// one already answers), signalbox with an operator token, two versions of a
// demo gRPC service and a front that calls it through xds:///, all traced
// with OpenTelemetry's Zipkin exporter into signalbox's live graph, and a
// client calling the front — then it prints where to look and how to start
// a release. Ctrl-C stops everything it started.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"

	"github.com/signalbox/signalbox/e2e/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "signalbox-demo: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	signalbox, consulBin, consulAddr, xdsAddr, httpAddr, logDir string
	rps                                                         int
}

func run(ctx context.Context, args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("signalbox-demo", flag.ContinueOnError)
	fs.StringVar(&o.signalbox, "signalbox", "bin/signalbox", "signalbox binary")
	fs.StringVar(&o.consulBin, "consul", "bin/consul", "consul binary, started in dev mode unless Consul already answers")
	fs.StringVar(&o.consulAddr, "consul-addr", "127.0.0.1:8500", "Consul HTTP address")
	fs.StringVar(&o.xdsAddr, "xds-addr", "127.0.0.1:18000", "signalbox xDS address")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "signalbox HTTP address")
	fs.StringVar(&o.logDir, "log-dir", "bin/demo", "where the logs of the started processes go")
	fs.IntVar(&o.rps, "rps", 20, "demo client calls per second")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := os.MkdirAll(o.logDir, 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// 1. Consul.
	cfg := api.DefaultConfig()
	cfg.Address = o.consulAddr
	client, err := api.NewClient(cfg)
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	if leader, err := client.Status().Leader(); err == nil && leader != "" {
		log.Info("using the Consul that already answers", "addr", o.consulAddr)
	} else {
		cmd, err := start(o.consulBin, filepath.Join(o.logDir, "consul.log"),
			"agent", "-dev", "-client", "127.0.0.1", "-bind", "127.0.0.1",
			"-hcl", "limits { http_max_conns_per_client = 10000 }")
		if err != nil {
			return fmt.Errorf("start consul (run `make consul` first?): %w", err)
		}
		defer stopProcess(cmd, "consul", log)
		if err := poll(ctx, 30*time.Second, func() bool {
			l, err := client.Status().Leader()
			return err == nil && l != ""
		}); err != nil {
			return fmt.Errorf("consul did not elect a leader (see %s/consul.log): %w", o.logDir, err)
		}
		log.Info("started a Consul dev agent", "addr", o.consulAddr, "log", filepath.Join(o.logDir, "consul.log"))
	}

	// 2. signalbox, with an operator token for the release API.
	token, tokensFile, err := writeToken(o.logDir)
	if err != nil {
		return err
	}
	sb, err := start(o.signalbox, filepath.Join(o.logDir, "signalbox.log"), "serve",
		"--consul-addr", o.consulAddr, "--xds-addr", o.xdsAddr, "--http-addr", o.httpAddr, "--api-tokens", tokensFile)
	if err != nil {
		return fmt.Errorf("start signalbox (run `make build` first?): %w", err)
	}
	defer stopProcess(sb, "signalbox", log)
	if err := poll(ctx, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + o.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return fmt.Errorf("signalbox did not become ready (see %s/signalbox.log): %w", o.logDir, err)
	}
	spansURL := "http://" + o.httpAddr + "/api/v2/spans"
	traced := func(service, version string) (*demo.Tracing, error) {
		tr, err := demo.NewTracing(spansURL, service, version, time.Second)
		if err != nil {
			return nil, err
		}
		return tr, nil
	}
	register := func(id, name, version string, b *demo.Backend) (func(), error) {
		reg := &api.AgentServiceRegistration{
			ID: id, Name: name, Address: "127.0.0.1", Port: b.Addr().Port,
			Meta: map[string]string{"version": version},
			Check: &api.AgentServiceCheck{
				TCP: b.Addr().String(), Interval: "2s", Timeout: "1s", Status: api.HealthPassing,
			},
		}
		if err := client.Agent().ServiceRegister(reg); err != nil {
			return nil, fmt.Errorf("register %s in consul: %w", id, err)
		}
		log.Info("demo service up", "service", name, "id", id, "version", version, "addr", b.Addr().String())
		return func() { _ = client.Agent().ServiceDeregister(id) }, nil
	}

	// 3. Two versions of greeter, registered with a TCP check, each
	// sending its server spans to signalbox.
	for i, v := range []string{"v1", "v1", "v2"} {
		id := fmt.Sprintf("greeter-%s-%d", v, i+1)
		tr, err := traced("greeter", v)
		if err != nil {
			return err
		}
		defer func() { _ = tr.Shutdown(context.Background()) }()
		b, err := demo.StartBackendWith("127.0.0.1:0", id, v, demo.BackendOptions{ServerOptions: []grpc.ServerOption{tr.ServerOption()}})
		if err != nil {
			return err
		}
		defer b.Stop()
		deregister, err := register(id, "greeter", v, b)
		if err != nil {
			return err
		}
		defer deregister()
	}

	// 4. web, a front that calls greeter through xds:///greeter.
	webTr, err := traced("web", "v1")
	if err != nil {
		return err
	}
	defer func() { _ = webTr.Shutdown(context.Background()) }()
	upstream, err := demo.Dial(demo.Bootstrap(o.xdsAddr, "web-1", "web"), "greeter", webTr.DialOption())
	if err != nil {
		return err
	}
	defer upstream.Close()
	web, err := demo.StartBackendWith("127.0.0.1:0", "web-1", "v1", demo.BackendOptions{ServerOptions: []grpc.ServerOption{webTr.ServerOption()}, Upstream: upstream})
	if err != nil {
		return err
	}
	defer web.Stop()
	deregister, err := register("web-1", "web", "v1", web)
	if err != nil {
		return err
	}
	defer deregister()

	// 5. Steady traffic: a client calls web through xds:///web. Its own
	// client spans name it, so the graph shows where web's calls come from.
	clientTr, err := traced("demo-client", "v1")
	if err != nil {
		return err
	}
	defer func() { _ = clientTr.Shutdown(context.Background()) }()
	cc, err := demo.Dial(demo.Bootstrap(o.xdsAddr, "demo-client-1", "demo-client"), "web", clientTr.DialOption())
	if err != nil {
		return err
	}
	defer cc.Close()
	var tally demo.Tally
	go demo.Load(ctx, cc, time.Second/time.Duration(max(o.rps, 1)), &tally)

	fmt.Fprintf(out, `
signalbox demo is running. Look at:
  the dashboard (graph, releases, proxies) http://%[1]s/
  the live service graph                  http://%[1]s/api/v1/graph?by=version   (or: bin/signalbox graph --addr %[1]s --by version)
  the graph as it changes (SSE)           http://%[1]s/api/v1/graph/stream
  releases                                http://%[1]s/api/v1/rollouts
  the HTTP API (OpenAPI)                  http://%[1]s/api/v1/openapi.yaml
  xDS clients and what they acknowledged  http://%[1]s/debug/xds/clients
  what signalbox serves                   http://%[1]s/debug/xds/status
  Consul view and staleness               http://%[1]s/debug/consul
  Prometheus metrics                      http://%[1]s/metrics
  Consul UI                               http://%[2]s/ui
  logs                                    %[3]s/
The demo client calls xds:///web %[4]d times a second; web calls xds:///greeter (2 instances of v1, 1 of v2);
all three send their spans to signalbox, which draws demo-client → web → greeter.

Release greeter v2 (operator token below; it is in %[6]s):
  export SIGNALBOX_ADDR=%[1]s SIGNALBOX_TOKEN=%[7]s
  bin/signalbox rollout start --service greeter --baseline v1 --candidate v2 --steps 10,50 --step-interval 20s --min-requests 20 --watch
  bin/signalbox rollout list
Try: consul maint -enable -service greeter-v2-3 -http-addr=%[2]s   (traffic leaves v2)
     bin/signalbox bootstrap --service greeter --node-id greeter-envoy-1 --app-port 50051 --xds-addr %[5]s
                                                      (an Envoy sidecar's bootstrap for this demo)
Ctrl-C stops everything the demo started.

`, o.httpAddr, o.consulAddr, o.logDir, o.rps, o.xdsAddr, tokensFile, token)

	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nstopping...")
			return nil
		case <-tick.C:
			fmt.Fprintf(out, "client: %s\n", tally.String())
		}
	}
}

// start runs a child process with its output in logPath. The process gets
// its own process group so Ctrl-C reaches it only through stopProcess.
func start(bin, logPath string, args ...string) (*exec.Cmd, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { _ = cmd.Wait(); f.Close() }()
	return cmd, nil
}

func stopProcess(cmd *exec.Cmd, name string, log *slog.Logger) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			log.Info("stopped", "process", name)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	log.Warn("killed after 10s", "process", name, "pid", strconv.Itoa(cmd.Process.Pid))
}

func poll(ctx context.Context, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out after " + within.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// writeToken makes a fresh operator token for this run and writes the
// tokens file signalbox reads (mode 0600, as signalbox requires).
func writeToken(dir string) (token, path string, err error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("operator token: %w", err)
	}
	token = hex.EncodeToString(b)
	path = filepath.Join(dir, "api-tokens")
	if err := os.WriteFile(path, []byte("# written by signalbox-demo\noperator:"+token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write %s: %w", path, err)
	}
	// WriteFile keeps the mode of a file that was there: make sure.
	if err := os.Chmod(path, 0o600); err != nil {
		return "", "", fmt.Errorf("chmod %s: %w", path, err)
	}
	return token, path, nil
}
