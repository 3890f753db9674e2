package scaling

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// Node is what PerNode reads of a Swarm node.
type Node struct {
	ID, Hostname, Role, OS, Arch string
	// Ready: Swarm sees the node up; Active: its availability is active
	// (not drained or paused).
	Ready, Active        bool
	Labels, EngineLabels map[string]string
}

// NodeOf is n as PerNode reads it.
func NodeOf(n dswarm.Node) Node {
	return Node{ID: n.ID, Hostname: n.Description.Hostname, Role: string(n.Spec.Role),
		OS: n.Description.Platform.OS, Arch: n.Description.Platform.Architecture,
		Ready: n.Status.State == dswarm.NodeStateReady, Active: n.Spec.Availability == dswarm.NodeAvailabilityActive,
		Labels: n.Spec.Labels, EngineLabels: n.Description.Engine.Labels}
}

// Admits says whether n satisfies every placement constraint, as Swarm
// reads them ("node.labels.zone==edge", "node.role!=manager", ...;
// values compared case-insensitively, a missing label matching only !=),
// and why not.
func Admits(constraints []string, n Node) (bool, string) {
	for _, c := range constraints {
		key, val, eq := c, "", true
		if k, v, ok := strings.Cut(c, "!="); ok {
			key, val, eq = k, v, false
		} else if k, v, ok := strings.Cut(c, "=="); ok {
			key, val = k, v
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		have, known := n.attr(key)
		if (known && strings.EqualFold(have, val)) != eq {
			return false, fmt.Sprintf("does not match spec.placement %q", c)
		}
	}
	return true, ""
}

func (n Node) attr(key string) (string, bool) {
	switch key {
	case "node.id":
		return n.ID, true
	case "node.hostname":
		return n.Hostname, true
	case "node.role":
		return n.Role, true
	case "node.platform.os":
		return n.OS, true
	case "node.platform.arch":
		return n.Arch, true
	}
	if l, ok := strings.CutPrefix(key, "node.labels."); ok {
		v, found := n.Labels[l]
		return v, found
	}
	if l, ok := strings.CutPrefix(key, "engine.labels."); ok {
		v, found := n.EngineLabels[l]
		return v, found
	}
	return "", false
}

// PerNode ties a broker to every node that admits one (Ready, Active,
// spec.placement): a node seen for the first time gets the lowest broker
// index free — one whose node left the Swarm for good, or a new one (at
// most api.MaxReplicas); a broker whose node stops admitting it (drained,
// down, a label gone, left) is parked, its index and data kept for the
// node's return — or, with away (spec.sync), runs on another node with its
// data until then. The brokers keep their index wherever they run, so the
// bridge tree (edges toward lower indices) stays a tree.
func PerNode(constraints []string, prev *api.ScalingStatus, nodes []Node, away bool) Decision {
	var st api.ScalingStatus
	if prev != nil {
		st.Nodes = slices.Clone(prev.Nodes)
	}
	present := map[string]Node{}
	for _, n := range nodes {
		present[n.ID] = n
	}
	var evs []api.Event
	admits := func(n Node) (bool, string) {
		switch {
		case !n.Ready:
			return false, "is down"
		case !n.Active:
			return false, "is drained or paused"
		}
		return Admits(constraints, n)
	}
	held := map[string]bool{}
	for i := range st.Nodes {
		b := &st.Nodes[i]
		held[b.Node] = true
		n, here := present[b.Node]
		ok, why := false, "left the Swarm"
		if here {
			ok, why = admits(n)
			b.Hostname = n.Hostname
		}
		if e := transition(*b, ok, why, away); e != nil {
			evs = append(evs, *e)
		}
		b.Active = ok
	}
	newcomers := slices.SortedFunc(func(yield func(Node) bool) {
		for _, n := range nodes {
			if ok, _ := admits(n); ok && !held[n.ID] && !yield(n) {
				return
			}
		}
	}, func(a, b Node) int { return cmp.Or(cmp.Compare(a.Hostname, b.Hostname), cmp.Compare(a.ID, b.ID)) })
	for _, n := range newcomers {
		evs = append(evs, place(&st, n, present)...)
	}
	slices.SortFunc(st.Nodes, func(a, b api.ScalingNode) int { return cmp.Compare(a.Broker, b.Broker) })
	countNodes(&st, away)
	return Decision{Status: st, Events: evs}
}

// transition is the event of broker b's node starting (ok) or ceasing to
// admit it (nil: no change).
func transition(b api.ScalingNode, ok bool, why string, away bool) *api.Event {
	switch {
	case b.Active && !ok && away:
		return event("BrokerAway", fmt.Sprintf("broker %d moves off node %s, which %s: to another node with its data, until the node returns", b.Broker, b.Hostname, why))
	case b.Active && !ok:
		return event("BrokerParked", fmt.Sprintf("broker %d parked: node %s %s (stopped, its data kept until the node returns)", b.Broker, b.Hostname, why))
	case !b.Active && ok:
		return event("BrokerReturned", fmt.Sprintf("broker %d back on node %s", b.Broker, b.Hostname))
	}
	return nil
}

// countNodes sets the broker indexes in use, how many run and the next step in
// words: all with away (spec.sync), else the active ones.
func countNodes(st *api.ScalingStatus, away bool) {
	st.Replicas = 1
	active := 0
	for _, b := range st.Nodes {
		st.Replicas = max(st.Replicas, b.Broker+1)
		if b.Active {
			active++
		}
	}
	st.Desired = int32(active)
	parked := "parked"
	if away {
		parked = "away from their nodes"
		st.Desired = int32(len(st.Nodes))
	}
	st.Next = fmt.Sprintf("a broker on each of %d nodes, %d %s; a node that joins gets one", active, len(st.Nodes)-active, parked)
}

// place gives node n a broker: the lowest index whose node left the Swarm
// (its slot taken over), or the next one.
func place(st *api.ScalingStatus, n Node, present map[string]Node) []api.Event {
	for i := range st.Nodes {
		b := &st.Nodes[i]
		if _, here := present[b.Node]; !here {
			old := b.Hostname
			*b = api.ScalingNode{Broker: b.Broker, Node: n.ID, Hostname: n.Hostname, Active: true}
			return []api.Event{*event("BrokerAdded", fmt.Sprintf("broker %d on node %s, which joined (in the place of node %s, gone from the Swarm)", b.Broker, n.Hostname, old))}
		}
	}
	next := int32(0)
	for _, b := range st.Nodes {
		next = max(next, b.Broker+1)
	}
	if next >= api.MaxReplicas {
		return []api.Event{{Type: api.EventWarning, Reason: "NoBrokerSlot", Message: fmt.Sprintf("node %s gets no broker: a cluster has at most %d", n.Hostname, api.MaxReplicas)}}
	}
	st.Nodes = append(st.Nodes, api.ScalingNode{Broker: next, Node: n.ID, Hostname: n.Hostname, Active: true})
	return []api.Event{*event("BrokerAdded", fmt.Sprintf("broker %d on node %s, which joined", next, n.Hostname))}
}
