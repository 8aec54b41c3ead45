package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/signalbox/signalbox/api"
	"github.com/signalbox/signalbox/discovery/consul"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/rollout/controller"
	"github.com/signalbox/signalbox/rollout/metrics"
	"github.com/signalbox/signalbox/rollout/notify"
	"github.com/signalbox/signalbox/topology"
	"github.com/signalbox/signalbox/topology/als"
	"github.com/signalbox/signalbox/topology/zipkin"
	"github.com/signalbox/signalbox/xds/build"
	"github.com/signalbox/signalbox/xds/nodeauth"
	"github.com/signalbox/signalbox/xds/policy"
	"github.com/signalbox/signalbox/xds/server"
)

// serveConfig is every setting of `signalbox serve`; each is a flag and a
// key of the config file with the same name.
type serveConfig struct {
	configFile      string
	consulAddr      string
	consulToken     string
	consulDC        string
	consulWait      time.Duration
	xdsAddr         string
	httpAddr        string
	advertiseAddr   string
	debounceQuiet   time.Duration
	debounceMax     time.Duration
	removalGrace    time.Duration
	routeWarning    bool
	shutdownTimeout time.Duration
	logLevel        string
	logFormat       string
	apiTokens       string
	rolloutInterval time.Duration
	rolloutPrefix   string
	zipkinSettle    time.Duration
	graphBucket     time.Duration
	graphRetention  time.Duration
	graphMaxEdges   int
	webhooks        string
	tlsCert         string
	tlsKey          string
	tlsClientCA     string
	tlsClientID     string
	// policy is the telemetry and traffic policy from the config file's
	// sections, with the defaults filled in.
	policy policy.Config
}

func newServe(getenv func(string) string) *cobra.Command {
	cmd, c := serveCommand()
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := c.resolve(cmd.Flags(), getenv); err != nil {
			return err
		}
		log, err := newLogger(cmd.ErrOrStderr(), c.logLevel, c.logFormat)
		if err != nil {
			return usageError{err}
		}
		return serve(cmd.Context(), *c, log)
	}
	return cmd
}

// serveCommand declares the command and its flags, bound to the returned config.
func serveCommand() (*cobra.Command, *serveConfig) {
	c := &serveConfig{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the control plane: watch Consul, serve xDS, metrics and debug views",
		Long: `Run the control plane: watch Consul, serve xDS, metrics and debug views.

Every flag can also be set in a YAML file given with --config, under the
same name (for example "xds-addr: 0.0.0.0:18000"). The command line wins
over the file, the file over the environment (CONSUL_HTTP_ADDR,
CONSUL_HTTP_TOKEN), the environment over the defaults.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&c.configFile, "config", "", "YAML config file with the same keys as these flags")
	fs.StringVar(&c.consulAddr, "consul-addr", "127.0.0.1:8500", "Consul HTTP address (env CONSUL_HTTP_ADDR)")
	fs.StringVar(&c.consulToken, "consul-token", "", "Consul ACL token (env CONSUL_HTTP_TOKEN)")
	fs.StringVar(&c.consulDC, "consul-datacenter", "", "Consul datacenter to watch (default: the agent's)")
	fs.DurationVar(&c.consulWait, "consul-wait", 60*time.Second, "longest wait of a Consul blocking query")
	fs.StringVar(&c.xdsAddr, "xds-addr", "127.0.0.1:18000", "gRPC address for xDS (ADS, SotW and delta)")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP address for /metrics, /debug/, /healthz, /readyz")
	fs.StringVar(&c.advertiseAddr, "advertise-addr", "", "host sidecars reach signalbox at, for the default Zipkin collector (default: the host of --http-addr)")
	fs.DurationVar(&c.debounceQuiet, "debounce-quiet", 10*time.Millisecond, "quiet period before cluster, listener and route changes are pushed")
	fs.DurationVar(&c.debounceMax, "debounce-max", 100*time.Millisecond, "longest a change waits for the quiet period")
	fs.DurationVar(&c.removalGrace, "removal-grace", 5*time.Second, "how long an unreferenced cluster stays served")
	fs.BoolVar(&c.routeWarning, "route-warning", true, "send traffic to instances whose checks warn")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 2*time.Second, "how long to drain connections on SIGINT/SIGTERM")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.apiTokens, "api-tokens", "", "file of API bearer tokens, one \"role:token\" a line (role viewer or operator); without it the API is read-only")
	fs.DurationVar(&c.zipkinSettle, "zipkin-settle", 5*time.Second, "how long a trace must be quiet before its spans are linked into the graph")
	fs.DurationVar(&c.graphBucket, "graph-bucket", 10*time.Second, "width of the live graph's time buckets (1s to 1m)")
	fs.DurationVar(&c.graphRetention, "graph-retention", 15*time.Minute, "how much of the past the live graph keeps: its longest window (a whole number of buckets, at most 1,440 of them)")
	fs.IntVar(&c.graphMaxEdges, "graph-max-edges", 20000, "cap on the live graph's edges; traffic of edges past it is counted as dropped (memory grows with edges × buckets)")
	fs.StringVar(&c.webhooks, "rollout-webhooks", "", "JSON file of webhooks told of every release's phase changes and decisions")
	fs.DurationVar(&c.rolloutInterval, "rollout-interval", time.Second, "how often the release controller looks at the traffic")
	fs.StringVar(&c.rolloutPrefix, "rollout-kv-prefix", "signalbox/rollouts/", "Consul KV prefix where rollouts are kept")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate: serve TLS on the xDS and HTTP ports (with --tls-key; reloaded when the files change)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&c.tlsClientCA, "tls-client-ca", "", "PEM CA bundle: the xDS port requires client certificates it signed (mutual TLS)")
	fs.StringVar(&c.tlsClientID, "tls-client-identity", identityService, "with --tls-client-ca: \"service\" lets a client speak only for the service its certificate names (SPIFFE URI .../svc/<service>, else the common name) as its node's cluster; \"any\" lets any certificate from the CA claim any node")

	return cmd, c
}

// resolve applies the config file and the environment to the flags that the
// command line left unset, then checks the result.
func (c *serveConfig) resolve(fs *pflag.FlagSet, getenv func(string) string) error {
	fromFile := map[string]bool{}
	var policyYAML []byte
	if c.configFile != "" {
		var err error
		if fromFile, policyYAML, err = applyConfigFile(fs, c.configFile); err != nil {
			return err
		}
	}
	if err := applyEnv(fs, "consul-addr", "CONSUL_HTTP_ADDR", getenv, fromFile); err != nil {
		return err
	}
	if err := applyEnv(fs, "consul-token", "CONSUL_HTTP_TOKEN", getenv, fromFile); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return usageError{err}
	}
	if _, err := newLogger(io.Discard, c.logLevel, c.logFormat); err != nil {
		return usageError{err}
	}
	c.policy = policy.DefaultConfig("")
	if policyYAML != nil {
		var err error
		if c.policy, err = policy.ParseConfig(policyYAML); err != nil {
			return usageError{fmt.Errorf("config file %s: %w", c.configFile, err)}
		}
	}
	c.policy = c.policy.WithSelfZipkinURL(c.selfZipkinURL())
	if err := c.policy.Validate(); err != nil {
		return usageError{fmt.Errorf("config file %s: %w", c.configFile, err)}
	}
	return nil
}

// selfZipkinURL is signalbox's own Zipkin endpoint as sidecars reach it.
func (c *serveConfig) selfZipkinURL() string {
	host, port, _ := net.SplitHostPort(c.httpAddr)
	if c.advertiseAddr != "" {
		host = c.advertiseAddr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if c.tlsCert != "" {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port) + "/api/v2/spans"
}

func (c serveConfig) validate() error {
	var errs []error
	for name, addr := range map[string]string{"xds-addr": c.xdsAddr, "http-addr": c.httpAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: want host:port: %w", name, addr, err))
		}
	}
	if strings.TrimSpace(c.consulAddr) == "" {
		errs = append(errs, errors.New("--consul-addr is empty"))
	}
	for name, d := range map[string]time.Duration{"consul-wait": c.consulWait, "debounce-quiet": c.debounceQuiet, "debounce-max": c.debounceMax, "removal-grace": c.removalGrace, "shutdown-timeout": c.shutdownTimeout, "rollout-interval": c.rolloutInterval, "zipkin-settle": c.zipkinSettle} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("--%s %v: must be positive", name, d))
		}
	}
	if p := c.rolloutPrefix; p == "" || !strings.HasSuffix(p, "/") || strings.HasPrefix(p, "/") {
		errs = append(errs, fmt.Errorf("--rollout-kv-prefix %q: want a KV path ending in /, e.g. signalbox/rollouts/", p))
	}
	if c.debounceMax < c.debounceQuiet {
		errs = append(errs, fmt.Errorf("--debounce-max %v is shorter than --debounce-quiet %v", c.debounceMax, c.debounceQuiet))
	}
	if err := checkGraphSize(c.graphBucket, c.graphRetention, c.graphMaxEdges); err != nil {
		errs = append(errs, err)
	}
	if err := validateServerTLS(c.tlsCert, c.tlsKey, c.tlsClientCA); err != nil {
		errs = append(errs, err)
	}
	if c.tlsClientID != identityService && c.tlsClientID != identityAny {
		errs = append(errs, fmt.Errorf("--tls-client-identity %q: want %q or %q", c.tlsClientID, identityService, identityAny))
	}
	return errors.Join(errs...)
}

// checkGraphSize checks the live graph's --graph-* sizes.
func checkGraphSize(bucket, retention time.Duration, maxEdges int) error {
	var errs []error
	if bucket < time.Second || bucket > time.Minute || bucket%time.Second != 0 {
		errs = append(errs, fmt.Errorf("--graph-bucket %v: want whole seconds from 1s to 1m", bucket))
	} else if n := retention / bucket; retention%bucket != 0 || n < 6 || n > 1440 {
		errs = append(errs, fmt.Errorf("--graph-retention %v: want a whole number of --graph-bucket %v, from 6 to 1,440 of them (%v to %v)", retention, bucket, 6*bucket, 1440*bucket))
	}
	if maxEdges < 1 {
		errs = append(errs, fmt.Errorf("--graph-max-edges %d: want at least 1", maxEdges))
	}
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// serve wires the parts and runs them until ctx ends or one fails.
func serve(ctx context.Context, c serveConfig, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	tlsConf, err := loadServerTLS(c.tlsCert, c.tlsKey, c.tlsClientCA, log.With("part", "tls"))
	if err != nil {
		return err
	}

	// Bind both ports first: a port in use is an error at once, not later.
	xdsLis, err := net.Listen("tcp", c.xdsAddr)
	if err != nil {
		return fmt.Errorf("listen for xDS on %s: %w", c.xdsAddr, err)
	}
	httpLis, err := net.Listen("tcp", c.httpAddr)
	if err != nil {
		xdsLis.Close()
		return fmt.Errorf("listen for HTTP on %s: %w", c.httpAddr, err)
	}

	client, err := consul.NewClient(c.consulAddr, c.consulToken)
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	watcher := consul.New(client, consul.Options{
		Datacenter: c.consulDC,
		WaitTime:   c.consulWait,
		Logger:     log.With("part", "consul"),
		Registerer: reg,
	})
	var (
		alsOpts   []als.Option
		nodeCheck func(context.Context, *corev3.Node) error
	)
	if tlsConf.mutual() && c.tlsClientID == identityService {
		// A certificate speaks for its service only: xDS requests and
		// access-log streams naming another node are refused.
		nodes := nodeauth.New(nodeauth.Options{Logger: log.With("part", "nodeauth"), Registerer: reg})
		nodeCheck = nodes.XDS
		alsOpts = append(alsOpts, als.WithNodeCheck(func(ctx context.Context, n *corev3.Node) error { return nodes.Node(ctx, "als", n) }))
	}
	xsrv := server.New(server.Options{
		NodeCheck:    nodeCheck,
		Quiet:        c.debounceQuiet,
		MaxDelay:     c.debounceMax,
		RemovalGrace: c.removalGrace,
		Policy:       build.Policy{AllowWarning: c.routeWarning, Services: c.policy.ForCatalog},
		Logger:       log.With("part", "xds"),
		Registerer:   reg,
	})
	grpcOpts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(1 << 20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(als.MaxMessageBytes),
		// Hands access log messages to als in gRPC's own buffer (no decode
		// into Envoy's types); every other message takes gRPC's proto codec.
		als.ServerOption(),
	}
	if tlsConf != nil {
		// Sidecars' and clients' xDS and access logs, with their
		// certificates verified when a client CA is set.
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(tlsConf.xdsConfig())))
	}
	grpcSrv := grpc.NewServer(grpcOpts...)
	xsrv.Register(ctx, grpcSrv)

	// The live graph: sidecars' access logs arrive on the xDS port.
	store := topology.New(topology.Options{Bucket: c.graphBucket, Buckets: int(c.graphRetention / c.graphBucket), MaxEdges: c.graphMaxEdges})
	alsSrv := als.NewServer(store, time.Now, append(alsOpts, als.WithLogger(log.With("part", "als")))...)
	alsSrv.Register(grpcSrv)
	// Spans from Envoy's Zipkin tracer and OpenTelemetry's Zipkin exporter
	// arrive on the HTTP port.
	spans := zipkin.NewCollector(store, time.Now, zipkin.Options{Settle: c.zipkinSettle, Logger: log.With("part", "zipkin")})
	registerTopologyMetrics(reg, store, alsSrv, spans)

	// Releases: every replica serves the plans kept in Consul KV; the one
	// holding the lock drives them.
	tokens, err := loadTokens(c.apiTokens)
	if err != nil {
		xdsLis.Close()
		httpLis.Close()
		return err
	}
	var hooks notify.Config
	if c.webhooks != "" {
		if hooks, err = notify.LoadConfig(c.webhooks); err != nil {
			xdsLis.Close()
			httpLis.Close()
			return fmt.Errorf("--rollout-webhooks: %w", err)
		}
	}
	notifier := notify.New(hooks, notify.Options{Logger: log.With("part", "notify")})
	reg.MustRegister(notifier)
	rolloutMetrics := metrics.New(reg)
	// A read of the rollouts from KV refreshes the gauges at once.
	rolloutsRead := make(chan struct{}, 1)
	releases := controller.New(controller.Options{
		Client:   client,
		Prefix:   c.rolloutPrefix,
		Counts:   graphCounts{store: store, now: time.Now},
		Catalog:  catalogVersions{latest: watcher.Catalog, synced: watcher.Synced()},
		Plans:    xsrv.SetPlans,
		Interval: c.rolloutInterval,
		Logger:   log.With("part", "rollout"),
		// Only one process can listen on this address on this host.
		ReplicaID: replicaID(httpLis.Addr().String()),
		OnChange: func(old, new rollout.Rollout) {
			notifier.Notify(old, new)
			rolloutMetrics.Observe(old, new)
		},
		OnRead: func() {
			select {
			case rolloutsRead <- struct{}{}:
			default: // a refresh is pending already
			}
		},
	})

	ready := func() (bool, string) {
		select {
		case <-xsrv.Ready():
			return true, "ready"
		default:
		}
		select {
		case <-watcher.Synced():
			return false, "building the first configuration"
		default:
			return false, "waiting for the first complete catalog from Consul at " + c.consulAddr
		}
	}
	httpSrv := &http.Server{
		Handler: api.New(api.Deps{
			Gatherer: reg,
			Ready:    ready,
			Debug: map[string]func() any{
				"xds/clients":  func() any { return xsrv.Clients() },
				"xds/status":   func() any { return xsrv.Status() },
				"xds/sidecars": func() any { return xsrv.Sidecars() },
				"consul":       func() any { return watcher.Status() },
			},
			Logger:   log,
			Graph:    store,
			Spans:    spans,
			Releases: releases,
			Tokens:   tokens,
		}),
		ReadHeaderTimeout: 10 * time.Second,
		// The server's own complaints (failed TLS handshakes, bad
		// requests) go to the structured log too.
		ErrorLog: slog.NewLogLogger(log.With("part", "http").Handler(), slog.LevelWarn),
		// Graph streams end with the server, not after the shutdown timeout.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	if tlsConf != nil {
		httpSrv.TLSConfig = tlsConf.httpConfig()
	}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return watcher.Run(ctx) })
	g.Go(func() error { return xsrv.Run(ctx) })
	g.Go(func() error { return spans.Run(ctx) })
	g.Go(func() error { return releases.Run(ctx) })
	g.Go(func() error { return notifier.Run(ctx) })
	g.Go(func() error {
		// The gauges follow KV on every replica, not only on the one that
		// wrote the change: at once after each read, and every 15s.
		tick := time.NewTicker(15 * time.Second)
		defer tick.Stop()
		started := false
		for {
			if all, err := releases.List(ctx, false); err == nil {
				// Set once, on start: the history so far is not counted.
				// After that only the gauges follow KV; the counters count
				// what this replica writes (Observe), and a refresh that
				// reads a write before its Observe must not swallow it.
				if !started {
					rolloutMetrics.Set(all)
					started = true
				} else {
					rolloutMetrics.Refresh(all)
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			case <-rolloutsRead:
			}
		}
	})
	g.Go(func() error {
		// As each bucket closes, the graph's window sums slide on here
		// rather than in the next query (see topology.Store.Advance).
		for {
			t := time.NewTimer(time.Until(store.NextBucket(time.Now())) + 5*time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case now := <-t.C:
				store.Advance(now)
			}
		}
	})
	g.Go(func() error {
		// Idle edges expire once they have left the longest window.
		tick := time.NewTicker(time.Minute)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case now := <-tick.C:
				store.Expire(now, c.graphRetention+time.Minute)
			}
		}
	})
	g.Go(func() error {
		// Forward catalogs only once the first complete one is in: a partial
		// catalog would tell clients that services do not exist.
		waitLogged(ctx, log, watcher.Synced(), "waiting for the first complete catalog from Consul", "consul_addr", c.consulAddr)
		// And only once the releases' plans are in: a first build without
		// them would move a canary's traffic after a restart.
		waitLogged(ctx, log, releases.Loaded(), "waiting to read the rollouts from Consul KV", "prefix", c.rolloutPrefix)
		for {
			select {
			case <-ctx.Done():
				return nil
			case cat := <-watcher.Updates():
				xsrv.SetCatalog(cat)
			}
		}
	})
	g.Go(func() error {
		httpTLS := "off"
		if tlsConf != nil {
			httpTLS = "tls"
		}
		log.Info("http listening", "addr", httpLis.Addr().String(), "tls", httpTLS)
		serveHTTP := func() error { return httpSrv.Serve(httpLis) }
		if tlsConf != nil {
			// The certificate comes from TLSConfig.GetCertificate.
			serveHTTP = func() error { return httpSrv.ServeTLS(httpLis, "", "") }
		}
		if err := serveHTTP(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		// Clients that connect before the first config wait in the listen
		// backlog and keep what they had, instead of being told that their
		// resources no longer exist.
		select {
		case <-ctx.Done():
			xdsLis.Close()
			return nil
		case <-xsrv.Ready():
		}
		attrs := []any{"addr", xdsLis.Addr().String(), "tls", xdsTLSMode(tlsConf)}
		if tlsConf.mutual() {
			attrs = append(attrs, "client_identity", c.tlsClientID)
		}
		log.Info("xds serving", attrs...)
		if err := grpcSrv.Serve(xdsLis); err != nil {
			return fmt.Errorf("xds server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		log.Info("shutting down")
		shutdown(grpcSrv, httpSrv, c.shutdownTimeout)
		return nil
	})
	err = g.Wait()
	log.Info("stopped")
	return err
}

// xdsTLSMode says how the xDS port is secured, for the log.
func xdsTLSMode(s *serverTLS) string {
	switch {
	case s.mutual():
		return "mtls"
	case s != nil:
		return "tls"
	}
	return "off"
}

// shutdown drains both servers, then closes what is left after timeout.
func shutdown(g *grpc.Server, h *http.Server, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	_ = h.Shutdown(ctx)
	select {
	case <-done:
	case <-ctx.Done():
		g.Stop() // xDS streams never end by themselves
	}
}

// waitLogged waits for ch, logging every 10 seconds while it waits.
func waitLogged(ctx context.Context, log *slog.Logger, ch <-chan struct{}, msg string, args ...any) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			return
		case <-tick.C:
			log.Warn(msg, args...)
		}
	}
}

// registerTopologyMetrics exports the graph store's, the ALS ingest's and
// the Zipkin collector's counters, and the per-edge series.
func registerTopologyMetrics(reg prometheus.Registerer, store *topology.Store, a *als.Server, z *zipkin.Collector) {
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	load := func(v interface{ Load() uint64 }) func() float64 { return func() float64 { return float64(v.Load()) } }
	reg.MustRegister(
		api.NewEdgeCollector(store, 0),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "signalbox_topology_edges", Help: "Edges held by the live graph."},
			func() float64 { return float64(store.Edges()) }),
		counter("signalbox_topology_dropped_total", "Observations dropped because the edge cap was reached.", func() float64 { return float64(store.Dropped()) }),
		counter("signalbox_topology_ahead_total", "Observations stamped more than a bucket after signalbox's clock (a sender's clock running fast), counted in the current bucket.", func() float64 { return float64(store.Ahead()) }),
		counter("signalbox_als_entries_total", "Access log entries received from sidecars.", load(&a.Entries)),
		counter("signalbox_als_recorded_total", "Access log entries recorded as graph edges.", load(&a.Recorded)),
		counter("signalbox_als_served_total", "Access log entries recorded in the served view (what a service saw arriving).", load(&a.Served)),
		counter("signalbox_zipkin_requests_total", "POSTs to /api/v2/spans.", load(&z.Requests)),
		counter("signalbox_zipkin_spans_total", "Spans decoded and buffered.", load(&z.Spans)),
		counter("signalbox_zipkin_calls_total", "Calls linked from spans and recorded as graph edges.", load(&z.Calls)),
		counter("signalbox_zipkin_served_total", "Server spans recorded in the served view.", load(&z.Served)),
		counter("signalbox_zipkin_calls_counted_by_als_total", "Calls linked from spans but not recorded: a sidecar's access log (ALS) counted them.", load(&z.CallsByALS)),
		counter("signalbox_zipkin_served_counted_by_als_total", "Server spans not recorded in the served view: the sidecar's inbound access log counted them.", load(&z.ServedByALS)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "signalbox_zipkin_pending_spans", Help: "Spans waiting for their trace to settle."},
			func() float64 { _, n := z.Pending(); return float64(n) }),
	)
	for _, reason := range als.RejectReasons() {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "signalbox_als_rejected_streams_total", Help: "Access log streams refused, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(a.RejectedFor(reason)) }))
	}
	for _, reason := range als.SkipReasons() {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "signalbox_als_skipped_total", Help: "Access log entries not recorded, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(a.Skipped(reason)) }))
	}
	for _, reason := range zipkin.RejectReasons() {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "signalbox_zipkin_rejected_total", Help: "Span POSTs refused, by reason.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(z.RejectedFor(reason)) }))
	}
	for _, reason := range zipkin.EarlyReasons() {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "signalbox_zipkin_early_linked_total", Help: "Traces linked before they settled because a cap was reached, by cap.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(z.EarlyLinkedFor(reason)) }))
	}
}
