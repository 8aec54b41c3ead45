package server

import (
	"context"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
)

// deltaClient is a raw delta ADS client, speaking the protocol as Envoy does:
// it subscribes by name, ACKs every response and keeps the resulting state.
type deltaClient struct {
	t      *testing.T
	node   *corev3.Node
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	state  map[string]deltaState // by type URL
	first  map[string]bool
}

type deltaState map[string]*anypb.Any

func newDeltaClient(t *testing.T, addr, nodeID string) *deltaClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); cc.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &deltaClient{t: t, node: &corev3.Node{Id: nodeID, Cluster: "test"}, stream: stream, state: map[string]deltaState{}, first: map[string]bool{}}
}

func (d *deltaClient) subscribe(typeURL string, names ...string) {
	d.t.Helper()
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names}
	if len(d.first) == 0 {
		req.Node = d.node
	}
	d.first[typeURL] = true
	if err := d.stream.Send(req); err != nil {
		d.t.Fatal(err)
	}
}

// recvUntil applies responses (and ACKs them) until the state of typeURL
// satisfies cond, and returns that state.
func (d *deltaClient) recvUntil(typeURL string, cond func(deltaState) bool) deltaState {
	d.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s := d.state[typeURL]; s != nil && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("delta state of %s never satisfied the condition: %v", typeURL, keys(d.state[typeURL]))
		}
		type result struct {
			resp *discoveryv3.DeltaDiscoveryResponse
			err  error
		}
		ch := make(chan result, 1)
		go func() {
			r, err := d.stream.Recv()
			ch <- result{r, err}
		}()
		var r result
		select {
		case r = <-ch:
		case <-time.After(time.Until(deadline)):
			d.t.Fatalf("no delta response for %s: state %v", typeURL, keys(d.state[typeURL]))
		}
		if r.err != nil {
			d.t.Fatalf("delta stream: %v", r.err)
		}
		s := d.state[r.resp.GetTypeUrl()]
		if s == nil {
			s = deltaState{}
			d.state[r.resp.GetTypeUrl()] = s
		}
		for _, res := range r.resp.GetResources() {
			s[res.GetName()] = res.GetResource()
		}
		for _, name := range r.resp.GetRemovedResources() {
			delete(s, name)
		}
		if err := d.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.resp.GetTypeUrl(), ResponseNonce: r.resp.GetNonce()}); err != nil {
			d.t.Fatal(err)
		}
	}
}

func countEndpoints(t *testing.T, a *anypb.Any) int {
	t.Helper()
	var cla endpointv3.ClusterLoadAssignment
	if err := a.UnmarshalTo(&cla); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range cla.GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}
