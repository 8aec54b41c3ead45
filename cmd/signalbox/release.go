package main

import (
	"fmt"
	"os"
	"time"

	"github.com/signalbox/signalbox/api"
	"github.com/signalbox/signalbox/discovery"
	"github.com/signalbox/signalbox/rollout/controller"
	"github.com/signalbox/signalbox/topology"
)

// graphCounts is the live graph as the release controller reads it.
type graphCounts struct {
	store *topology.Store
	now   func() time.Time
}

func (g graphCounts) Totals(service string) (callers, self map[string]controller.Counts) {
	c, s := g.store.VersionTotals(service)
	return convertCounts(c), convertCounts(s)
}

// P99 takes the callers' view when they saw the service's traffic (their
// sidecars time the whole call), else the service's own.
func (g graphCounts) P99(service string, window time.Duration) map[string]controller.WindowP99 {
	vc, err := g.store.VersionCounts(service, g.now(), window)
	if err != nil {
		return nil
	}
	view := vc.Callers
	var n uint64
	for _, c := range view {
		n += c.Requests
	}
	if n == 0 {
		view = vc.Self
	}
	out := make(map[string]controller.WindowP99, len(view))
	for v, c := range view {
		out[v] = controller.WindowP99{P99Ms: c.P99Ms, Requests: c.Requests}
	}
	return out
}

func convertCounts(in map[string]topology.Counts) map[string]controller.Counts {
	out := make(map[string]controller.Counts, len(in))
	for v, c := range in {
		out[v] = controller.Counts{Requests: c.Requests, Errors: c.Errors, P99Ms: c.P99Ms}
	}
	return out
}

// catalogVersions counts a service's instances per version in the latest
// complete catalog from Consul.
type catalogVersions struct {
	latest func() *discovery.Catalog
	synced <-chan struct{}
}

func (c catalogVersions) Versions(service string) (map[string]int, bool) {
	select {
	case <-c.synced:
	default:
		return nil, false
	}
	cat := c.latest()
	if cat == nil {
		return nil, false
	}
	svc, ok := cat.Service(service)
	if !ok {
		return map[string]int{}, true
	}
	out := map[string]int{}
	for _, in := range svc.Instances {
		if in.Kind != "" {
			continue // a sidecar's own registration, not a version of the app
		}
		out[in.Version]++
	}
	return out, true
}

// loadTokens reads the --api-tokens file; "" means a read-only API.
func loadTokens(path string) (*api.Tokens, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--api-tokens: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o004 != 0 {
		// A token file every user on the host can read is refused (a
		// group of its own, mode 640, is fine).
		return nil, fmt.Errorf("--api-tokens %s is readable by every user (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	return api.ParseTokens(f, path)
}

// replicaID names this signalbox among its replicas, the same across its
// restarts.
func replicaID(httpAddr string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return host + " " + httpAddr
}
