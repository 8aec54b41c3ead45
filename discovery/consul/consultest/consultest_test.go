package consultest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/signalbox/signalbox/discovery/consul/consultest"
)

func TestAgentHelpers(t *testing.T) {
	a := consultest.Start(t)
	if leader, err := a.Client().Status().Leader(); err != nil || leader == "" {
		t.Fatalf("leader = %q, %v", leader, err)
	}
	p := a.Ports()
	if a.HTTPAddr() == a.GRPCAddr() || p.HTTP == 0 || p.SerfLAN == p.SerfWAN {
		t.Fatalf("ports not distinct: %+v", p)
	}

	in := a.RegisterInstance(t, consultest.Instance{
		Service: "web", ID: "web-1", Port: 8080, Tags: []string{"v1"}, Meta: map[string]string{"k": "v"},
		NodeMeta: map[string]string{"zone": "a"}, Check: "warning",
	})
	if in.Node != "node-web-1" || in.NodeAddress != "127.0.0.1" {
		t.Errorf("defaults not filled in: %+v", in)
	}
	status := func() (string, int) {
		t.Helper()
		entries, _, err := a.Client().Health().Service("web", "", false, nil)
		if err != nil {
			t.Fatalf("health: %v", err)
		}
		if len(entries) == 0 {
			return "", 0
		}
		return entries[0].Checks.AggregatedStatus(), len(entries)
	}
	if s, n := status(); s != api.HealthWarning || n != 1 {
		t.Errorf("after register: %s, %d entries", s, n)
	}
	a.SetHealth(t, in.Node, in.ID, api.HealthCritical)
	if s, _ := status(); s != api.HealthCritical {
		t.Errorf("after SetHealth critical: %s", s)
	}
	a.SetMaintenance(t, in.Node, in.ID, true)
	if s, _ := status(); s != api.HealthMaint {
		t.Errorf("after SetMaintenance: %s", s)
	}
	a.SetMaintenance(t, in.Node, in.ID, false)
	a.SetHealth(t, in.Node, in.ID, api.HealthPassing)
	a.SetNodeMaintenance(t, in.Node, true)
	if s, _ := status(); s != api.HealthMaint {
		t.Errorf("after SetNodeMaintenance: %s", s)
	}
	a.SetNodeMaintenance(t, in.Node, false)
	if s, _ := status(); s != api.HealthPassing {
		t.Errorf("after maintenance off: %s", s)
	}
	a.Deregister(t, in.Node, in.ID)
	if _, n := status(); n != 0 {
		t.Errorf("after Deregister: %d entries", n)
	}

	a.Stop()
	a.Stop() // idempotent
	if _, err := a.Client().Status().Leader(); err == nil {
		t.Errorf("agent still answers after Stop")
	}
	if fi, err := os.Stat(a.LogPath()); err != nil || fi.Size() == 0 {
		t.Errorf("agent log %s: %v", a.LogPath(), err)
	}
}

func TestBinaryFromEnvironment(t *testing.T) {
	t.Setenv(consultest.BinEnv, filepath.Join(t.TempDir(), "no-such-consul"))
	if _, err := consultest.Binary(); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Binary() with a missing override: %v", err)
	}
}
