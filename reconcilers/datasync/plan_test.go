package datasync

import (
	"slices"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
)

func node(id string, state dswarm.NodeState, avail dswarm.NodeAvailability) dswarm.Node {
	n := dswarm.Node{ID: id}
	n.Description.Hostname = "host-" + id
	n.Status.State = state
	n.Spec.Availability = avail
	return n
}

func task(id, nodeID string, desired, state dswarm.TaskState, created time.Time, addr string) dswarm.Task {
	t := dswarm.Task{ID: id, NodeID: nodeID, DesiredState: desired}
	t.Status.State = state
	t.Meta.CreatedAt = created
	if addr != "" {
		a := dswarm.NetworkAttachment{Addresses: []string{addr + "/24"}}
		a.Network.Spec.Name = "ctl"
		t.NetworksAttachments = []dswarm.NetworkAttachment{a}
	}
	return t
}

func TestPlan(t *testing.T) {
	t0 := time.Unix(1000, 0)
	run, shut := dswarm.TaskStateRunning, dswarm.TaskStateShutdown
	nodes := []dswarm.Node{
		node("a", dswarm.NodeStateReady, dswarm.NodeAvailabilityActive),
		node("b", dswarm.NodeStateReady, dswarm.NodeAvailabilityActive),
		node("c", dswarm.NodeStateReady, dswarm.NodeAvailabilityDrain),
		node("d", dswarm.NodeStateDown, dswarm.NodeAvailabilityActive),
		node("e", dswarm.NodeStateReady, dswarm.NodeAvailabilityActive),
		node("f", dswarm.NodeStateReady, dswarm.NodeAvailabilityDrain),
		node("g", dswarm.NodeStateReady, dswarm.NodeAvailabilityActive),
	}
	agents := []dswarm.Task{
		task("ag-a", "a", run, run, t0, "10.0.0.1"),
		task("ag-b", "b", run, run, t0, "10.0.0.2"),
		task("ag-c", "c", run, run, t0, "10.0.0.3"),             // drained: a peer, no target
		task("ag-f", "f", shut, run, t0, "10.0.0.6"),            // being stopped on a drained node: hands off
		task("ag-g", "g", shut, run, t0, "10.0.0.7"),            // being stopped on an active node: not a peer
		task("ag-d", "d", run, run, t0, "10.0.0.4"),             // Down: no target
		task("ag-e", "e", run, dswarm.TaskStatePending, t0, ""), // not running yet
	}
	brokers := map[string][]dswarm.Task{
		// Moved from b to a: a runs it.
		"x-broker-0": {task("0-old", "b", shut, shut, t0, ""), task("0-new", "a", run, run, t0.Add(time.Second), "")},
		// Stopped on b (scaled to zero): b stays the source.
		"x-broker-1": {task("1-old", "b", shut, shut, t0, "")},
		// Being started on a after running on b: nobody pushes.
		"x-broker-2": {task("2-old", "b", shut, shut, t0, ""), task("2-new", "a", run, dswarm.TaskStateStarting, t0.Add(time.Second), "")},
		// Being stopped on the drained c, still running (saving), its new
		// task starting on a: c pushes what it saves.
		"x-broker-3": {task("3-old", "c", shut, run, t0, ""), task("3-new", "a", run, dswarm.TaskStateStarting, t0.Add(time.Second), "")},
	}
	plan := Plan(PlanInput{Cluster: "x", Brokers: []string{"x-broker-2", "x-broker-0", "x-broker-1", "x-broker-0", "x-broker-3"}, BrokerTasks: brokers, AgentTasks: agents, Nodes: nodes, Network: "ctl", Delay: time.Second})
	if got := slices.Sorted(func(yield func(string) bool) {
		for k := range plan {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(got, []string{"a", "b", "c", "f"}) {
		t.Fatalf("agents configured: %v, want a, b and the drained c and f", got)
	}
	cfg := plan["b"]
	if cfg.Node != "b" || cfg.Cluster != "x" || len(cfg.Peers) != 4 || cfg.Peers[0].Addr != "10.0.0.1" || cfg.Peers[3].Addr != "10.0.0.6" {
		t.Fatalf("config of b: %+v", cfg)
	}
	want := []Broker{
		{Name: "x-broker-0", Volume: "x-broker-0-data", Source: "a", Targets: []string{"b"}},
		{Name: "x-broker-1", Volume: "x-broker-1-data", Source: "b", Targets: []string{"a"}},
		{Name: "x-broker-2", Volume: "x-broker-2-data", Source: "", Targets: []string{"a", "b"}},
		{Name: "x-broker-3", Volume: "x-broker-3-data", Source: "c", Targets: []string{"a", "b"}},
	}
	for i, b := range cfg.Brokers {
		if b.Name != want[i].Name || b.Volume != want[i].Volume || b.Source != want[i].Source || !slices.Equal(b.Targets, want[i].Targets) {
			t.Errorf("broker %d: %+v, want %+v", i, b, want[i])
		}
	}
	if len(cfg.Brokers) != 4 {
		t.Fatalf("brokers: %d, want 4", len(cfg.Brokers))
	}
	// Same input, same config (hash stable): no push when nothing changed.
	again := Plan(PlanInput{Cluster: "x", Brokers: []string{"x-broker-0", "x-broker-1", "x-broker-2", "x-broker-3"}, BrokerTasks: brokers, AgentTasks: agents, Nodes: nodes, Network: "ctl", Delay: time.Second})
	if again["b"].Hash() != cfg.Hash() {
		t.Fatal("the same state gave a different config")
	}
}

// TestPlanRetiringBrokerKeepsItsNode: a broker scaled to zero before its
// removal (the retiring label names the node it ran on) is pushed by that
// node while its task is still stopping, and after Swarm deleted that
// task while an older task on another node is still listed (seen in the
// HA suite: the older task's node was named the source, and the last
// state never reached the copies).
func TestPlanRetiringBrokerKeepsItsNode(t *testing.T) {
	t0 := time.Unix(1000, 0)
	run, shut := dswarm.TaskStateRunning, dswarm.TaskStateShutdown
	nodes := []dswarm.Node{node("a", dswarm.NodeStateReady, dswarm.NodeAvailabilityActive), node("b", dswarm.NodeStateReady, dswarm.NodeAvailabilityActive)}
	agents := []dswarm.Task{task("ag-a", "a", run, run, t0, "10.0.0.1"), task("ag-b", "b", run, run, t0, "10.0.0.2")}
	cases := map[string][]dswarm.Task{
		"its task still stopping":               {task("old", "b", shut, dswarm.TaskStateFailed, t0, ""), task("new", "a", shut, run, t0.Add(time.Second), "")},
		"its task deleted, an older one listed": {task("old", "b", shut, dswarm.TaskStateFailed, t0, "")},
		"no task listed":                        nil,
	}
	for name, tasks := range cases {
		plan := Plan(PlanInput{Cluster: "x", Brokers: []string{"x-broker-1"}, BrokerTasks: map[string][]dswarm.Task{"x-broker-1": tasks},
			AgentTasks: agents, Nodes: nodes, Network: "ctl", Stopped: map[string]string{"x-broker-1": "a"}})
		if b := plan["b"].Brokers[0]; b.Source != "a" || !slices.Equal(b.Targets, []string{"b"}) {
			t.Errorf("%s: source %q targets %v, want a and [b]", name, b.Source, b.Targets)
		}
	}
}

// TestPlanTakesEachNodesNewestAgent: after a node restarts, Swarm can
// list its old agent task as running beside the new one for a while; the
// peer address is the newest task's (the old address answers nobody).
func TestPlanTakesEachNodesNewestAgent(t *testing.T) {
	t0 := time.Unix(1000, 0)
	run := dswarm.TaskStateRunning
	nodes := []dswarm.Node{node("a", dswarm.NodeStateReady, dswarm.NodeAvailabilityActive), node("b", dswarm.NodeStateReady, dswarm.NodeAvailabilityActive)}
	for _, agents := range [][]dswarm.Task{
		{task("ag-a", "a", run, run, t0, "10.0.0.1"), task("ag-b-old", "b", run, run, t0, "10.0.0.2"), task("ag-b-new", "b", run, run, t0.Add(time.Minute), "10.0.0.9")},
		{task("ag-a", "a", run, run, t0, "10.0.0.1"), task("ag-b-new", "b", run, run, t0.Add(time.Minute), "10.0.0.9"), task("ag-b-old", "b", run, run, t0, "10.0.0.2")},
	} {
		plan := Plan(PlanInput{Cluster: "x", Brokers: []string{"x-broker-0"}, AgentTasks: agents, Nodes: nodes, Network: "ctl"})
		cfg := plan["a"]
		p, ok := cfg.Peer("b")
		if !ok || p.Addr != "10.0.0.9" {
			t.Errorf("peer b: %+v (listed %s first), want the newest task's 10.0.0.9", p, agents[1].ID)
		}
	}
}
