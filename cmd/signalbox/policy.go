package main

import (
	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/xds/build"
	"github.com/signalbox/signalbox/xds/ir"
	"github.com/signalbox/signalbox/xds/policy"
)

// servicePolicy adapts xds/policy to the build step: a service's overrides
// are the signalbox-* meta its instances agree on (Consul has no
// service-level meta), laid over the config file's defaults.
func servicePolicy(c policy.Config) build.ServicePolicy {
	return func(svc *discovery.Service, inst *discovery.Instance) (ir.Telemetry, ir.TrafficPolicy, []string) {
		metas := make([]map[string]string, 0, len(svc.Instances))
		for _, in := range svc.Instances {
			metas = append(metas, in.Meta)
		}
		meta, conflicts := policy.Merge(metas)
		info := policy.InstanceInfo{Service: svc.Name}
		if inst != nil {
			info.Version, info.Node, info.Datacenter = inst.Version, inst.Node, inst.Datacenter
		}
		sp := policy.ForService(c, info, meta)
		var problems []string
		for _, p := range append(conflicts, sp.Problems...) {
			problems = append(problems, "service "+svc.Name+": "+p.String())
		}
		return sp.Telemetry, sp.Traffic, problems
	}
}
