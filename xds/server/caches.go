package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// The resource types signalbox serves, in make-before-break order: clusters
// and their endpoints exist before a listener or route refers to them.
var servedTypes = []string{
	resourcev3.ClusterType,
	resourcev3.EndpointType,
	resourcev3.ListenerType,
	resourcev3.RouteType,
}

// shortType is a type URL's short name for logs and metric labels.
func shortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ClusterType:
		return "cds"
	case resourcev3.EndpointType:
		return "eds"
	case resourcev3.ListenerType:
		return "lds"
	case resourcev3.RouteType:
		return "rds"
	}
	if i := strings.LastIndex(typeURL, "."); i >= 0 {
		return typeURL[i+1:]
	}
	return typeURL
}

// typeCache is one LinearCache (resources shared by every client that asks
// for them by name, each marshalled once) plus the bookkeeping the server
// needs around it: the cache's version counter, which LinearCache does not
// expose, and when the change behind each version was first seen.
type typeCache struct {
	typeURL string
	prefix  string
	lc      *cache.LinearCache

	mu      sync.Mutex
	version uint64
	seenAt  map[string]time.Time
	order   []string // versions in seenAt, oldest first, to bound the map
}

const keptVersions = 512

func newTypeCache(typeURL, prefix string, log *slog.Logger) *typeCache {
	return &typeCache{
		typeURL: typeURL,
		prefix:  prefix,
		lc:      cache.NewLinearCache(typeURL, cache.WithVersionPrefix(prefix), cache.WithLogger(cpLogger{log})),
		seenAt:  map[string]time.Time{},
	}
}

// update applies changes and records when the change was seen. Every call
// advances the LinearCache version by exactly one, which is what lets us
// mirror it.
func (c *typeCache) update(set map[string]types.Resource, del []string, seen time.Time) error {
	if len(set) == 0 && len(del) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	v := c.prefix + strconv.FormatUint(c.version, 10)
	c.seenAt[v] = seen
	c.order = append(c.order, v)
	if len(c.order) > keptVersions {
		delete(c.seenAt, c.order[0])
		c.order = c.order[1:]
	}
	return c.lc.UpdateResources(set, del)
}

// changeSeen is when the change behind a served version was first seen.
func (c *typeCache) changeSeen(version string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.seenAt[version]
	return t, ok
}

// nackGuard keeps a rejected version from being resent in a loop.
//
// A SotW NACK carries the last version the client accepted, which is "" when
// it rejected its very first response, or another process's version after a
// reconnect. LinearCache answers such requests at once with its current
// resources — the same ones just rejected — and the client rejects them
// again, tens of thousands of times a second. The server already recorded
// what it sent in the subscription, so presenting the NACK with a version of
// this cache's own makes the cache wait for a real change instead.
//
// Sidecars are served from go-control-plane's snapshot cache, which answers
// whenever the request's version differs from its snapshot's: there the NACK
// is presented with the version that was rejected, so the cache answers only
// if its snapshot has changed since.
type nackGuard struct {
	cache.Cache
	prefix   string
	lastSent func(nodeID, typeURL string) (string, bool)
}

func (g nackGuard) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	if req.GetErrorDetail() != nil {
		r := proto.Clone(req).(*cache.Request)
		r.VersionInfo = g.prefix + "nacked"
		if classify(req.GetNode(), req.GetTypeUrl()) == sidecarKey {
			if v, ok := g.lastSent(req.GetNode().GetId(), req.GetTypeUrl()); ok {
				r.VersionInfo = v
			}
		}
		req = r
	}
	return g.Cache.CreateWatch(req, sub, ch)
}

// idleCache answers watches for types signalbox does not serve (say, secrets)
// by never answering, instead of closing the whole ADS stream as MuxCache does
// for an unknown type.
type idleCache struct{}

func (idleCache) CreateWatch(*cache.Request, cache.Subscription, chan cache.Response) (func(), error) {
	return func() {}, nil
}

func (idleCache) CreateDeltaWatch(*cache.DeltaRequest, cache.Subscription, chan cache.DeltaResponse) (func(), error) {
	return func() {}, nil
}

func (idleCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("fetch is not supported: use a stream")
}

// cpLogger drops go-control-plane's per-watch chatter (what matters is logged
// by the server's callbacks) and passes its warnings and errors to slog.
type cpLogger struct{ log *slog.Logger }

func (cpLogger) Debugf(string, ...any) {}
func (cpLogger) Infof(string, ...any)  {}
func (l cpLogger) Warnf(f string, a ...any) {
	l.log.Warn("go-control-plane: " + fmt.Sprintf(f, a...))
}
func (l cpLogger) Errorf(f string, a ...any) {
	l.log.Error("go-control-plane: " + fmt.Sprintf(f, a...))
}
