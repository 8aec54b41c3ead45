package consultest

import (
	"testing"

	"github.com/hashicorp/consul/api"
)

// Instance is one service instance registered through the catalog API, on a
// node of its own unless several instances name the same Node.
type Instance struct {
	Service string
	ID      string // default Service
	Node    string // default "node-" + ID
	// NodeAddress is the node's address (default "127.0.0.1"); Address is
	// the service's own, empty to fall back to the node's.
	NodeAddress string
	Address     string
	Port        int
	Tags        []string
	Meta        map[string]string
	NodeMeta    map[string]string
	// Check is the status of the instance's service check: "passing"
	// (default), "warning" or "critical".
	Check string
}

func (in Instance) withDefaults() Instance {
	if in.ID == "" {
		in.ID = in.Service
	}
	if in.Node == "" {
		in.Node = "node-" + in.ID
	}
	if in.NodeAddress == "" {
		in.NodeAddress = "127.0.0.1"
	}
	if in.Check == "" {
		in.Check = api.HealthPassing
	}
	return in
}

// CheckID is the ID of the service check RegisterInstance creates.
func CheckID(serviceID string) string { return "service:" + serviceID }

// RegisterInstance registers (or re-registers) the instance, its node and
// one service check with the given status, and returns the instance with
// defaults filled in.
func (a *Agent) RegisterInstance(t testing.TB, in Instance) Instance {
	t.Helper()
	in = in.withDefaults()
	reg := &api.CatalogRegistration{
		Node:     in.Node,
		Address:  in.NodeAddress,
		NodeMeta: in.NodeMeta,
		Service: &api.AgentService{
			ID:      in.ID,
			Service: in.Service,
			Address: in.Address,
			Port:    in.Port,
			Tags:    in.Tags,
			Meta:    in.Meta,
		},
		Check: &api.AgentCheck{
			Node:      in.Node,
			CheckID:   CheckID(in.ID),
			Name:      "service check",
			Status:    in.Check,
			ServiceID: in.ID,
		},
	}
	if _, err := a.client.Catalog().Register(reg, nil); err != nil {
		t.Fatalf("consultest: register %s/%s: %v", in.Node, in.ID, err)
	}
	return in
}

// SetHealth sets the status of the instance's service check.
func (a *Agent) SetHealth(t testing.TB, node, serviceID, status string) {
	t.Helper()
	a.SetCheckOutput(t, node, serviceID, status, "")
}

// SetCheckOutput sets the status and the output of the instance's service
// check. A new output alone changes the catalog's index, like a script
// check whose output changes, without changing anything signalbox keeps.
func (a *Agent) SetCheckOutput(t testing.TB, node, serviceID, status, output string) {
	t.Helper()
	a.setCheck(t, node, &api.AgentCheck{
		Node: node, CheckID: CheckID(serviceID), Name: "service check", Status: status, Output: output, ServiceID: serviceID,
	})
}

// SetMaintenance puts the instance into maintenance mode (on) or takes it out,
// with the check Consul's own agent uses: "_service_maintenance:<id>", critical.
func (a *Agent) SetMaintenance(t testing.TB, node, serviceID string, on bool) {
	t.Helper()
	id := api.ServiceMaintPrefix + serviceID
	if !on {
		a.deregister(t, &api.CatalogDeregistration{Node: node, CheckID: id})
		return
	}
	a.setCheck(t, node, &api.AgentCheck{
		Node: node, CheckID: id, Name: "Service Maintenance Mode", Status: api.HealthCritical,
		Notes: "consultest", ServiceID: serviceID,
	})
}

// SetNodeMaintenance puts the whole node into maintenance mode or takes it
// out ("_node_maintenance", critical).
func (a *Agent) SetNodeMaintenance(t testing.TB, node string, on bool) {
	t.Helper()
	if !on {
		a.deregister(t, &api.CatalogDeregistration{Node: node, CheckID: api.NodeMaint})
		return
	}
	a.setCheck(t, node, &api.AgentCheck{
		Node: node, CheckID: api.NodeMaint, Name: "Node Maintenance Mode", Status: api.HealthCritical, Notes: "consultest",
	})
}

// Deregister removes one service instance (and its checks) from node.
func (a *Agent) Deregister(t testing.TB, node, serviceID string) {
	t.Helper()
	a.deregister(t, &api.CatalogDeregistration{Node: node, ServiceID: serviceID})
}

// DeregisterNode removes a node with all its services and checks.
func (a *Agent) DeregisterNode(t testing.TB, node string) {
	t.Helper()
	a.deregister(t, &api.CatalogDeregistration{Node: node})
}

func (a *Agent) setCheck(t testing.TB, node string, c *api.AgentCheck) {
	t.Helper()
	reg := &api.CatalogRegistration{Node: node, SkipNodeUpdate: true, Check: c}
	if _, err := a.client.Catalog().Register(reg, nil); err != nil {
		t.Fatalf("consultest: set check %s on %s: %v", c.CheckID, node, err)
	}
}

func (a *Agent) deregister(t testing.TB, d *api.CatalogDeregistration) {
	t.Helper()
	if _, err := a.client.Catalog().Deregister(d, nil); err != nil {
		t.Fatalf("consultest: deregister %+v: %v", *d, err)
	}
}
