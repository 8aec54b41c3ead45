package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/signalbox/signalbox/rollout"
)

// KV layout under the prefix (default "signalbox/rollouts/"):
//
//	current/<service>  the service's rollout: active, or the last one that ended
//	archive/<id>       rollouts that a newer one of the same service replaced
//	leader             the session lock of the replica that drives
//
// One key per service makes "one active rollout per service" a
// check-and-set on that key, however many replicas race.
const (
	currentDir = "current/"
	archiveDir = "archive/"
	leaderKey  = "leader"
)

// stored is a rollout and the KV index it was read at (for check-and-set).
type stored struct {
	r     rollout.Rollout
	index uint64
}

// kvStore reads and writes rollouts in Consul KV.
type kvStore struct {
	kv     *api.KV
	prefix string
}

// errCASConflict: somebody wrote the key since it was read.
var errCASConflict = errors.New("rollout changed meanwhile")

// errWrittenIndexUnknown: the write succeeded, but its new index could not
// be read back.
var errWrittenIndexUnknown = errors.New("rollout written")

func (s *kvStore) key(dir, name string) string { return s.prefix + dir + name }

// list reads every current rollout, blocking until the index passes
// waitIndex (0: at once).
func (s *kvStore) list(ctx context.Context, waitIndex uint64) (map[string]stored, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: waitIndex}).WithContext(ctx)
	pairs, meta, err := s.kv.List(s.key(currentDir, ""), q)
	if err != nil {
		return nil, 0, fmt.Errorf("list rollouts under %s: %w", s.key(currentDir, ""), err)
	}
	out := map[string]stored{}
	var errs []error
	for _, p := range pairs {
		if strings.HasSuffix(p.Key, "/") && len(p.Value) == 0 {
			continue // a folder, as Consul's UI makes them
		}
		var r rollout.Rollout
		if err := json.Unmarshal(p.Value, &r); err != nil {
			// One bad key must not stop every other release.
			errs = append(errs, fmt.Errorf("rollout at %s: %w (fix or delete the key)", p.Key, err))
			continue
		}
		if want := s.key(currentDir, r.Spec.Service); p.Key != want {
			errs = append(errs, fmt.Errorf("rollout at %s is of service %q, which belongs at %s (move or delete the key)", p.Key, r.Spec.Service, want))
			continue
		}
		out[r.Spec.Service] = stored{r: r, index: p.ModifyIndex}
	}
	return out, meta.LastIndex, errors.Join(errs...)
}

// get reads the current rollout of a service; ok is false when there is none.
func (s *kvStore) get(ctx context.Context, service string) (stored, bool, error) {
	p, _, err := s.kv.Get(s.key(currentDir, service), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return stored{}, false, fmt.Errorf("read rollout of %s: %w", service, err)
	}
	if p == nil {
		return stored{}, false, nil
	}
	var r rollout.Rollout
	if err := json.Unmarshal(p.Value, &r); err != nil {
		return stored{}, false, fmt.Errorf("rollout at %s: %w", p.Key, err)
	}
	return stored{r: r, index: p.ModifyIndex}, true, nil
}

// put writes a service's rollout if the key is still at index (0: only if
// absent). It returns the new index.
func (s *kvStore) put(ctx context.Context, r rollout.Rollout, index uint64) (uint64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("encode rollout %s: %w", r.ID, err)
	}
	p := &api.KVPair{Key: s.key(currentDir, r.Spec.Service), Value: b, ModifyIndex: index}
	ok, _, err := s.kv.CAS(p, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("write rollout %s: %w", r.ID, err)
	}
	if !ok {
		return 0, errCASConflict
	}
	// The new index is not returned by a CAS; read it back.
	got, _, err := s.kv.Get(p.Key, (&api.QueryOptions{}).WithContext(ctx))
	if err == nil && got == nil {
		err = errors.New("the key is gone")
	}
	if err != nil {
		return 0, fmt.Errorf("%w: read back rollout %s: %w", errWrittenIndexUnknown, r.ID, err)
	}
	return got.ModifyIndex, nil
}

// archive keeps a finished rollout under its id.
func (s *kvStore) archive(ctx context.Context, r rollout.Rollout) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode rollout %s: %w", r.ID, err)
	}
	if _, err := s.kv.Put(&api.KVPair{Key: s.key(archiveDir, r.ID), Value: b}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("archive rollout %s: %w", r.ID, err)
	}
	return nil
}

// archived reads every archived rollout.
func (s *kvStore) archived(ctx context.Context) ([]rollout.Rollout, error) {
	pairs, _, err := s.kv.List(s.key(archiveDir, ""), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("list archived rollouts: %w", err)
	}
	var out []rollout.Rollout
	for _, p := range pairs {
		if strings.HasSuffix(p.Key, "/") && len(p.Value) == 0 {
			continue // a folder, as Consul's UI makes them
		}
		var r rollout.Rollout
		if err := json.Unmarshal(p.Value, &r); err != nil {
			continue // a bad archive entry loses history, not traffic
		}
		out = append(out, r)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.Before(out[b].CreatedAt) })
	return out, nil
}

// serviceOfID reads the service out of an id made by newID.
func serviceOfID(id string) (string, bool) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 {
		return "", false
	}
	return id[:i], true
}

// hostID names this replica in the lock's value, for whoever looks.
func hostID() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s pid %d", h, os.Getpid())
}
