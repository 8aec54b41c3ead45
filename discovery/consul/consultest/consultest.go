// Package consultest starts a real Consul agent for tests: on free loopback
// ports, with DNS and gRPC TLS off and the per-client connection limit raised
// so that one long poll per service fits. It also registers, flips and removes
// catalog entries the way an operator or a node's agent would.
//
// The binary comes from SIGNALBOX_CONSUL_BIN, else bin/consul at the root of
// the signalbox module (built by `make consul`). A missing binary fails the
// test: these tests are never skipped.
package consultest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// module is the module whose bin/consul is used.
const module = "github.com/signalbox/signalbox"

// BinEnv names the environment variable that overrides the binary's path.
const BinEnv = "SIGNALBOX_CONSUL_BIN"

const (
	startTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
)

// Option configures Start.
type Option func(*config)

type config struct {
	persistent bool
	node       string
	extraHCL   string
}

// Persistent runs a single-server agent with a data directory instead of an
// in-memory dev agent, so Restart keeps the catalog. It is slower to start
// (a raft election on every start).
func Persistent() Option { return func(c *config) { c.persistent = true } }

// Node names the agent's own node (default "consultest").
func Node(name string) Option { return func(c *config) { c.node = name } }

// HCL appends agent configuration in HCL.
func HCL(s string) Option { return func(c *config) { c.extraHCL += "\n" + s + "\n" } }

// Ports are the agent's loopback ports.
type Ports struct {
	HTTP, GRPC, SerfLAN, SerfWAN, Server int
}

// Agent is a running Consul agent. Its methods are safe for concurrent use.
type Agent struct {
	bin     string
	cfg     config
	ports   Ports
	dir     string // config and logs
	dataDir string // persistent mode only
	client  *api.Client

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	logPath string
	starts  int
}

// Start starts an agent and waits until it has a leader and answers catalog
// reads. It is stopped when the test ends.
func Start(t testing.TB, opts ...Option) *Agent {
	t.Helper()
	cfg := config{node: "consultest"}
	for _, o := range opts {
		o(&cfg)
	}
	bin, err := Binary()
	if err != nil {
		t.Fatalf("%v", err)
	}
	ports, err := freePorts()
	if err != nil {
		t.Fatalf("consultest: pick ports: %v", err)
	}
	a := &Agent{bin: bin, cfg: cfg, ports: ports, dir: t.TempDir()}
	if cfg.persistent {
		a.dataDir = t.TempDir()
	}
	a.client, err = newClient(a.HTTPAddr())
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	if err := os.WriteFile(filepath.Join(a.dir, "agent.hcl"), []byte(a.hcl()), 0o600); err != nil {
		t.Fatalf("consultest: write config: %v", err)
	}
	t.Cleanup(a.Stop)
	if err := a.start(); err != nil {
		t.Fatalf("consultest: %v", err)
	}
	return a
}

// Binary returns the path of the consul binary tests use.
func Binary() (string, error) {
	if p := os.Getenv(BinEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("consul binary not found at %s (from %s): %w", p, BinEnv, err)
		}
		return p, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("consul binary not found: %w: run `make consul` or set %s", err, BinEnv)
	}
	p := filepath.Join(root, "bin", "consul")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("consul binary not found at %s: run `make consul`", p)
	}
	return p, nil
}

// moduleRoot walks up from the working directory to signalbox's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(data) == module {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", module)
		}
		dir = parent
	}
}

func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// freePorts picks distinct loopback ports that are free for TCP, and for the
// serf ports also for UDP.
func freePorts() (Ports, error) {
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	pick := func(udp bool) (int, error) {
		for range 50 {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			closers = append(closers, l.Close)
			port := l.Addr().(*net.TCPAddr).Port
			if !udp {
				return port, nil
			}
			u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				continue // keep the TCP listener open so it is not picked again
			}
			closers = append(closers, u.Close)
			return port, nil
		}
		return 0, errors.New("no free port pair")
	}
	var p Ports
	var err error
	for _, f := range []struct {
		dst *int
		udp bool
	}{{&p.HTTP, false}, {&p.GRPC, false}, {&p.SerfLAN, true}, {&p.SerfWAN, true}, {&p.Server, false}} {
		if *f.dst, err = pick(f.udp); err != nil {
			return Ports{}, err
		}
	}
	return p, nil
}

func (a *Agent) hcl() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = %q\n", a.cfg.node)
	b.WriteString("bind_addr = \"127.0.0.1\"\nclient_addr = \"127.0.0.1\"\nadvertise_addr = \"127.0.0.1\"\n")
	b.WriteString("log_level = \"info\"\ndisable_update_check = true\n")
	fmt.Fprintf(&b, "ports {\n  http = %d\n  https = -1\n  grpc = %d\n  grpc_tls = -1\n  dns = -1\n  serf_lan = %d\n  serf_wan = %d\n  server = %d\n}\n",
		a.ports.HTTP, a.ports.GRPC, a.ports.SerfLAN, a.ports.SerfWAN, a.ports.Server)
	// signalbox keeps one long poll per service; the default of 200
	// connections per client address would refuse the rest.
	b.WriteString("limits {\n  http_max_conns_per_client = 10000\n}\n")
	if a.cfg.persistent {
		// Dev-mode timings, so an election takes a second, not five.
		b.WriteString("performance {\n  raft_multiplier = 1\n}\n")
	}
	b.WriteString(a.cfg.extraHCL)
	return b.String()
}

func (a *Agent) args() []string {
	args := []string{"agent", "-config-file", filepath.Join(a.dir, "agent.hcl")}
	if a.cfg.persistent {
		return append(args, "-server", "-bootstrap-expect=1", "-data-dir", a.dataDir, "-ui=false")
	}
	return append(args, "-dev")
}

func (a *Agent) start() error {
	a.mu.Lock()
	a.starts++
	logPath := filepath.Join(a.dir, fmt.Sprintf("consul-%d.log", a.starts))
	logFile, err := os.Create(logPath)
	if err != nil {
		a.mu.Unlock()
		return fmt.Errorf("create log: %w", err)
	}
	cmd := exec.Command(a.bin, a.args()...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		a.mu.Unlock()
		_ = logFile.Close()
		return fmt.Errorf("start %s: %w", a.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(exited)
	}()
	a.cmd, a.exited, a.logPath = cmd, exited, logPath
	a.mu.Unlock()

	if err := a.waitReady(exited); err != nil {
		a.Stop()
		return fmt.Errorf("consul agent on %s not ready: %w\n--- %s (tail) ---\n%s", a.HTTPAddr(), err, logPath, tail(logPath, 40))
	}
	return nil
}

// waitReady polls until the agent knows a leader, a consistent catalog read
// succeeds (a new leader refuses those until it has caught up), and the
// server's own "consul" service is registered and passing. The leader
// registers that service a moment after it is elected; waiting for it keeps
// the catalog still once Start returns, so a watcher test never sees it
// arrive late and mistake it for a change.
func (a *Agent) waitReady(exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-exited:
			return errors.New("agent exited")
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s: %w", startTimeout, last)
		case <-tick.C:
		}
		q := (&api.QueryOptions{}).WithContext(ctx)
		leader, err := a.client.Status().LeaderWithQueryOptions(q)
		if err != nil {
			last = fmt.Errorf("status/leader: %w", err)
			continue
		}
		if leader == "" {
			last = errors.New("no leader yet")
			continue
		}
		if _, _, err := a.client.Catalog().Services(q); err != nil {
			last = fmt.Errorf("catalog/services: %w", err)
			continue
		}
		self, _, err := a.client.Health().Service("consul", "", true, q)
		if err != nil {
			last = fmt.Errorf("health/service/consul: %w", err)
			continue
		}
		if len(self) == 0 {
			last = errors.New(`the server's own "consul" service is not registered and passing yet`)
			continue
		}
		return nil
	}
}

// Stop stops the agent: SIGTERM, then SIGKILL if it has not exited within
// 10 s. Stopping a stopped agent does nothing.
func (a *Agent) Stop() {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.cmd = nil
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-exited:
	case <-t.C:
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart stops the agent and starts it again on the same ports with the same
// data directory. Only a Persistent agent keeps its catalog.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	a.Stop()
	if err := a.start(); err != nil {
		t.Fatalf("consultest: restart: %v", err)
	}
}

// HTTPAddr is the HTTP API address, "127.0.0.1:port".
func (a *Agent) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.ports.HTTP)) }

// GRPCAddr is the plaintext gRPC (xDS) address, "127.0.0.1:port".
func (a *Agent) GRPCAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.ports.GRPC)) }

// Ports returns every port the agent uses.
func (a *Agent) Ports() Ports { return a.ports }

// Client is an API client for the agent, pooled for many long polls.
func (a *Agent) Client() *api.Client { return a.client }

// LogPath is the current run's log file.
func (a *Agent) LogPath() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logPath
}

// newClient builds a client that reads nothing from the environment beyond
// what consul/api insists on, with a pool large enough for one long poll per
// service.
func newClient(addr string) (*api.Client, error) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
	}
	c, err := api.NewClient(&api.Config{Address: addr, Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", addr, err)
	}
	return c, nil
}

func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
