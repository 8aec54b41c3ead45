// Package demo holds the demo workload that `make demo` and the end-to-end
// tests run: a gRPC backend that says which instance and version answered
// (gRPC's own grpc.testing.TestService, so no generated code of ours), and a
// client that calls a service through the xds:/// resolver and counts who
// answered.
package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
)

// Backend is one demo instance. It answers UnaryCall with ServerId set to its
// instance id and Hostname set to its version, and fails a share of calls
// with UNAVAILABLE when told to.
type Backend struct {
	testgrpc.UnimplementedTestServiceServer
	ID      string
	Version string

	lis      net.Listener
	srv      *grpc.Server
	upstream *grpc.ClientConn
	calls    atomic.Uint64
	failures atomic.Uint64
	failPPM  atomic.Uint32 // failure rate in parts per million
}

// StartBackend listens on addr ("127.0.0.1:0" for any port) and serves.
func StartBackend(addr, id, version string) (*Backend, error) {
	return StartBackendWith(addr, id, version, BackendOptions{})
}

// BackendOptions make a backend traced, or a front that relays each call.
type BackendOptions struct {
	// ServerOptions are added to the gRPC server's (e.g. Tracing.ServerOption).
	ServerOptions []grpc.ServerOption
	// Upstream, when set, makes the backend a front: each call is passed on
	// to it (with the incoming context, so traces join up), and its answer
	// or failure returned.
	Upstream *grpc.ClientConn
}

// StartBackendWith is StartBackend with options.
func StartBackendWith(addr, id, version string, o BackendOptions) (*Backend, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("backend %s: listen on %s: %w", id, addr, err)
	}
	b := &Backend{ID: id, Version: version, lis: lis, srv: grpc.NewServer(o.ServerOptions...), upstream: o.Upstream}
	testgrpc.RegisterTestServiceServer(b.srv, b)
	go func() { _ = b.srv.Serve(lis) }()
	return b, nil
}

// Addr is the backend's listening address.
func (b *Backend) Addr() *net.TCPAddr { return b.lis.Addr().(*net.TCPAddr) }

// Calls is how many calls the backend received.
func (b *Backend) Calls() uint64 { return b.calls.Load() }

// SetFailureRate makes the backend fail rate (0..1) of its calls.
func (b *Backend) SetFailureRate(rate float64) {
	b.failPPM.Store(uint32(min(max(rate, 0), 1) * 1e6))
}

// Stop stops serving at once.
func (b *Backend) Stop() { b.srv.Stop() }

// UnaryCall implements grpc.testing.TestService.
func (b *Backend) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.calls.Add(1)
	if b.upstream != nil {
		resp, err := testgrpc.NewTestServiceClient(b.upstream).UnaryCall(ctx, req)
		if err != nil {
			b.failures.Add(1)
			return nil, status.Errorf(status.Code(err), "front %s: upstream: %v", b.ID, err)
		}
		return resp, nil
	}
	if p := b.failPPM.Load(); p > 0 && rand.Uint32N(1e6) < p {
		b.failures.Add(1)
		return nil, status.Errorf(codes.Unavailable, "demo backend %s (%s): injected failure", b.ID, b.Version)
	}
	return &testgrpc.SimpleResponse{ServerId: b.ID, Hostname: b.Version}, nil
}

// Bootstrap is a gRPC xDS bootstrap for a client with the given node id that
// talks to the control plane at xdsAddr.
func Bootstrap(xdsAddr, nodeID, nodeCluster string) []byte {
	return fmt.Appendf(nil, `{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q, "cluster": %q, "locality": {}}
}`, xdsAddr, nodeID, nodeCluster)
}

// Dial connects to xds:///<service> with its own bootstrap, so that several
// clients with their own node ids can live in one process.
func Dial(bootstrap []byte, service string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts := append([]grpc.DialOption(nil), extra...)
	if bootstrap != nil {
		b, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
		if err != nil {
			return nil, fmt.Errorf("xds resolver: %w", err)
		}
		opts = append(opts, grpc.WithResolvers(b))
	}
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	cc, err := grpc.NewClient("xds:///"+service, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial xds:///%s: %w", service, err)
	}
	return cc, nil
}

// Result is one call's outcome.
type Result struct {
	ServerID string
	Version  string
	Err      error
}

// Call makes one UnaryCall.
func Call(ctx context.Context, cc *grpc.ClientConn) Result {
	resp, err := testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testgrpc.SimpleRequest{})
	if err != nil {
		return Result{Err: err}
	}
	return Result{ServerID: resp.GetServerId(), Version: resp.GetHostname()}
}

// Tally counts results by server id and by version. Safe for concurrent use.
type Tally struct {
	mu        sync.Mutex
	byServer  map[string]int
	byVersion map[string]int
	failures  int
	lastErr   error
	total     int
}

// Add counts one result.
func (t *Tally) Add(r Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byServer == nil {
		t.byServer, t.byVersion = map[string]int{}, map[string]int{}
	}
	t.total++
	if r.Err != nil {
		t.failures++
		t.lastErr = r.Err
		return
	}
	t.byServer[r.ServerID]++
	t.byVersion[r.Version]++
}

// Snapshot returns copies of the counts.
func (t *Tally) Snapshot() (byServer, byVersion map[string]int, total, failures int, lastErr error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	byServer, byVersion = map[string]int{}, map[string]int{}
	for k, v := range t.byServer {
		byServer[k] = v
	}
	for k, v := range t.byVersion {
		byVersion[k] = v
	}
	return byServer, byVersion, t.total, t.failures, t.lastErr
}

// String is a one-line summary for logs.
func (t *Tally) String() string {
	bs, bv, total, failures, lastErr := t.Snapshot()
	keys := func(m map[string]int) string {
		var ks []string
		for k, v := range m {
			ks = append(ks, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(ks)
		return fmt.Sprint(ks)
	}
	s := fmt.Sprintf("total=%d failures=%d versions=%s servers=%s", total, failures, keys(bv), keys(bs))
	if lastErr != nil {
		s += " lastErr=" + lastErr.Error()
	}
	return s
}

// Load calls cc every interval until ctx ends, adding every result to t.
// It is the demo's steady traffic and the e2e tests' "clients keep calling".
func Load(ctx context.Context, cc *grpc.ClientConn, interval time.Duration, t *Tally) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r := Call(callCtx, cc)
		cancel()
		if ctx.Err() != nil {
			return // a call cut short by the end of the run is not a failure
		}
		t.Add(r)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Failures is how many calls the backend failed.
func (b *Backend) Failures() uint64 { return b.failures.Load() }
