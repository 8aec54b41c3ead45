// Package adsclient is an xDS client that speaks ADS the way Envoy does —
// SotW or delta, subscribing by name or by wildcard, acknowledging every
// response — and keeps the resulting resources, so tests can connect "as a
// sidecar" without an Envoy binary.
package adsclient

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Client is one ADS stream.
type Client struct {
	node  *corev3.Node
	delta bool
	cc    *grpc.ClientConn

	sotw  discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	dstrm discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient

	mu      sync.Mutex
	changed chan struct{}
	state   map[string]map[string]*anypb.Any // type URL → name → resource
	version map[string]string                // SotW: last accepted version per type
	names   map[string][]string              // SotW: subscribed names per type
	reject  func(typeURL string, res map[string]*anypb.Any) string
	sentOne bool
	err     error
	// Responses counts responses received per type.
	responses map[string]int
}

// Options for Dial.
type Options struct {
	NodeID, Cluster string
	// Metadata is the node metadata (string, bool or number values).
	Metadata map[string]any
	// UserAgent is the node's user_agent_name ("envoy" for a sidecar).
	UserAgent string
	Delta     bool
	// Reject, when set, is asked about every response: a non-empty answer
	// NACKs it with that message instead of accepting it.
	Reject func(typeURL string, resources map[string]*anypb.Any) string
}

// Dial opens an ADS stream to addr. Close it with Close.
func Dial(ctx context.Context, addr string, o Options) (*Client, error) {
	meta, err := structpb.NewStruct(o.Metadata)
	if err != nil {
		return nil, fmt.Errorf("adsclient: node metadata: %w", err)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("adsclient: dial %s: %w", addr, err)
	}
	c := &Client{
		node:  &corev3.Node{Id: o.NodeID, Cluster: o.Cluster, Metadata: meta, UserAgentName: o.UserAgent},
		delta: o.Delta, cc: cc, reject: o.Reject,
		changed: make(chan struct{}), state: map[string]map[string]*anypb.Any{},
		version: map[string]string{}, names: map[string][]string{}, responses: map[string]int{},
	}
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(cc)
	if o.Delta {
		c.dstrm, err = ads.DeltaAggregatedResources(ctx)
	} else {
		c.sotw, err = ads.StreamAggregatedResources(ctx)
	}
	if err != nil {
		cc.Close()
		return nil, fmt.Errorf("adsclient: open stream: %w", err)
	}
	go c.recv()
	return c, nil
}

// Close ends the stream.
func (c *Client) Close() error { return c.cc.Close() }

// Subscribe asks for names of typeURL (none: wildcard). With SotW the names
// replace the previous subscription of that type; with delta they add to it.
func (c *Client) Subscribe(typeURL string, names ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var node *corev3.Node
	if !c.sentOne {
		node = c.node
		c.sentOne = true
	}
	if c.delta {
		return c.dstrm.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNamesSubscribe: names})
	}
	c.names[typeURL] = names
	return c.sotw.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNames: names, VersionInfo: c.version[typeURL]})
}

func (c *Client) recv() {
	for {
		var typeURL, nonce, version string
		var resources []*anypb.Any
		var named map[string]*anypb.Any
		var removed []string
		if c.delta {
			r, err := c.dstrm.Recv()
			if err != nil {
				c.fail(err)
				return
			}
			typeURL, nonce, version = r.GetTypeUrl(), r.GetNonce(), r.GetSystemVersionInfo()
			named = map[string]*anypb.Any{}
			for _, res := range r.GetResources() {
				named[res.GetName()] = res.GetResource()
			}
			removed = r.GetRemovedResources()
		} else {
			r, err := c.sotw.Recv()
			if err != nil {
				c.fail(err)
				return
			}
			typeURL, nonce, version, resources = r.GetTypeUrl(), r.GetNonce(), r.GetVersionInfo(), r.GetResources()
		}
		c.mu.Lock()
		c.responses[typeURL]++
		next := map[string]*anypb.Any{}
		full := !c.delta && (typeURL == "type.googleapis.com/envoy.config.listener.v3.Listener" || typeURL == "type.googleapis.com/envoy.config.cluster.v3.Cluster")
		if !full {
			for k, v := range c.state[typeURL] {
				next[k] = v
			}
		}
		for _, a := range resources {
			next[resourceName(a)] = a
		}
		for k, v := range named {
			next[k] = v
		}
		for _, k := range removed {
			delete(next, k)
		}
		var msg string
		if c.reject != nil {
			msg = c.reject(typeURL, next)
		}
		var err error
		if msg == "" {
			c.state[typeURL] = next
			c.version[typeURL] = version
			close(c.changed)
			c.changed = make(chan struct{})
		}
		detail := (*statusDetail)(nil)
		if msg != "" {
			detail = &statusDetail{msg}
		}
		if c.delta {
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: nonce}
			if detail != nil {
				req.ErrorDetail = detail.status()
			}
			err = c.dstrm.Send(req)
		} else {
			req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResponseNonce: nonce, VersionInfo: c.version[typeURL], ResourceNames: c.names[typeURL]}
			if detail != nil {
				req.ErrorDetail = detail.status()
			}
			err = c.sotw.Send(req)
		}
		c.mu.Unlock()
		if err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// Resources returns the accepted resources of typeURL, by name.
func (c *Client) Resources(typeURL string) map[string]*anypb.Any {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*anypb.Any{}
	for k, v := range c.state[typeURL] {
		out[k] = v
	}
	return out
}

// Responses is how many responses of typeURL arrived (accepted or not).
func (c *Client) Responses(typeURL string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.responses[typeURL]
}

// Names returns the sorted names of the accepted resources of typeURL.
func (c *Client) Names(typeURL string) []string {
	var out []string
	for k := range c.Resources(typeURL) {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// WaitFor blocks until cond holds on the client's state, the stream fails,
// or the timeout passes.
func (c *Client) WaitFor(timeout time.Duration, cond func(*Client) bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ch, err := c.changed, c.err
		c.mu.Unlock()
		if cond(c) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("adsclient: stream failed: %w", err)
		}
		select {
		case <-ch:
		case <-deadline.C:
			return fmt.Errorf("adsclient: condition not met within %v", timeout)
		}
	}
}

// Get unpacks the named resource of typeURL into m.
func (c *Client) Get(typeURL, name string, m proto.Message) error {
	a, ok := c.Resources(typeURL)[name]
	if !ok {
		return fmt.Errorf("adsclient: no %s named %q (have %v)", typeURL, name, c.Names(typeURL))
	}
	return a.UnmarshalTo(m)
}
