package policy

import (
	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/xds/ir"
)

// ForCatalog is a service's policy from the catalog: its overrides are the
// signalbox-* meta its instances agree on (Consul has no service-level
// meta), laid over c. inst, when known, is the instance a sidecar fronts,
// for the per-instance span tags. Its signature is xds/build's
// ServicePolicy, so c.ForCatalog can be handed to the build step.
func (c Config) ForCatalog(svc *discovery.Service, inst *discovery.Instance) (ir.Telemetry, ir.TrafficPolicy, []string) {
	metas := make([]map[string]string, 0, len(svc.Instances))
	for _, in := range svc.Instances {
		metas = append(metas, in.Meta)
	}
	meta, conflicts := Merge(metas)
	info := InstanceInfo{Service: svc.Name}
	if inst != nil {
		info.Version, info.Node, info.Datacenter = inst.Version, inst.Node, inst.Datacenter
	}
	sp := ForService(c, info, meta)
	var problems []string
	for _, p := range append(conflicts, sp.Problems...) {
		problems = append(problems, "service "+svc.Name+": "+p.String())
	}
	return sp.Telemetry, sp.Traffic, problems
}
