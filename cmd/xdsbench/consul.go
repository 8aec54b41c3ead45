package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"golang.org/x/sync/errgroup"
)

// consulAgent is the dev agent the bench runs.
type consulAgent struct {
	*child
	httpAddr string
	grpcAddr string
	client   *api.Client
}

const (
	checkID     = "bench-health"
	appPort     = 8080
	sidecarPort = 21000
)

// startConsul runs `consul agent -dev` on free loopback ports and waits until
// it has a leader and answers catalog reads.
func startConsul(ctx context.Context, bin, logDir string) (*consulAgent, error) {
	ports, err := freePorts(5, 2)
	if err != nil {
		return nil, fmt.Errorf("consul: pick ports: %w", err)
	}
	serfLAN, serfWAN, httpPort, grpcPort, serverPort := ports[0], ports[1], ports[2], ports[3], ports[4]
	// Consul refuses a connection limit above its file descriptor limit.
	maxConns := 100000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(maxConns)+1000 {
		maxConns = int(lim.Cur) - 1000
	}
	args := []string{"agent", "-dev",
		"-node=xdsbench", "-bind=127.0.0.1", "-client=127.0.0.1",
		"-log-level=info",
		"-http-port=" + strconv.Itoa(httpPort),
		"-grpc-port=" + strconv.Itoa(grpcPort),
		"-serf-lan-port=" + strconv.Itoa(serfLAN),
		"-serf-wan-port=" + strconv.Itoa(serfWAN),
		"-server-port=" + strconv.Itoa(serverPort),
		"-dns-port=-1",
		"-hcl", "ports { grpc_tls = -1 }",
		// signalbox keeps one long poll per service.
		"-hcl", fmt.Sprintf("limits { http_max_conns_per_client = %d }", maxConns),
		"-hcl", "disable_update_check = true",
	}
	ch, err := startChild("consul", filepath.Join(logDir, "consul.log"), bin, args...)
	if err != nil {
		return nil, err
	}
	a := &consulAgent{
		child:    ch,
		httpAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)),
		grpcAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(grpcPort)),
	}
	a.client, err = newConsulClient(a.httpAddr)
	if err != nil {
		ch.stop(5 * time.Second)
		return nil, err
	}
	if err := a.waitReady(ctx, 60*time.Second); err != nil {
		ch.stop(5 * time.Second)
		return nil, fmt.Errorf("consul not ready: %w\n%s", err, tailFile(ch.logPath, 30))
	}
	return a, nil
}

func newConsulClient(addr string) (*api.Client, error) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	c, err := api.NewClient(&api.Config{Address: addr, Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", addr, err)
	}
	return c, nil
}

func (a *consulAgent) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if err := a.alive(); err != nil {
			return err
		}
		q := (&api.QueryOptions{}).WithContext(ctx)
		leader, err := a.client.Status().LeaderWithQueryOptions(q)
		switch {
		case err != nil:
			last = err
		case leader == "":
			last = errors.New("no leader yet")
		default:
			if _, _, err := a.client.Catalog().Services(q); err != nil {
				last = err
			} else {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitCARoots waits until Connect's built-in CA has a root, without which no
// proxy gets a leaf certificate and Consul's xDS server sends nothing.
func (a *consulAgent) waitCARoots(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		roots, _, err := a.client.Connect().CARoots((&api.QueryOptions{}).WithContext(ctx))
		if err == nil && roots != nil && len(roots.Roots) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no Connect CA root: %w (last error %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// layout names the services, nodes and addresses of a run.
type layout struct {
	S, I, PeerClients, K int
	width                int
}

func newLayout(s, i, peers, k int) layout {
	w := max(4, len(strconv.Itoa(s-1)))
	return layout{S: s, I: i, PeerClients: peers, K: k, width: w}
}

func (l layout) service(s int) string { return fmt.Sprintf("svc-%0*d", l.width, s) }
func (l layout) node(s, i int) string { return fmt.Sprintf("node-%s-%d", l.service(s), i) }
func (l layout) appID(s, i int) string {
	return fmt.Sprintf("%s-%d", l.service(s), i)
}
func (l layout) sidecarID(s, i int) string { return l.appID(s, i) + "-sidecar-proxy" }

// addr is the fake address of instance i of service s: one per node, in
// 10.0.0.0/8. Nothing dials it.
func (l layout) addr(s, i int) string { return ipFrom(10, s*l.I+i+1) }

func (l layout) peerID(p int) string   { return fmt.Sprintf("bench-client-%d", p) }
func (l layout) peerNode(p int) string { return fmt.Sprintf("bench-client-node-%d", p) }
func (l layout) peerAddr(p int) string { return ipFrom(11, p+1) }

func ipFrom(first byte, n int) string {
	return net.IPv4(first, byte(n>>16), byte(n>>8), byte(n)).String()
}

// register writes every node, instance, sidecar and client proxy through
// /v1/catalog/register with bounded parallelism. progress is called with
// the number of writes done and the total.
func (a *consulAgent) register(ctx context.Context, l layout, withPeer bool, workers int, progress func(done, total int)) error {
	type job func() error
	total := l.S * l.I
	if withPeer {
		total = 2*l.S*l.I + l.PeerClients
	}
	jobs := make(chan job)
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			for j := range jobs {
				if err := j(); err != nil {
					return err
				}
				progress(int(done.Add(1)), total)
			}
			return nil
		})
	}
	cat := a.client.Catalog()
	wo := func() *api.WriteOptions { return (&api.WriteOptions{}).WithContext(gctx) }
	g.Go(func() error {
		defer close(jobs)
		send := func(j job) bool {
			select {
			case jobs <- j:
				return true
			case <-gctx.Done():
				return false
			}
		}
		for s := range l.S {
			for i := range l.I {
				node, addr := l.node(s, i), l.addr(s, i)
				app := &api.CatalogRegistration{
					Node: node, Address: addr,
					Service: &api.AgentService{
						ID: l.appID(s, i), Service: l.service(s), Port: appPort,
						Meta: map[string]string{"version": "v1"},
					},
					Check: &api.AgentCheck{
						Node: node, CheckID: checkID, Name: checkID, Status: api.HealthPassing,
						Output: "registered by xdsbench",
					},
				}
				if !send(func() error {
					if _, err := cat.Register(app, wo()); err != nil {
						return fmt.Errorf("register %s on %s: %w", app.Service.ID, node, err)
					}
					return nil
				}) {
					return gctx.Err()
				}
				if !withPeer {
					continue
				}
				side := &api.CatalogRegistration{
					Node: node, Address: addr, SkipNodeUpdate: true,
					Service: &api.AgentService{
						Kind: api.ServiceKindConnectProxy,
						ID:   l.sidecarID(s, i), Service: l.service(s) + "-sidecar-proxy", Port: sidecarPort,
						Proxy: &api.AgentServiceConnectProxyConfig{
							DestinationServiceName: l.service(s),
							DestinationServiceID:   l.appID(s, i),
							LocalServiceAddress:    "127.0.0.1",
							LocalServicePort:       appPort,
						},
					},
				}
				if !send(func() error {
					if _, err := cat.Register(side, wo()); err != nil {
						return fmt.Errorf("register %s on %s: %w", side.Service.ID, node, err)
					}
					return nil
				}) {
					return gctx.Err()
				}
			}
		}
		if !withPeer {
			return nil
		}
		for p := range l.PeerClients {
			var ups []api.Upstream
			for j, s := range assignServices(p, l.K, l.S) {
				ups = append(ups, api.Upstream{
					DestinationType: api.UpstreamDestTypeService,
					DestinationName: l.service(s),
					LocalBindPort:   10000 + j,
				})
			}
			reg := &api.CatalogRegistration{
				Node: l.peerNode(p), Address: l.peerAddr(p),
				Service: &api.AgentService{
					Kind: api.ServiceKindConnectProxy,
					ID:   l.peerID(p), Service: "bench-client-sidecar-proxy", Port: sidecarPort,
					Proxy: &api.AgentServiceConnectProxyConfig{
						DestinationServiceName: "bench-client",
						DestinationServiceID:   "bench-client",
						LocalServiceAddress:    "127.0.0.1",
						LocalServicePort:       appPort,
						Upstreams:              ups,
					},
				},
			}
			if !send(func() error {
				if _, err := cat.Register(reg, wo()); err != nil {
					return fmt.Errorf("register client proxy %s: %w", reg.Service.ID, err)
				}
				return nil
			}) {
				return gctx.Err()
			}
		}
		return nil
	})
	return g.Wait()
}

// setHealth sets the node check of instance i of service s: one catalog
// write that changes both the app instance and its sidecar.
func (a *consulAgent) setHealth(ctx context.Context, l layout, s, i int, passing bool) error {
	status := api.HealthCritical
	if passing {
		status = api.HealthPassing
	}
	node := l.node(s, i)
	reg := &api.CatalogRegistration{
		Node: node, Address: l.addr(s, i), SkipNodeUpdate: true,
		Check: &api.AgentCheck{Node: node, CheckID: checkID, Name: checkID, Status: status, Output: "set by xdsbench"},
	}
	_, err := a.client.Catalog().Register(reg, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("set %s on %s: %w", status, node, err)
	}
	return nil
}

// serviceCount is how many service names the catalog lists.
func (a *consulAgent) serviceCount(ctx context.Context) (int, error) {
	names, _, err := a.client.Catalog().Services((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, err
	}
	return len(names), nil
}

// probe is a blocking query on /v1/health/service/<svc> started before a
// write: the time it returns is when Consul itself answers a watcher like
// signalbox's, the first leg of signalbox's path.
type probe struct {
	done chan struct{}
	at   time.Time
	err  error
}

func (a *consulAgent) startProbe(ctx context.Context, service string) (*probe, error) {
	_, meta, err := a.client.Health().Service(service, "", false, (&api.QueryOptions{AllowStale: true}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("probe %s: %w", service, err)
	}
	p := &probe{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		q := &api.QueryOptions{AllowStale: true, WaitIndex: meta.LastIndex, WaitTime: 15 * time.Second}
		_, _, err := a.client.Health().Service(service, "", false, q.WithContext(ctx))
		p.at, p.err = time.Now(), err
	}()
	return p, nil
}
