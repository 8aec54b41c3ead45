package e2e

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
	"github.com/signalbox/signalbox/e2e/demo"
)

// TestClientFollowsConsul: a client on xds:///greeter reaches every healthy
// instance; a new instance gets traffic; a failed check, maintenance or a
// deregistration stops traffic to an instance within a second.
func TestClientFollowsConsul(t *testing.T) {
	c := consultest.Start(t)
	backend(t, c, "greeter", "g1", "v1")
	_, in2 := backend(t, c, "greeter", "g2", "v1")
	_, in3 := backend(t, c, "greeter", "g3", "v2")
	sb := startSignalbox(t, c.HTTPAddr(), "")
	cc := dial(t, sb.XDSAddr, "e2e-client-1", "greeter")

	seen := map[string]bool{}
	eventually(t, 10*time.Second, "the client reaches g1, g2 and g3", func() bool {
		if r := demo.Call(context.Background(), cc); r.Err == nil {
			seen[r.ServerID] = true
		}
		return seen["g1"] && seen["g2"] && seen["g3"]
	})

	_, in4 := backend(t, c, "greeter", "g4", "v2")
	d := eventually(t, 2*time.Second, "a new instance g4 gets traffic", func() bool {
		return demo.Call(context.Background(), cc).ServerID == "g4"
	})
	t.Logf("new instance reached after %v", d)

	c.SetHealth(t, in2.Node, in2.ID, "critical")
	d = eventually(t, time.Second, "traffic to g2 stops after its check fails", func() bool { return callsAvoid(cc, 12, "g2") })
	t.Logf("failed check: traffic left g2 after %v", d)

	c.SetMaintenance(t, in3.Node, in3.ID, true)
	d = eventually(t, time.Second, "traffic to g3 stops in maintenance", func() bool { return callsAvoid(cc, 12, "g2", "g3") })
	t.Logf("maintenance: traffic left g3 after %v", d)

	c.Deregister(t, in4.Node, in4.ID)
	d = eventually(t, time.Second, "traffic to g4 stops after deregistration", func() bool { return callsAvoid(cc, 12, "g2", "g3", "g4") })
	t.Logf("deregistration: traffic left g4 after %v", d)

	c.SetHealth(t, in2.Node, in2.ID, "passing")
	eventually(t, 2*time.Second, "g2 gets traffic again once its check passes", func() bool {
		return demo.Call(context.Background(), cc).ServerID == "g2"
	})

	// The debug view shows the client and what it acknowledged.
	var clients []struct {
		NodeID string `json:"nodeId"`
		Types  map[string]struct {
			SentVersion  string `json:"sentVersion"`
			AckedVersion string `json:"ackedVersion"`
		} `json:"types"`
	}
	sb.getJSON("/debug/xds/clients", &clients)
	found := false
	for _, cl := range clients {
		if cl.NodeID != "e2e-client-1" {
			continue
		}
		found = true
		for _, typ := range []string{"lds", "rds", "cds", "eds"} {
			if ts := cl.Types[typ]; ts.AckedVersion == "" || ts.AckedVersion != ts.SentVersion {
				t.Errorf("debug view: %s sent %q acked %q; want the sent version acknowledged", typ, ts.SentVersion, ts.AckedVersion)
			}
		}
	}
	if !found {
		t.Fatalf("debug view does not list node e2e-client-1: %+v", clients)
	}

	code, metrics := sb.get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`signalbox_xds_connected_clients{protocol="sotw"} 1`,
		`signalbox_xds_convergence_seconds_count{type="eds"}`,
		`signalbox_xds_pushes_total{type="eds"}`,
		`signalbox_consul_stale_seconds 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestConsulOutage: while Consul is down, clients keep calling every instance
// without a failure; when it is back, changes flow again.
func TestConsulOutage(t *testing.T) {
	outage := 30 * time.Second
	if v := os.Getenv("SIGNALBOX_E2E_CONSUL_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SIGNALBOX_E2E_CONSUL_OUTAGE=%q: %v", v, err)
		}
		outage = d
	}
	c := consultest.Start(t, consultest.Persistent())
	b1, _ := backend(t, c, "greeter", "o1", "v1")
	b2, _ := backend(t, c, "greeter", "o2", "v1")
	sb := startSignalbox(t, c.HTTPAddr(), "", "--consul-wait", "10s")
	cc := dial(t, sb.XDSAddr, "e2e-outage", "greeter")
	eventually(t, 10*time.Second, "the client reaches both instances", func() bool {
		ok := demo.Call(context.Background(), cc).Err == nil
		return ok && b1.Calls() > 0 && b2.Calls() > 0
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var tally demo.Tally
	loadDone := make(chan struct{})
	go func() { demo.Load(ctx, cc, 10*time.Millisecond, &tally); close(loadDone) }()

	c.Stop()
	stoppedAt := time.Now()
	calls1, calls2 := b1.Calls(), b2.Calls()
	eventually(t, 20*time.Second, "the debug view shows the Consul view as stale", func() bool {
		var st struct {
			StaleSince time.Time `json:"staleSince"`
		}
		sb.getJSON("/debug/consul", &st)
		return !st.StaleSince.IsZero()
	})
	// Keep Consul down for the whole outage, checking as we go.
	watchUntil(t, stoppedAt.Add(outage), func() {
		if _, _, _, failures, lastErr := tally.Snapshot(); failures > 0 {
			t.Fatalf("%d calls failed while Consul was down: %v", failures, lastErr)
		}
	})
	if b1.Calls() == calls1 || b2.Calls() == calls2 {
		t.Fatalf("an endpoint lost its traffic during the outage: o1 %d→%d, o2 %d→%d", calls1, b1.Calls(), calls2, b2.Calls())
	}
	_, metrics := sb.get("/metrics")
	if !strings.Contains(metrics, `signalbox_consul_watch_errors_total`) {
		t.Errorf("/metrics does not count the watch errors during the outage")
	}

	c.Restart(t)
	b3, _ := backend(t, c, "greeter", "o3", "v1")
	d := eventually(t, 30*time.Second, "a change made after Consul came back reaches the client", func() bool { return b3.Calls() > 0 })
	t.Logf("after the restart, the new instance got traffic within %v", d)
	cancel()
	<-loadDone
	_, _, total, failures, lastErr := tally.Snapshot()
	if failures > 0 {
		t.Fatalf("%d of %d calls failed: %v", failures, total, lastErr)
	}
	t.Logf("%d calls during the %v outage and after, none failed", total, outage)
}

// TestSignalboxRestart: signalbox killed and started again while clients
// call; they reconnect and keep calling successfully.
func TestSignalboxRestart(t *testing.T) {
	c := consultest.Start(t)
	b1, _ := backend(t, c, "greeter", "r1", "v1")
	b2, _ := backend(t, c, "greeter", "r2", "v2")
	sb := startSignalbox(t, c.HTTPAddr(), "")
	cc := dial(t, sb.XDSAddr, "e2e-restart", "greeter")
	eventually(t, 10*time.Second, "the client reaches both instances", func() bool {
		demo.Call(context.Background(), cc)
		return b1.Calls() > 0 && b2.Calls() > 0
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var tally demo.Tally
	loadDone := make(chan struct{})
	go func() { demo.Load(ctx, cc, 10*time.Millisecond, &tally); close(loadDone) }()

	sb.Kill()
	sb2 := startSignalbox(t, c.HTTPAddr(), sb.XDSAddr)
	eventually(t, 30*time.Second, "the client reconnects to the new signalbox and acknowledges its endpoints", func() bool {
		var clients []struct {
			NodeID string `json:"nodeId"`
			Types  map[string]struct {
				AckedVersion string `json:"ackedVersion"`
			} `json:"types"`
		}
		sb2.getJSON("/debug/xds/clients", &clients)
		for _, cl := range clients {
			if cl.NodeID == "e2e-restart" && cl.Types["eds"].AckedVersion != "" {
				return true
			}
		}
		return false
	})
	b3, _ := backend(t, c, "greeter", "r3", "v1")
	eventually(t, 10*time.Second, "a change after the restart reaches the client", func() bool { return b3.Calls() > 0 })
	cancel()
	<-loadDone
	_, _, total, failures, lastErr := tally.Snapshot()
	if failures > 0 {
		t.Fatalf("%d of %d calls failed across the restart: %v", failures, total, lastErr)
	}
	t.Logf("%d calls across the restart, none failed", total)
}

// watchUntil runs check every 100ms until the deadline: an observation
// period in which something must keep holding, not a wait for an outcome.
func watchUntil(t *testing.T, deadline time.Time, check func()) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		check()
		<-tick.C
	}
	check()
}
