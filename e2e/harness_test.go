package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/e2e/demo"
)

// signalboxBin is the binary under test: $SIGNALBOX_BIN (make test sets it),
// else one built by TestMain.
var signalboxBin string

func TestMain(m *testing.M) {
	code := func() int {
		if p := os.Getenv("SIGNALBOX_BIN"); p != "" {
			signalboxBin = p
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "signalbox-e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		signalboxBin = filepath.Join(dir, "signalbox")
		out, err := exec.Command("go", "build", "-o", signalboxBin, "../cmd/signalbox").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build signalbox: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// proc is a running signalbox.
type proc struct {
	t        *testing.T
	cmd      *exec.Cmd
	exited   chan struct{}
	XDSAddr  string
	HTTPAddr string
	log      string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startSignalbox runs `signalbox serve` against Consul and waits until it is
// ready. xdsAddr may be "" for a free port.
func startSignalbox(t *testing.T, consulAddr, xdsAddr string, args ...string) *proc {
	t.Helper()
	return startSignalboxAt(t, consulAddr, xdsAddr, "", args...)
}

// startSignalboxAt is startSignalbox on given addresses ("": a free port),
// e.g. to restart one where it was.
func startSignalboxAt(t *testing.T, consulAddr, xdsAddr, httpAddr string, args ...string) *proc {
	t.Helper()
	p := launchSignalbox(t, consulAddr, xdsAddr, httpAddr, args...)
	p.waitReady("signalbox becomes ready", func() bool {
		code, _ := p.get("/readyz")
		return code == http.StatusOK
	})
	return p
}

// launchSignalbox starts signalbox serve without waiting for it; see
// waitReady.
func launchSignalbox(t *testing.T, consulAddr, xdsAddr, httpAddr string, args ...string) *proc {
	t.Helper()
	if xdsAddr == "" {
		xdsAddr = freeAddr(t)
	}
	if httpAddr == "" {
		httpAddr = freeAddr(t)
	}
	p := &proc{t: t, XDSAddr: xdsAddr, HTTPAddr: httpAddr, exited: make(chan struct{})}
	logf, err := os.CreateTemp(t.TempDir(), "signalbox-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p.log = logf.Name()
	all := append([]string{"serve", "--consul-addr", consulAddr, "--xds-addr", p.XDSAddr, "--http-addr", p.HTTPAddr, "--log-level", "debug"}, args...)
	p.cmd = exec.Command(signalboxBin, all...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start signalbox: %v", err)
	}
	go func() { _ = p.cmd.Wait(); logf.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("signalbox log:\n%s", lastLines(string(b), 60))
		}
	})
	return p
}

// waitReady waits up to 30s for ready, failing at once if signalbox exits.
func (p *proc) waitReady(what string, ready func() bool) {
	p.t.Helper()
	eventually(p.t, 30*time.Second, what, func() bool {
		select {
		case <-p.exited:
			b, _ := os.ReadFile(p.log)
			p.t.Fatalf("signalbox exited before it was ready:\n%s", lastLines(string(b), 40))
		default:
		}
		return ready()
	})
}

// Stop ends signalbox with SIGTERM (SIGKILL after 10s).
func (p *proc) Stop() { p.signal(syscall.SIGTERM) }

// Kill ends signalbox with SIGKILL, as a crash would.
func (p *proc) Kill() { p.signal(syscall.SIGKILL) }

func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *proc) get(path string) (int, string) {
	resp, err := http.Get("http://" + p.HTTPAddr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *proc) getJSON(path string, v any) {
	p.t.Helper()
	code, body := p.get(path)
	if code != http.StatusOK {
		p.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		p.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// backend starts a demo backend and registers it in Consul.
func backend(t *testing.T, c *consultest.Agent, service, id, version string) (*demo.Backend, consultest.Instance) {
	t.Helper()
	b, err := demo.StartBackend("127.0.0.1:0", id, version)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	in := c.RegisterInstance(t, consultest.Instance{
		Service: service, ID: id, Address: "127.0.0.1", Port: b.Addr().Port,
		Meta: map[string]string{"version": version},
	})
	return b, in
}

func dial(t *testing.T, xdsAddr, node, service string) *grpc.ClientConn {
	t.Helper()
	cc, err := demo.Dial(demo.Bootstrap(xdsAddr, node, "e2e"), service)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not a wait for an outcome
	}
	return time.Since(start)
}

// callsAvoid makes n calls and reports whether all succeeded and none reached
// any of the given server ids.
func callsAvoid(cc *grpc.ClientConn, n int, ids ...string) bool {
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r := demo.Call(ctx, cc)
		cancel()
		if r.Err != nil {
			return false
		}
		for _, id := range ids {
			if r.ServerID == id {
				return false
			}
		}
	}
	return true
}

// tallyCalls makes n calls and counts who answered.
func tallyCalls(cc *grpc.ClientConn, n int) *demo.Tally {
	var tally demo.Tally
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		tally.Add(demo.Call(ctx, cc))
		cancel()
	}
	return &tally
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
