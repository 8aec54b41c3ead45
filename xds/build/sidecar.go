package build

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/rollout"
	"github.com/signalbox/signalbox/xds/ir"
)

// Node is what a sidecar says about itself in its node metadata.
type Node struct {
	ID       string
	Service  string
	Version  string
	Zone     string
	Instance string
	AppPort  uint32
	// InboundPort and OutboundPort are 0 for the defaults.
	InboundPort  uint32
	OutboundPort uint32
	// Upstreams narrows the upstreams; nil means the default.
	Upstreams []string
}

// IsSidecar reports whether node metadata marks an Envoy sidecar.
func IsSidecar(userAgent string, meta map[string]string) bool {
	return meta[ir.NodeMetaSidecar] == "true" || userAgent == "envoy"
}

// ParseNode reads a sidecar's identity. Bad values are reported and left
// out; they never stop the sidecar from being served.
func ParseNode(id, cluster string, meta map[string]string) (Node, []string) {
	n := Node{ID: id, Service: cluster, Version: meta[ir.NodeMetaVersion], Zone: meta[ir.NodeMetaZone], Instance: meta[ir.NodeMetaInstance]}
	var problems []string
	port := func(key string) uint32 {
		v, ok := meta[key]
		if !ok || v == "" {
			return 0
		}
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 {
			problems = append(problems, fmt.Sprintf("node metadata %s=%q: not a port (1-65535); ignored", key, v))
			return 0
		}
		return uint32(p)
	}
	n.AppPort = port(ir.NodeMetaAppPort)
	n.InboundPort = port(ir.NodeMetaInboundPort)
	n.OutboundPort = port(ir.NodeMetaOutboundPort)
	if v, ok := meta[ir.NodeMetaUpstreams]; ok {
		n.Upstreams = []string{}
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" && !slices.Contains(n.Upstreams, u) {
				n.Upstreams = append(n.Upstreams, u)
			}
		}
	}
	if n.Service == "" {
		problems = append(problems, "node cluster is empty: it must name the Consul service the sidecar fronts")
	}
	return n, problems
}

// Proxies indexes the Consul sidecar registrations of a catalog. It is
// kept up to date service by service with Update, so a change costs work in
// proportion to the service that changed, not to the catalog. A nil
// *Proxies is an empty index.
type Proxies struct {
	// byID is a connect-proxy instance by its service ID.
	byID map[string]discovery.Instance
	// fronting is the sidecar of an app instance, by "node/instance id".
	fronting map[string]discovery.Instance
	// services are the names of services made only of proxies.
	services map[string]bool
	// indexed is the service value each name was last indexed from.
	indexed map[string]*discovery.Service
}

// NewProxies returns an empty index.
func NewProxies() *Proxies {
	return &Proxies{byID: map[string]discovery.Instance{}, fronting: map[string]discovery.Instance{}, services: map[string]bool{}, indexed: map[string]*discovery.Service{}}
}

// IndexProxies indexes a whole catalog.
func IndexProxies(cat *discovery.Catalog) *Proxies {
	p := NewProxies()
	for _, name := range cat.Names() {
		svc, _ := cat.Service(name)
		p.Update(name, svc)
	}
	return p
}

// Update indexes the named service's current value (nil: it is gone) and
// returns the destination services whose sidecars changed with it: their
// endpoints must be rebuilt. Unchanged values cost a map lookup.
func (p *Proxies) Update(name string, svc *discovery.Service) (changedDests []string) {
	old := p.indexed[name]
	if old == svc {
		return nil
	}
	if svc == nil {
		delete(p.indexed, name)
	} else {
		p.indexed[name] = svc
	}
	dests := map[string]bool{}
	if old != nil {
		for _, in := range old.Instances {
			if in.Kind != discovery.KindConnectProxy || in.Proxy == nil {
				continue
			}
			delete(p.byID, in.ID)
			delete(p.fronting, in.Node+"/"+in.Proxy.DestinationServiceID)
			dests[in.Proxy.DestinationServiceName] = true
		}
	}
	delete(p.services, name)
	if svc != nil {
		proxiesOnly := len(svc.Instances) > 0
		for _, in := range svc.Instances {
			if in.Kind == "" {
				proxiesOnly = false
				continue
			}
			if in.Kind != discovery.KindConnectProxy || in.Proxy == nil {
				continue
			}
			p.byID[in.ID] = in
			if in.Proxy.DestinationServiceID != "" {
				p.fronting[in.Node+"/"+in.Proxy.DestinationServiceID] = in
			}
			dests[in.Proxy.DestinationServiceName] = true
		}
		if proxiesOnly {
			p.services[name] = true
		}
	}
	for d := range dests {
		changedDests = append(changedDests, d)
	}
	sort.Strings(changedDests)
	return changedDests
}

// Len is the number of services indexed.
func (p *Proxies) Len() int {
	if p == nil {
		return 0
	}
	return len(p.indexed)
}

// Gone returns the indexed names that cat no longer has.
func (p *Proxies) Gone(cat *discovery.Catalog) []string {
	var out []string
	for name := range p.indexed {
		if _, ok := cat.Service(name); !ok {
			out = append(out, name)
		}
	}
	return out
}

// Fronting returns the sidecar registered in front of an app instance.
func (p *Proxies) Fronting(in discovery.Instance) (discovery.Instance, bool) {
	if p == nil {
		return discovery.Instance{}, false
	}
	s, ok := p.fronting[in.Node+"/"+in.ID]
	return s, ok
}

// registration returns the sidecar registration with this service ID.
func (p *Proxies) registration(id string) (discovery.Instance, bool) {
	if p == nil {
		return discovery.Instance{}, false
	}
	r, ok := p.byID[id]
	return r, ok
}

// IsProxyService reports whether a service is made only of sidecars (and so
// is no routing target of its own).
func (p *Proxies) IsProxyService(name string) bool { return p != nil && p.services[name] }

// ServicePolicy gives the telemetry and traffic policy of a service, with
// what was wrong in its overrides. inst is the instance the sidecar fronts,
// when known (for per-instance span tags).
type ServicePolicy func(svc *discovery.Service, inst *discovery.Instance) (ir.Telemetry, ir.TrafficPolicy, []string)

// DefaultServicePolicy is used when Policy.Services is nil: access logs to
// signalbox, no tracing, the default traffic policy.
func DefaultServicePolicy(*discovery.Service, *discovery.Instance) (ir.Telemetry, ir.TrafficPolicy, []string) {
	return ir.Telemetry{AccessLog: ir.AccessLog{ALS: true}}, ir.TrafficPolicy{ConnectTimeoutMs: ir.DefaultConnectTimeoutMs}, nil
}

// Sidecar builds what one Envoy sidecar is served.
func Sidecar(cat *discovery.Catalog, plans map[string]rollout.Plan, pol Policy, proxies *Proxies, node Node) ir.Sidecar {
	policyOf := pol.Services
	if policyOf == nil {
		policyOf = DefaultServicePolicy
	}
	sc := ir.Sidecar{Node: node.ID, Service: node.Service, Version: node.Version}
	own, _ := cat.Service(node.Service)
	if own == nil {
		own = discovery.NewService(node.Service, nil)
		if node.Service != "" {
			sc.Problems = append(sc.Problems, fmt.Sprintf("service %q is not registered in Consul", node.Service))
		}
	}
	reg, hasReg := proxies.registration(node.ID)
	var app *discovery.Instance
	if node.Instance != "" {
		for i := range own.Instances {
			if own.Instances[i].ID == node.Instance {
				app = &own.Instances[i]
			}
		}
		if app == nil {
			sc.Problems = append(sc.Problems, fmt.Sprintf("instance %q of %s is not registered in Consul", node.Instance, node.Service))
		}
	} else if hasReg && reg.Proxy.DestinationServiceID != "" {
		for i := range own.Instances {
			if own.Instances[i].ID == reg.Proxy.DestinationServiceID && own.Instances[i].Node == reg.Node {
				app = &own.Instances[i]
			}
		}
	}
	if !hasReg && node.Instance == "" && node.ID != "" {
		// The service's instances have Consul sidecar registrations, but
		// none is this node: callers are sent to those sidecars' ports, and
		// this one's inbound listener is not among them.
		var fronted []string
		for _, in := range own.Instances {
			if px, ok := proxies.Fronting(in); ok {
				fronted = append(fronted, px.ID)
			}
		}
		if len(fronted) > 0 {
			sort.Strings(fronted)
			sc.Problems = append(sc.Problems, fmt.Sprintf("node id %q is not the service ID of a Consul sidecar registration of %s (those are %s): callers reach %s through the registered sidecars' ports, not this one; set the sidecar's node id to its registration's service ID",
				node.ID, node.Service, strings.Join(fronted, ", "), node.Service))
		}
	}
	self := app
	if self == nil {
		// Span tags still name the sidecar's version.
		self = &discovery.Instance{Version: node.Version}
	}
	tel, traffic, problems := policyOf(own, self)
	sc.Telemetry = tel
	sc.Problems = append(sc.Problems, problems...)

	// Inbound: the registration's port and local service, else the node's.
	// Callers and Consul's checks use the registration's port, so it wins
	// over the bootstrap's; a bootstrap that says otherwise is reported.
	in := &ir.Inbound{Port: ir.DefaultInboundPort, AppAddress: "127.0.0.1", Traffic: traffic}
	switch {
	case hasReg && reg.Port > 0:
		in.Port = uint32(reg.Port)
		if node.InboundPort != 0 && node.InboundPort != in.Port {
			sc.Problems = append(sc.Problems, fmt.Sprintf("the bootstrap's inbound port %d is ignored: the Consul sidecar registration's port %d applies (callers are sent there)", node.InboundPort, in.Port))
		}
	case node.InboundPort != 0:
		in.Port = node.InboundPort
	}
	switch {
	case hasReg && reg.Proxy.LocalServicePort > 0:
		in.AppPort = uint32(reg.Proxy.LocalServicePort)
		if reg.Proxy.LocalServiceAddress != "" {
			in.AppAddress = reg.Proxy.LocalServiceAddress
		}
		if node.AppPort != 0 && node.AppPort != in.AppPort {
			sc.Problems = append(sc.Problems, fmt.Sprintf("the bootstrap's app port %d is ignored: the Consul sidecar registration's local_service_port %d applies", node.AppPort, in.AppPort))
		}
	case node.AppPort != 0:
		in.AppPort = node.AppPort
	case app != nil && app.Port > 0:
		in.AppPort = uint32(app.Port)
	}
	if in.AppPort != 0 {
		sc.Inbound = in
	} else {
		sc.Problems = append(sc.Problems, "the app's port is unknown (no Consul sidecar registration, no instance, no app port in the bootstrap): no inbound listener")
	}

	sc.Outbound.Port = ir.DefaultOutboundPort
	if node.OutboundPort != 0 {
		sc.Outbound.Port = node.OutboundPort
	}
	if sc.Inbound != nil && sc.Inbound.Port == sc.Outbound.Port {
		sc.Problems = append(sc.Problems, fmt.Sprintf("inbound and outbound ports are both %d: no inbound listener", sc.Outbound.Port))
		sc.Inbound = nil
	}

	// Upstreams: the registration's, else the node's list, else everything.
	if hasReg && node.Upstreams != nil {
		sc.Problems = append(sc.Problems, "the bootstrap's upstream list is ignored: the Consul sidecar registration's upstreams apply")
	}
	binds := map[string][]discovery.Upstream{}
	var names []string
	// listed: the upstreams were asked for (not every service by default),
	// so one that cannot be served is a problem worth reporting.
	listed := hasReg || node.Upstreams != nil
	switch {
	case hasReg:
		for _, u := range reg.Proxy.Upstreams {
			if !slices.Contains(names, u.DestinationName) {
				names = append(names, u.DestinationName)
			}
			if u.LocalBindPort > 0 {
				binds[u.DestinationName] = append(binds[u.DestinationName], u)
			}
		}
	case node.Upstreams != nil:
		names = node.Upstreams
	default:
		for _, n := range cat.Names() {
			if n != node.Service && n != "consul" && !proxies.IsProxyService(n) {
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	for _, name := range names {
		up, ok := cat.Service(name)
		if !ok {
			sc.Problems = append(sc.Problems, fmt.Sprintf("upstream %q is not registered in Consul: left out", name))
			continue
		}
		var built ServiceConfig
		if pol.Built != nil {
			built, ok = pol.Built(name)
		}
		if !ok || pol.Built == nil {
			var plan *rollout.Plan
			if p, found := plans[name]; found {
				plan = &p
			}
			built = Service(up, plan, pol, proxies)
		}
		// How this sidecar calls the upstream follows the upstream's
		// overrides, so a bad one is this sidecar's problem too (it may be
		// reported nowhere else: the upstream may have no sidecar).
		_, upTraffic, upProblems := policyOf(up, nil)
		for _, p := range upProblems {
			if !slices.Contains(sc.Problems, p) {
				sc.Problems = append(sc.Problems, p)
			}
		}
		vh := ir.VirtualHost{
			Service: name,
			Domains: []string{name, name + ".service.consul"},
			Routes:  built.Service.Routes,
			Matches: built.Service.Matches,
			Mirror:  built.Service.Mirror,
			Traffic: upTraffic,
		}
		if upTraffic.Protocol == ir.ProtocolTCP {
			// A TCP stream names no host: the shared outbound listener
			// cannot route it, only a listener of its own can.
			if len(binds[name]) == 0 {
				if listed {
					sc.Problems = append(sc.Problems, fmt.Sprintf("upstream %q speaks tcp (meta signalbox-protocol), which the shared outbound listener cannot route: left out; give it a local bind port (Upstreams[].LocalBindPort in the sidecar registration)", name))
				}
				continue
			}
			if len(vh.Matches) > 0 || vh.Mirror != nil {
				sc.Problems = append(sc.Problems, fmt.Sprintf("upstream %q speaks tcp: its release's header routes and mirroring do not apply, only its weights", name))
				vh.Matches, vh.Mirror = nil, nil
			}
		}
		sc.Outbound.VirtualHosts = append(sc.Outbound.VirtualHosts, vh)
		for _, c := range built.Clusters {
			sc.Clusters = append(sc.Clusters, ir.SidecarCluster{Cluster: c, Traffic: upTraffic})
		}
		for _, b := range binds[name] {
			addr := b.LocalBindAddress
			if addr == "" {
				addr = "127.0.0.1"
			}
			sc.LocalBinds = append(sc.LocalBinds, ir.LocalBind{Service: name, Address: addr, Port: uint32(b.LocalBindPort)})
		}
	}
	sc.LocalBinds = dropClashingBinds(&sc)
	return sc
}

// dropClashingBinds leaves out, with a problem, a local bind whose address
// and port another listener of the sidecar already has: Envoy would refuse
// the whole listener update. Consul allows a bind port equal to the
// sidecar's own inbound or outbound port.
func dropClashingBinds(sc *ir.Sidecar) []ir.LocalBind {
	type taken struct {
		addr, what string
		port       uint32
	}
	used := []taken{{"127.0.0.1", "the outbound listener", sc.Outbound.Port}}
	if sc.Inbound != nil {
		used = append(used, taken{"0.0.0.0", "the inbound listener", sc.Inbound.Port})
	}
	clash := func(addr string, port uint32) string {
		for _, u := range used {
			if u.port == port && (u.addr == addr || anyAddr(u.addr) || anyAddr(addr)) {
				return u.what
			}
		}
		return ""
	}
	var kept []ir.LocalBind
	for _, b := range sc.LocalBinds {
		if what := clash(b.Address, b.Port); what != "" {
			sc.Problems = append(sc.Problems, fmt.Sprintf("upstream %q: local bind %s is taken by %s: left out; choose another local_bind_port in the sidecar registration",
				b.Service, net.JoinHostPort(b.Address, strconv.FormatUint(uint64(b.Port), 10)), what))
			continue
		}
		used = append(used, taken{b.Address, fmt.Sprintf("the local bind of %q", b.Service), b.Port})
		kept = append(kept, b)
	}
	return kept
}

// anyAddr: a listener on it takes the port on every address.
func anyAddr(a string) bool { return a == "0.0.0.0" || a == "::" || a == "[::]" }
