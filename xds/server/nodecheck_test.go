package server

import (
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/signalbox/signalbox/discovery"
)

// adsStream opens an ADS stream that names node, asks for listeners, and
// returns the stream and the first answer's error (nil: a response came).
func adsStream(t *testing.T, addr string, node *corev3.Node) (discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, error) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(func() { cancel(); cc.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	return stream, err
}

// TestNodeCheckRefusalReachesTheClient: a node the check refuses ends the
// stream with the check's status, which the client sees (not a bare EOF);
// with a check, a node id a connected client of one service holds is
// refused to a client of another, and served to another stream of the same
// service.
func TestNodeCheckRefusalReachesTheClient(t *testing.T) {
	check := func(_ context.Context, n *corev3.Node) error {
		if n.GetCluster() == "intruder" {
			return status.Error(codes.PermissionDenied, "intruder is not welcome")
		}
		return nil
	}
	h := newHarness(t, Options{NodeCheck: check})
	h.setCatalog(discovery.NewService("web", []discovery.Instance{h.backend("w1", "v1")}))

	_, err := adsStream(t, h.addr, &corev3.Node{Id: "x-1", Cluster: "intruder"})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || st.Message() != "intruder is not welcome" {
		t.Fatalf("refused stream: client saw %v; want PermissionDenied with the check's message", err)
	}

	first, err := adsStream(t, h.addr, &corev3.Node{Id: "web-1", Cluster: "web"})
	if err != nil {
		t.Fatalf("web-1 as web: %v", err)
	}
	_ = first // held open: web-1 stays connected
	_, err = adsStream(t, h.addr, &corev3.Node{Id: "web-1", Cluster: "api"})
	if st := status.Convert(err); st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), `node id "web-1" is in use by a connected client of service "web", not "api"`) {
		t.Fatalf("web-1 as api while web-1 as web is connected: %v; want PermissionDenied naming both", err)
	}
	if _, err := adsStream(t, h.addr, &corev3.Node{Id: "web-1", Cluster: "web"}); err != nil {
		t.Fatalf("a second stream of web-1 as web: %v", err)
	}
}

// TestNoNodeCheckKeepsNodeIDsOpen: without a check (no mutual TLS), a node
// id may move between services, as before.
func TestNoNodeCheckKeepsNodeIDsOpen(t *testing.T) {
	h := newHarness(t, Options{})
	h.setCatalog(discovery.NewService("web", []discovery.Instance{h.backend("w1", "v1")}))
	if _, err := adsStream(t, h.addr, &corev3.Node{Id: "web-1", Cluster: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := adsStream(t, h.addr, &corev3.Node{Id: "web-1", Cluster: "api"}); err != nil {
		t.Fatalf("without a node check, web-1 as api: %v", err)
	}
}
