// Package discovery holds the immutable service catalog that every other part
// of signalbox reads, and the pure helpers that derive it from registry data.
//
// A Catalog is never mutated after it is built: a change produces a new Catalog
// that shares the unchanged *Service values with the previous one, so consumers
// can skip work for services whose pointer did not change.
package discovery

import (
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Health is the aggregated health of one instance.
type Health int

const (
	// Passing: every check passes (or the instance has no checks).
	Passing Health = iota
	// Warning: at least one check warns and none is critical.
	Warning
	// Critical: at least one check is critical.
	Critical
	// Maintenance: the node or the service is in maintenance mode.
	Maintenance
)

func (h Health) String() string {
	switch h {
	case Passing:
		return "passing"
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	case Maintenance:
		return "maintenance"
	}
	return "unknown(" + strconv.Itoa(int(h)) + ")"
}

// DefaultVersion is the version subset of an instance that declares none.
const DefaultVersion = "default"

// Instance is one registered instance of a service.
type Instance struct {
	ID         string            `json:"id"`
	Node       string            `json:"node"`
	Address    string            `json:"address"`
	Port       int               `json:"port"`
	Health     Health            `json:"health"`
	Version    string            `json:"version"`
	Tags       []string          `json:"tags,omitempty"`
	Meta       map[string]string `json:"meta,omitempty"`
	Datacenter string            `json:"datacenter,omitempty"`
	Zone       string            `json:"zone,omitempty"`
	// Kind is "" for a plain service, or Consul's kind, e.g. "connect-proxy"
	// for a sidecar registration.
	Kind string `json:"kind,omitempty"`
	// Proxy is the sidecar registration of a "connect-proxy" instance.
	Proxy *Proxy `json:"proxy,omitempty"`
}

// KindConnectProxy is Consul's kind of a sidecar proxy registration.
const KindConnectProxy = "connect-proxy"

// Proxy is what a Consul sidecar registration says about its proxy.
type Proxy struct {
	// DestinationServiceName and DestinationServiceID name the app instance
	// the sidecar fronts.
	DestinationServiceName string `json:"destinationServiceName"`
	DestinationServiceID   string `json:"destinationServiceId,omitempty"`
	// LocalServiceAddress and LocalServicePort are where the app listens.
	LocalServiceAddress string `json:"localServiceAddress,omitempty"`
	LocalServicePort    int    `json:"localServicePort,omitempty"`
	// Upstreams are the services the app calls through the sidecar.
	Upstreams []Upstream `json:"upstreams,omitempty"`
}

// Upstream is one service a sidecar's app calls, optionally on a local port.
type Upstream struct {
	DestinationName  string `json:"destinationName"`
	LocalBindAddress string `json:"localBindAddress,omitempty"`
	LocalBindPort    int    `json:"localBindPort,omitempty"`
}

// Routable reports whether traffic may be sent to the instance. Instances in
// maintenance or critical never are; warning ones only when allowWarning.
func (i Instance) Routable(allowWarning bool) bool {
	switch i.Health {
	case Passing:
		return true
	case Warning:
		return allowWarning
	}
	return false
}

// Service is every instance of one service name, sorted by (ID, Node).
type Service struct {
	Name      string     `json:"name"`
	Instances []Instance `json:"instances"`
	// Hash is a content hash of Instances, so equal answers can be deduplicated.
	Hash uint64 `json:"hash"`
}

// NewService sorts the instances and computes the content hash.
func NewService(name string, instances []Instance) *Service {
	inst := slices.Clone(instances)
	sort.Slice(inst, func(a, b int) bool {
		if inst[a].ID != inst[b].ID {
			return inst[a].ID < inst[b].ID
		}
		return inst[a].Node < inst[b].Node
	})
	return &Service{Name: name, Instances: inst, Hash: hashInstances(name, inst)}
}

// Versions returns the sorted distinct version subsets of the service.
func (s *Service) Versions() []string {
	var out []string
	for _, in := range s.Instances {
		if !slices.Contains(out, in.Version) {
			out = append(out, in.Version)
		}
	}
	sort.Strings(out)
	return out
}

// Catalog is an immutable view of every service. The zero value is empty.
type Catalog struct {
	services map[string]*Service
	names    []string
	// SeenAt is when the change that produced this catalog was received; it
	// starts the clock for convergence-time measurements.
	SeenAt time.Time
}

// NewCatalog builds a catalog from services; later duplicates win.
func NewCatalog(seenAt time.Time, services ...*Service) *Catalog {
	c := &Catalog{services: make(map[string]*Service, len(services)), SeenAt: seenAt}
	for _, s := range services {
		c.services[s.Name] = s
	}
	c.names = make([]string, 0, len(c.services))
	for n := range c.services {
		c.names = append(c.names, n)
	}
	sort.Strings(c.names)
	return c
}

// With returns a new catalog with svc added or replaced (nil svc removes name).
// The receiver is unchanged and the other *Service values are shared.
func (c *Catalog) With(seenAt time.Time, name string, svc *Service) *Catalog {
	next := &Catalog{services: make(map[string]*Service, c.Len()+1), SeenAt: seenAt}
	if c != nil {
		for n, s := range c.services {
			next.services[n] = s
		}
	}
	if svc == nil {
		delete(next.services, name)
	} else {
		next.services[name] = svc
	}
	next.names = make([]string, 0, len(next.services))
	for n := range next.services {
		next.names = append(next.names, n)
	}
	sort.Strings(next.names)
	return next
}

// Service returns the named service.
func (c *Catalog) Service(name string) (*Service, bool) {
	if c == nil {
		return nil, false
	}
	s, ok := c.services[name]
	return s, ok
}

// Names returns the sorted service names. The slice must not be modified.
func (c *Catalog) Names() []string {
	if c == nil {
		return nil
	}
	return c.names
}

// Len is the number of services.
func (c *Catalog) Len() int {
	if c == nil {
		return 0
	}
	return len(c.services)
}

// VersionOf returns an instance's version subset: meta "version", else a tag
// "version=X", else DefaultVersion.
func VersionOf(tags []string, meta map[string]string) string {
	if v := strings.TrimSpace(meta["version"]); v != "" {
		return v
	}
	for _, t := range tags {
		if v, ok := strings.CutPrefix(t, "version="); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return DefaultVersion
}

func hashInstances(name string, inst []Instance) uint64 {
	h := fnv.New64a()
	w := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	w(name)
	for _, in := range inst {
		w(in.ID)
		w(in.Node)
		w(in.Address)
		w(strconv.Itoa(in.Port))
		w(in.Health.String())
		w(in.Version)
		w(in.Datacenter)
		w(in.Zone)
		w(in.Kind)
		if p := in.Proxy; p != nil {
			w(p.DestinationServiceName)
			w(p.DestinationServiceID)
			w(p.LocalServiceAddress)
			w(strconv.Itoa(p.LocalServicePort))
			for _, u := range p.Upstreams {
				w(u.DestinationName)
				w(u.LocalBindAddress)
				w(strconv.Itoa(u.LocalBindPort))
			}
		}
		w("")
		for _, t := range in.Tags {
			w(t)
		}
		w("")
		keys := make([]string, 0, len(in.Meta))
		for k := range in.Meta {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			w(k)
			w(in.Meta[k])
		}
		w("")
	}
	return h.Sum64()
}
