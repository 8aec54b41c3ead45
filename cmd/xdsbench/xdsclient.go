package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/signalbox/signalbox/xds/ir"
)

// kind is which server a simulated client talks to, and how.
type kind int

const (
	sbSotW kind = iota
	sbDelta
	consulDelta
	numKinds
)

func (k kind) String() string {
	switch k {
	case sbSotW:
		return "signalbox SotW"
	case sbDelta:
		return "signalbox delta"
	case consulDelta:
		return "Consul xDS (delta)"
	}
	return "?"
}

// epSet is the set of routable endpoint addresses (IPs) of one EDS resource.
type epSet map[string]struct{}

// endpointSet extracts the routable endpoint addresses of a load assignment:
// endpoints whose health is UNKNOWN, HEALTHY or DEGRADED (the ones Envoy and
// gRPC send traffic to). Consul's xDS server keeps critical instances in the
// assignment marked UNHEALTHY; signalbox leaves them out.
func endpointSet(cla *endpointv3.ClusterLoadAssignment) epSet {
	out := epSet{}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			switch e.GetHealthStatus() {
			case corev3.HealthStatus_UNKNOWN, corev3.HealthStatus_HEALTHY, corev3.HealthStatus_DEGRADED:
			default:
				continue
			}
			if sa := e.GetEndpoint().GetAddress().GetSocketAddress(); sa != nil {
				out[sa.GetAddress()] = struct{}{}
			}
		}
	}
	return out
}

// consulService is the service of a Consul upstream cluster name
// ("<service>.<namespace>.<dc>.internal.<trust domain>.consul").
func consulService(cluster string) string {
	svc, _, ok := strings.Cut(cluster, ".")
	if !ok {
		return ""
	}
	return svc
}

// fleet is every simulated client of a run.
type fleet struct {
	l        layout
	svcIndex map[string]int
	tracker  *tracker
	clients  []*client
	// subs[kind][service] are the clients of that kind subscribed to it.
	subs  [numKinds][][]*client
	conns []*grpc.ClientConn

	streamErrs atomic.Int64
	errMu      sync.Mutex
	firstErr   error
}

func newFleet(l layout, t *tracker) *fleet {
	f := &fleet{l: l, svcIndex: make(map[string]int, l.S), tracker: t}
	for s := range l.S {
		f.svcIndex[l.service(s)] = s
	}
	for k := range numKinds {
		f.subs[k] = make([][]*client, l.S)
	}
	return f
}

func (f *fleet) add(k kind, id string, services []int, node *corev3.Node) *client {
	c := &client{f: f, idx: len(f.clients), kind: k, id: id, services: services, node: node,
		eds: map[int]epSet{}, names: map[string]int{}}
	f.clients = append(f.clients, c)
	for _, s := range services {
		f.subs[k][s] = append(f.subs[k][s], c)
	}
	return c
}

func (f *fleet) streamFailed(c *client, err error) {
	f.streamErrs.Add(1)
	f.errMu.Lock()
	if f.firstErr == nil {
		f.firstErr = fmt.Errorf("%s client %s: %w", c.kind, c.id, err)
	}
	f.errMu.Unlock()
}

func (f *fleet) err() error {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.firstErr
}

// dial opens one connection per perConn clients of the given kinds and
// starts every client's stream. It returns at once; streams run until ctx ends.
func (f *fleet) start(ctx context.Context, addr string, kinds []kind, perConn int, wg *sync.WaitGroup) error {
	var batch []*client
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)),
		)
		if err != nil {
			return fmt.Errorf("dial %s: %w", addr, err)
		}
		f.conns = append(f.conns, conn)
		for _, c := range batch {
			wg.Go(func() {
				if err := c.run(ctx, conn); err != nil && ctx.Err() == nil {
					f.streamFailed(c, err)
				}
			})
		}
		batch = nil
		return nil
	}
	for _, c := range f.clients {
		want := false
		for _, k := range kinds {
			want = want || c.kind == k
		}
		if !want {
			continue
		}
		batch = append(batch, c)
		if len(batch) == perConn {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

func (f *fleet) close() {
	for _, c := range f.conns {
		_ = c.Close()
	}
}

// readiness counts, per kind, the clients that hold an EDS for each of their
// services with want routable endpoints, and the clients of that kind.
func (f *fleet) readiness(want int) (ready, total [numKinds]int) {
	for _, c := range f.clients {
		total[c.kind]++
		if c.holdsAll(want) {
			ready[c.kind]++
		}
	}
	return ready, total
}

// client is one simulated xDS client: a proxyless gRPC client for signalbox,
// an Envoy sidecar for Consul.
type client struct {
	f        *fleet
	idx      int
	kind     kind
	id       string
	services []int
	node     *corev3.Node

	responses atomic.Int64

	mu    sync.Mutex
	eds   map[int]epSet  // service → routable endpoints
	names map[string]int // Consul: EDS resource name → service
}

func (c *client) holdsAll(want int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.services {
		set, ok := c.eds[s]
		if !ok || len(set) != want {
			return false
		}
	}
	return true
}

// state is what the client holds for service s.
func (c *client) state(s int) (epSet, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	set, ok := c.eds[s]
	return set, ok
}

func (c *client) setEDS(s int, set epSet, at time.Time) {
	c.mu.Lock()
	c.eds[s] = set
	c.mu.Unlock()
	c.f.tracker.observe(c, s, set, at)
}

func (c *client) run(ctx context.Context, conn *grpc.ClientConn) error {
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	switch c.kind {
	case sbSotW:
		return c.runSotW(ctx, ads)
	case sbDelta:
		return c.runDelta(ctx, ads)
	case consulDelta:
		return c.runConsul(ctx, ads)
	}
	return fmt.Errorf("unknown kind %d", c.kind)
}

// signalboxNames are the resource names a proxyless gRPC client asks for.
func (c *client) signalboxNames() map[string][]string {
	names := map[string][]string{}
	for _, s := range c.services {
		svc := c.f.l.service(s)
		names[resourcev3.ListenerType] = append(names[resourcev3.ListenerType], svc)
		names[resourcev3.RouteType] = append(names[resourcev3.RouteType], svc)
		names[resourcev3.ClusterType] = append(names[resourcev3.ClusterType], ir.ClusterName(svc, ""))
		names[resourcev3.EndpointType] = append(names[resourcev3.EndpointType], ir.ClusterName(svc, ""))
	}
	return names
}

// signalboxTypes is the order a gRPC client subscribes in.
var signalboxTypes = []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType}

// serviceOfCluster maps a signalbox EDS resource name to a service index.
func (c *client) serviceOfCluster(name string) (int, bool) {
	svc, subset, ok := ir.ParseClusterName(name)
	if !ok || subset != "" {
		return 0, false
	}
	s, ok := c.f.svcIndex[svc]
	return s, ok
}

func (c *client) runSotW(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) error {
	stream, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	names := c.signalboxNames()
	for i, t := range signalboxTypes {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: t, ResourceNames: names[t]}
		if i == 0 {
			req.Node = c.node
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	for {
		resp, err := stream.Recv()
		at := time.Now()
		if err != nil {
			return recvErr(err)
		}
		c.responses.Add(1)
		if resp.GetTypeUrl() == resourcev3.EndpointType {
			for _, a := range resp.GetResources() {
				cla := &endpointv3.ClusterLoadAssignment{}
				if err := proto.Unmarshal(a.GetValue(), cla); err != nil {
					return fmt.Errorf("decode EDS: %w", err)
				}
				if s, ok := c.serviceOfCluster(cla.GetClusterName()); ok {
					c.setEDS(s, endpointSet(cla), at)
				}
			}
		}
		ack := &discoveryv3.DiscoveryRequest{
			TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
			ResourceNames: names[resp.GetTypeUrl()],
		}
		if err := stream.Send(ack); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
}

func (c *client) runDelta(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) error {
	stream, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	names := c.signalboxNames()
	for i, t := range signalboxTypes {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: names[t]}
		if i == 0 {
			req.Node = c.node
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	for {
		resp, err := stream.Recv()
		at := time.Now()
		if err != nil {
			return recvErr(err)
		}
		c.responses.Add(1)
		if resp.GetTypeUrl() == resourcev3.EndpointType {
			if err := c.deltaEDS(resp, at, c.serviceOfCluster); err != nil {
				return err
			}
		}
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if err := stream.Send(ack); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
}

func (c *client) deltaEDS(resp *discoveryv3.DeltaDiscoveryResponse, at time.Time, service func(string) (int, bool)) error {
	for _, r := range resp.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := proto.Unmarshal(r.GetResource().GetValue(), cla); err != nil {
			return fmt.Errorf("decode EDS %s: %w", r.GetName(), err)
		}
		name := r.GetName()
		if name == "" {
			name = cla.GetClusterName()
		}
		if s, ok := service(name); ok {
			c.setEDS(s, endpointSet(cla), at)
		}
	}
	for _, name := range resp.GetRemovedResources() {
		if s, ok := service(name); ok {
			c.setEDS(s, epSet{}, at)
		}
	}
	return nil
}

// runConsul behaves like Envoy towards Consul's xDS server: CDS wildcard,
// then EDS for every EDS cluster CDS names.
func (c *client) runConsul(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) error {
	stream, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: c.node, TypeUrl: resourcev3.ClusterType}); err != nil {
		return fmt.Errorf("subscribe CDS: %w", err)
	}
	service := func(name string) (int, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		s, ok := c.names[name]
		return s, ok
	}
	for {
		resp, err := stream.Recv()
		at := time.Now()
		if err != nil {
			return recvErr(err)
		}
		c.responses.Add(1)
		var subscribe []string
		switch resp.GetTypeUrl() {
		case resourcev3.ClusterType:
			for _, r := range resp.GetResources() {
				cl := &clusterv3.Cluster{}
				if err := proto.Unmarshal(r.GetResource().GetValue(), cl); err != nil {
					return fmt.Errorf("decode CDS %s: %w", r.GetName(), err)
				}
				if cl.GetType() != clusterv3.Cluster_EDS {
					continue
				}
				eds := cl.GetEdsClusterConfig().GetServiceName()
				if eds == "" {
					eds = cl.GetName()
				}
				s, ok := c.f.svcIndex[consulService(cl.GetName())]
				if !ok {
					continue
				}
				c.mu.Lock()
				if _, known := c.names[eds]; !known {
					c.names[eds] = s
					subscribe = append(subscribe, eds)
				}
				c.mu.Unlock()
			}
		case resourcev3.EndpointType:
			if err := c.deltaEDS(resp, at, service); err != nil {
				return err
			}
		}
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if err := stream.Send(ack); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		if len(subscribe) > 0 {
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: subscribe}
			if err := stream.Send(req); err != nil {
				return fmt.Errorf("subscribe EDS: %w", err)
			}
		}
	}
}

func recvErr(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("server closed the stream")
	}
	if status.Code(err) == codes.Canceled {
		return nil
	}
	return fmt.Errorf("receive: %w", err)
}

// grpcNode is the node a proxyless gRPC-Go client sends.
func grpcNode(id string) *corev3.Node {
	return &corev3.Node{
		Id:                   id,
		Cluster:              "xdsbench",
		UserAgentName:        "gRPC Go",
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: grpc.Version},
		ClientFeatures:       []string{"envoy.lb.does_not_support_overprovisioning", "xds.config.resource-in-sotw"},
	}
}

// envoyNode is the node of an Envoy sidecar bootstrapped by `consul connect
// envoy`: the proxy's service id, and the node it is registered on.
func envoyNode(proxyID, nodeName string) *corev3.Node {
	return &corev3.Node{
		Id:            proxyID,
		Cluster:       "bench-client",
		UserAgentName: "envoy",
		Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"namespace": structpb.NewStringValue("default"),
			"partition": structpb.NewStringValue("default"),
			"node_name": structpb.NewStringValue(nodeName),
		}},
	}
}
