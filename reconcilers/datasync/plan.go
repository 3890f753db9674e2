package datasync

import (
	"cmp"
	"slices"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// PlanInput is the live state a plan is made from.
type PlanInput struct {
	Cluster string
	Delay   time.Duration
	// Brokers are the broker services that exist or are wanted.
	Brokers []string
	// BrokerTasks are the tasks of the broker services, by service name.
	BrokerTasks map[string][]dswarm.Task
	// AgentTasks are the sync agent service's tasks.
	AgentTasks []dswarm.Task
	Nodes      []dswarm.Node
	// Network is the control network the agents are reached on.
	Network string
	// Stopped names, for a broker stopped before its removal, the node it
	// ran on: Swarm deletes the tasks of a service scaled to zero, and
	// that node must still push the state saved at the stop.
	Stopped map[string]string
	// Lost are nodes the operator found lost before Swarm did: their
	// agents are neither peers nor targets (nobody waits on them).
	Lost map[string]bool
}

// Plan computes the config every agent should run, by node id, from live
// task placement and node state:
//   - the peers are the nodes whose agent task runs on a Ready node — on a
//     drained or paused node also an agent Swarm is stopping, which hands
//     off (serves its copies and pushes what its brokers saved on the way
//     out) before it exits; a Down node is not reachable, nor is one the
//     operator found lost (Lost);
//   - only a peer open to new tasks (active, its agent meant to run) is a
//     target: a broker cannot be moved to the others;
//   - a broker's source is the node running its task; if none runs, the
//     node of its newest task (it pushes the state saved at the stop);
//   - its targets are the other peers.
func Plan(in PlanInput) map[string]Config {
	nodes := map[string]dswarm.Node{}
	for _, n := range in.Nodes {
		nodes[n.ID] = n
	}
	var peers []Peer
	seen, target := map[string]bool{}, map[string]bool{}
	// Newest first: after a node restarts, Swarm can list its old agent
	// task as running beside the new one for a while, and the old address
	// answers nobody.
	agents := slices.Clone(in.AgentTasks)
	slices.SortStableFunc(agents, func(a, b dswarm.Task) int { return b.Meta.CreatedAt.Compare(a.Meta.CreatedAt) })
	for _, t := range agents {
		n, ok := nodes[t.NodeID]
		active := n.Spec.Availability == dswarm.NodeAvailabilityActive
		if !ok || seen[t.NodeID] || in.Lost[t.NodeID] || n.Status.State != dswarm.NodeStateReady || !(Running(t) || !active && t.Status.State == dswarm.TaskStateRunning) {
			continue
		}
		addr := swarm.TaskAddress(t, in.Network)
		if addr == "" {
			continue
		}
		seen[t.NodeID] = true
		target[t.NodeID] = active && Running(t)
		peers = append(peers, Peer{Node: t.NodeID, Hostname: n.Description.Hostname, Addr: addr})
	}
	slices.SortFunc(peers, func(a, b Peer) int { return cmp.Compare(a.Node, b.Node) })
	brokers := slices.Clone(in.Brokers)
	slices.Sort(brokers)
	brokers = slices.Compact(brokers)
	var bs []Broker
	for _, name := range brokers {
		b := Broker{Name: name, Volume: api.BrokerVolume(name), Source: SourceNode(in.BrokerTasks[name])}
		if n := in.Stopped[name]; n != "" {
			// A retiring broker (scaled to zero, no task will be placed):
			// the node it ran on pushes its last state, also while its task
			// is still stopping, and whatever older tasks Swarm still lists
			// once it deleted the newest one (seen: an older task's node
			// named the source, the last state never pushed).
			b.Source = n
		}
		for _, p := range peers {
			if p.Node != b.Source && target[p.Node] {
				b.Targets = append(b.Targets, p.Node)
			}
		}
		bs = append(bs, b)
	}
	out := map[string]Config{}
	for _, p := range peers {
		out[p.Node] = Config{Cluster: in.Cluster, Node: p.Node, Delay: Duration(in.Delay), Peers: peers, Brokers: bs}
	}
	return out
}

// SourceNode is the node a broker's data comes from: the node running its
// task; else the node of a task Swarm is stopping but that still runs (a
// drain, an update: it saves on its way out and pushes that); else, when
// its newest task has stopped, that task's node (it pushes the state
// saved at the stop). "" while a new task is being placed or started and
// no old one runs: no node pushes then (the new task's node pulls the
// newest copy before the broker starts, and becomes the source once it
// runs).
func SourceNode(tasks []dswarm.Task) string {
	var newest, running, stopping dswarm.Task
	for _, t := range tasks {
		if t.NodeID == "" {
			continue // not placed yet
		}
		if Running(t) && (running.ID == "" || t.Meta.CreatedAt.After(running.Meta.CreatedAt)) {
			running = t
		}
		if t.Status.State == dswarm.TaskStateRunning && (stopping.ID == "" || t.Meta.CreatedAt.After(stopping.Meta.CreatedAt)) {
			stopping = t
		}
		if newest.ID == "" || t.Meta.CreatedAt.After(newest.Meta.CreatedAt) {
			newest = t
		}
	}
	if running.ID != "" {
		return running.NodeID
	}
	if stopping.ID != "" {
		return stopping.NodeID
	}
	if newest.ID == "" || !Stopped(newest) {
		return ""
	}
	return newest.NodeID
}

// placing reports whether a broker has a task that is not stopped.
func placing(tasks []dswarm.Task) bool {
	for _, t := range tasks {
		if !Stopped(t) {
			return true
		}
	}
	return false
}

// Stopped reports whether a task has ended.
func Stopped(t dswarm.Task) bool {
	switch t.Status.State {
	case dswarm.TaskStateShutdown, dswarm.TaskStateComplete, dswarm.TaskStateFailed, dswarm.TaskStateRejected, dswarm.TaskStateOrphaned, dswarm.TaskStateRemove:
		return true
	}
	return false
}

// Running reports whether a task runs and is meant to.
func Running(t dswarm.Task) bool {
	return t.DesiredState == dswarm.TaskStateRunning && t.Status.State == dswarm.TaskStateRunning
}
