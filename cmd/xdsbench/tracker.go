package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// tracker follows the one change in flight: which subscribed clients of
// each kind do not hold it yet, and when the first and the last got it.
type tracker struct {
	active atomic.Pointer[change]
}

// change is one health flip of one instance.
type change struct {
	svc     int
	addr    string
	present bool // the instance is routable after the change
	t0      time.Time

	mu        sync.Mutex
	waiting   map[*client]struct{}
	remaining [numKinds]int
	subs      [numKinds]int
	first     [numKinds]time.Time
	last      [numKinds]time.Time
	stale     [numKinds]int // subscribers that already held the new state
	done      [numKinds]chan struct{}
	all       chan struct{}
}

// holds reports whether set reflects the change.
func (ch *change) holds(set epSet, ok bool) bool {
	if !ok {
		return false
	}
	_, in := set[ch.addr]
	return in == ch.present
}

// begin makes a change the active one. subs[k] are the clients of kind k
// subscribed to the service. Call it just before the write: it sets t0.
func (t *tracker) begin(svc int, addr string, present bool, subs [numKinds][]*client) *change {
	ch := &change{svc: svc, addr: addr, present: present, waiting: map[*client]struct{}{}, all: make(chan struct{})}
	for k := range numKinds {
		ch.done[k] = make(chan struct{})
	}
	ch.mu.Lock()
	t.active.Store(ch)
	for k := range numKinds {
		ch.subs[k] = len(subs[k])
		for _, c := range subs[k] {
			set, ok := c.state(svc)
			if ch.holds(set, ok) {
				// Left over from a change that timed out, or a bug: not
				// waited for, and reported.
				ch.stale[k]++
				continue
			}
			ch.waiting[c] = struct{}{}
			ch.remaining[k]++
		}
	}
	ch.closeDone()
	ch.t0 = time.Now()
	ch.mu.Unlock()
	return ch
}

// closeDone closes the done channels of kinds nobody waits for any more.
// ch.mu must be held.
func (ch *change) closeDone() {
	all := true
	for k := range numKinds {
		if ch.remaining[k] == 0 {
			select {
			case <-ch.done[k]:
			default:
				close(ch.done[k])
			}
		} else {
			all = false
		}
	}
	if all {
		select {
		case <-ch.all:
		default:
			close(ch.all)
		}
	}
}

func (t *tracker) end() { t.active.Store(nil) }

// observe is called by a client that received a new EDS for service svc.
func (t *tracker) observe(c *client, svc int, set epSet, at time.Time) {
	ch := t.active.Load()
	if ch == nil || ch.svc != svc || !ch.holds(set, true) {
		return
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if _, ok := ch.waiting[c]; !ok {
		return
	}
	delete(ch.waiting, c)
	k := c.kind
	ch.remaining[k]--
	if ch.first[k].IsZero() || at.Before(ch.first[k]) {
		ch.first[k] = at
	}
	if at.After(ch.last[k]) {
		ch.last[k] = at
	}
	ch.closeDone()
}

// result is what one change measured, per kind.
type result struct {
	subs     [numKinds]int
	stale    [numKinds]int
	timedOut [numKinds]bool
	first    [numKinds]time.Duration
	last     [numKinds]time.Duration
	missing  [numKinds]int // clients that never got it (timeouts)
}

func (ch *change) result() result {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var r result
	r.subs, r.stale = ch.subs, ch.stale
	for k := range numKinds {
		if ch.remaining[k] > 0 {
			r.timedOut[k] = true
			r.missing[k] = ch.remaining[k]
			continue
		}
		if !ch.first[k].IsZero() {
			r.first[k] = max(0, ch.first[k].Sub(ch.t0))
			r.last[k] = max(0, ch.last[k].Sub(ch.t0))
		}
	}
	return r
}
