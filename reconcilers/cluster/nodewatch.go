package cluster

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/rollout"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Node loss, ahead of Swarm. Swarm marks a node down only after missing
// its heartbeats (12–45 s measured with the default 5 s period), and only
// then reschedules its tasks. For a cluster with spec.sync, the operator
// has observers of its own: it asks every node's sync agent whether it is
// there, and every agent asks its peers (GET /v1/peers). A node is lost
// when the operator has not heard its agent for LostAfter and every other
// agent the operator hears agrees (none heard it for LostAfter either), at
// least one of them: a quorum of independent vantage points, so that a
// node cut off from the operator's node alone is not taken for lost. Its
// brokers are then moved off it at once: their services get a placement
// constraint excluding the node and a start-first update (Swarm starts
// the new task without waiting to hear from the old one, which it cannot),
// and the node's agent leaves the sync plan (the new node's agent does not
// wait to hear from it before pulling the newest copy from the others).
// When the node's agent answers again, the constraint goes (a placement
// change that the task's node still meets restarts nothing).
const (
	// NodeWatchEvery is how often the leader asks every agent.
	NodeWatchEvery = 500 * time.Millisecond
	// LostAfter is how long a node's agent must have been silent, to the
	// operator and to every agent that answers, for the node to be lost.
	LostAfter = datasync.LostAfter
	// nodeProbeTimeout bounds one question to one agent (an agent
	// answers in milliseconds; a lost node's never does).
	nodeProbeTimeout = 500 * time.Millisecond
)

// nodeWatch is what the leader knows of each sync cluster's nodes.
type nodeWatch struct {
	mu       sync.Mutex
	clusters map[string]*watched
}

// watched is one cluster: its agents (from the last pass) and what the
// watch found.
type watched struct {
	client SyncAgentClient
	// agents are the agents' addresses (host:port) and hostnames, by node.
	agents, hosts map[string]string
	// sources are the nodes running each broker, by index (the last pass).
	sources map[int]string
	// perNode: brokers are tied to their nodes (scaling PerNode); they are
	// not moved by the watch (Swarm's node state sends them away).
	perNode bool
	// seen is when the operator last heard each node's agent.
	seen map[string]time.Time
	// lost are the nodes found lost (and not heard since); evicted the
	// brokers moved off one, by index.
	lost    map[string]bool
	evicted map[int]string
	// specs are the brokers' service specs as the last pass rendered and
	// Swarm runs them, by index: the watch evicts from them at once.
	specs map[int]dswarm.ServiceSpec
	// readdress: brokers were moved; HAProxy is pointed at their new tasks
	// by the watch until done (Swarm's DNS lags).
	readdress time.Time
}

// watchTarget records what a pass learnt of a sync cluster's agents and
// brokers (plan: made without the lost nodes left out), for the watch
// between passes; a lost node that Swarm no longer lists as Ready keeps
// its agent's last address.
func (r *Reconciler) watchTarget(c *api.MqttCluster, cl SyncAgentClient, plan map[string]datasync.Config, hosts map[string]string) {
	w := r.watched(c.Name)
	r.nodes.mu.Lock()
	defer r.nodes.mu.Unlock()
	agents := map[string]string{}
	for node, addr := range w.agents {
		if _, ok := plan[node]; w.lost[node] && !ok {
			agents[node] = addr // down for Swarm too: its last address
		}
	}
	sources := map[int]string{}
	for node, cfg := range plan {
		p, _ := cfg.Peer(node)
		agents[node] = net.JoinHostPort(p.Addr, strconv.Itoa(datasync.AgentPort))
		for _, b := range cfg.Brokers {
			for i := 0; i < int(*c.Spec.Replicas); i++ {
				if b.Name == api.BrokerService(c.Name, i) && b.Source != "" {
					sources[i] = b.Source
				}
			}
		}
	}
	for node, addr := range agents {
		if _, ok := w.seen[node]; !ok || w.agents[node] != addr {
			w.seen[node] = r.now() // a new agent (or a new one there): just seen
		}
	}
	for node := range w.lost {
		if _, ok := hosts[node]; !ok && len(hosts) > 0 {
			// Left the Swarm: nothing to watch or keep off.
			delete(w.lost, node)
			delete(agents, node)
			for i, n := range w.evicted {
				if n == node {
					delete(w.evicted, i)
				}
			}
		}
	}
	w.client, w.agents, w.hosts, w.sources, w.perNode = cl, agents, hosts, sources, c.Spec.Scaling.PerNode()
}

func (r *Reconciler) watched(cluster string) *watched {
	r.nodes.mu.Lock()
	defer r.nodes.mu.Unlock()
	if r.nodes.clusters == nil {
		r.nodes.clusters = map[string]*watched{}
	}
	w := r.nodes.clusters[cluster]
	if w == nil {
		w = &watched{seen: map[string]time.Time{}, lost: map[string]bool{}, evicted: map[int]string{}, hosts: map[string]string{},
			specs: map[int]dswarm.ServiceSpec{}}
		r.nodes.clusters[cluster] = w
	}
	return w
}

// lostNodes are a cluster's nodes found lost (the sync plan leaves them
// out); evictedBrokers the brokers kept off them, by index.
func (r *Reconciler) lostNodes(cluster string) map[string]bool {
	r.nodes.mu.Lock()
	defer r.nodes.mu.Unlock()
	if w := r.nodes.clusters[cluster]; w != nil {
		return maps.Clone(w.lost)
	}
	return nil
}

func (r *Reconciler) evictedBrokers(cluster string) map[int]string {
	r.nodes.mu.Lock()
	defer r.nodes.mu.Unlock()
	if w := r.nodes.clusters[cluster]; w != nil && len(w.evicted) > 0 {
		return maps.Clone(w.evicted)
	}
	return nil
}

// rendered records broker i's service spec as a pass rendered it and
// Swarm runs it (broker.Reconciler.Rendered).
func (r *Reconciler) rendered(cluster string, i int, spec dswarm.ServiceSpec) {
	w := r.watched(cluster)
	r.nodes.mu.Lock()
	defer r.nodes.mu.Unlock()
	w.specs[i] = spec
}

func (r *Reconciler) forgetNodes(cluster string) {
	r.nodes.mu.Lock()
	defer r.nodes.mu.Unlock()
	delete(r.nodes.clusters, cluster)
}

// WatchNodes runs the watch until ctx ends (a leader task): every
// NodeWatchEvery it asks every sync cluster's agents, and calls changed
// when a node was found lost or back (a pass must act on it).
func (r *Reconciler) WatchNodes(ctx context.Context, changed func()) {
	t := time.NewTicker(NodeWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.WatchOnce(ctx) {
			changed()
		}
	}
}

// WatchOnce asks every sync cluster's agents once and acts on what they
// say; it reports whether a node was found lost or back.
func (r *Reconciler) WatchOnce(ctx context.Context) bool {
	r.nodes.mu.Lock()
	names := slices.Sorted(maps.Keys(r.nodes.clusters))
	r.nodes.mu.Unlock()
	changed := false
	for _, name := range names {
		if r.watchCluster(ctx, name) {
			changed = true
		}
	}
	return changed
}

func (r *Reconciler) watchCluster(ctx context.Context, name string) bool {
	changed, evictions := r.judgeCluster(ctx, name)
	for _, e := range evictions {
		r.evictNow(ctx, name, e)
		if r.Auth != nil {
			r.Auth.Reconnect(name, e.broker) // its connection went with the node
		}
	}
	r.nodes.mu.Lock()
	w := r.nodes.clusters[name]
	var since time.Time
	if w != nil {
		if len(evictions) > 0 {
			w.readdress = r.now()
		}
		since = w.readdress
	}
	r.nodes.mu.Unlock()
	if !since.IsZero() {
		r.readdressMoved(ctx, name, since)
	}
	return changed
}

// readdressMoved points the cluster's HAProxy tasks at the moved brokers'
// new tasks, every round until done or a minute has passed.
func (r *Reconciler) readdressMoved(ctx context.Context, name string, since time.Time) {
	control, err := r.controlNetwork(ctx)
	if err != nil || control == nil {
		return
	}
	c := &api.MqttCluster{}
	c.Name = name
	g := &rollout.Gate{Swarm: r.Swarm, OperatorID: r.OperatorID, Cluster: c, Control: control, Runtime: r.runtime(name),
		Fence: r.fence, Now: r.now, Log: r.log(), LostNodes: r.lostNodes(name), Answers: r.brokerAnswers}
	done, err := g.Readdress(ctx)
	if err == nil && (done || r.now().Sub(since) > time.Minute) {
		r.nodes.mu.Lock()
		if w := r.nodes.clusters[name]; w != nil && w.readdress.Equal(since) {
			w.readdress = time.Time{}
		}
		r.nodes.mu.Unlock()
	}
}

// eviction is a broker to move off a lost node now.
type eviction struct {
	broker int
	node   string
	spec   dswarm.ServiceSpec
	ok     bool // spec known
}

// evictNow updates a broker's service to keep it off a lost node, from
// the spec the last pass rendered, without waiting for a pass (one may
// be held up by timeouts toward the lost node); the next pass renders the
// same spec and writes nothing. Without a known spec, or with a live
// service that no longer runs it, the pass does it.
func (r *Reconciler) evictNow(ctx context.Context, cluster string, e eviction) {
	if !e.ok {
		return
	}
	name := api.BrokerService(cluster, e.broker)
	svcs, err := r.Swarm.Services(ctx, swarm.OwnedComponent(r.OperatorID, cluster, broker.ComponentSvc))
	if err != nil {
		r.log().Warn("node lost: listing the brokers failed; the next pass moves them", "cluster", cluster, "err", err)
		return
	}
	for _, s := range svcs {
		if s.Spec.Name != name || !swarm.UpToDate(s, e.spec) || s.Spec.Labels[broker.LabelEvictedFrom] == e.node {
			continue
		}
		want := broker.Evict(e.spec, e.node)
		err := r.fence()
		if err == nil {
			err = r.Swarm.UpdateService(ctx, s.ID, s.Version, want)
		}
		if err != nil {
			r.log().Warn("node lost: moving a broker failed; the next pass moves it", "cluster", cluster, "broker", name, "err", err)
			return
		}
		r.log().Info("updated", "cluster", cluster, "component", "broker", "object", name, "why", "moved off a lost node")
	}
}

func (r *Reconciler) judgeCluster(ctx context.Context, name string) (bool, []eviction) {
	r.nodes.mu.Lock()
	w := r.nodes.clusters[name]
	if w == nil || w.client == nil {
		r.nodes.mu.Unlock()
		return false, nil
	}
	cl, agents := w.client, maps.Clone(w.agents)
	r.nodes.mu.Unlock()
	views := askAgents(ctx, cl, agents)
	now := r.now()
	r.nodes.mu.Lock()
	defer r.nodes.mu.Unlock()
	if r.nodes.clusters[name] != w {
		return false, nil // deleted meanwhile
	}
	for node := range views {
		w.seen[node] = now
	}
	changed := false
	var evictions []eviction
	for node := range w.lost {
		if _, back := views[node]; back {
			delete(w.lost, node)
			for i, n := range w.evicted {
				if n == node {
					delete(w.evicted, i)
				}
			}
			r.log().Info("node back: its sync agent answers again", "cluster", name, "node", w.hosts[node])
			r.event(name, api.EventNormal, "NodeBack", "node %s answers again: its brokers may run there again", w.host(node))
			changed = true
		}
	}
	judged := Judge(now, w.seen, views, slices.Collect(maps.Keys(agents)), LostAfter)
	maps.DeleteFunc(judged, func(node string, _ Evidence) bool { return w.lost[node] })
	if len(judged) > 0 {
		// Asked of Swarm without the lock.
		r.nodes.mu.Unlock()
		r.stillRunning(ctx, name, agents, judged)
		r.nodes.mu.Lock()
		if r.nodes.clusters[name] != w {
			return false, nil
		}
	}
	for node, why := range judged {
		if w.lost[node] {
			continue
		}
		w.lost[node] = true
		changed = true
		var moved []string
		for _, i := range slices.Sorted(maps.Keys(w.sources)) {
			if w.sources[i] == node && !w.perNode {
				w.evicted[i] = node
				moved = append(moved, api.BrokerService(name, i))
				spec, ok := w.specs[i]
				evictions = append(evictions, eviction{broker: i, node: node, spec: spec, ok: ok})
			}
		}
		r.log().Warn("node lost: moving its brokers off it ahead of Swarm", "cluster", name, "node", w.hosts[node], "evidence", why, "brokers", moved)
		r.event(name, api.EventWarning, "NodeLost", "node %s is lost (%s): %s", w.host(node), w.explain(why), movedText(moved))
	}
	return changed, evictions
}

// stillRunning keeps, of the nodes judged lost, those whose agent task
// Swarm still shows running, meant to run, at the address that went
// silent: Swarm has not noticed the node yet. An agent being replaced (an
// update of the agent service: its old task told to stop, the new one
// starting at another address), or stopped with its node (a drain), is
// not a lost node. Without Swarm's answer, nobody is judged lost.
func (r *Reconciler) stillRunning(ctx context.Context, cluster string, agents map[string]string, judged map[string]Evidence) {
	tasks, err := r.Swarm.Tasks(ctx, swarm.OwnedComponent(r.OperatorID, cluster, datasync.ComponentAgent))
	if err != nil {
		clear(judged)
		return
	}
	for node := range judged {
		host, _, _ := net.SplitHostPort(agents[node])
		if !slices.ContainsFunc(tasks, func(t dswarm.Task) bool {
			return t.NodeID == node && t.DesiredState == dswarm.TaskStateRunning && t.Status.State == dswarm.TaskStateRunning &&
				swarm.TaskAddress(t, r.ControlNetwork) == host
		}) {
			r.log().Info("a node's sync agent is silent while Swarm replaces or stops it: not a lost node", "cluster", cluster, "node", node)
			delete(judged, node)
		}
	}
}

func movedText(moved []string) string {
	if len(moved) == 0 {
		return "no broker of this cluster ran there"
	}
	return "moving " + strings.Join(moved, ", ") + " to other nodes now, with the newest copy of their data"
}

func (w *watched) host(node string) string {
	if h := w.hosts[node]; h != "" {
		return h
	}
	return node
}

// explain names the observers in evidence by hostname.
func (w *watched) explain(e Evidence) string {
	var names []string
	for _, n := range e.Agreeing {
		names = append(names, w.host(n))
	}
	return fmt.Sprintf("its sync agent silent for %s to the operator and to the agents on %s", e.Silent.Round(100*time.Millisecond), strings.Join(names, ", "))
}

// askAgents asks every agent for its view, all at once; the answers are
// the agents that answered.
func askAgents(ctx context.Context, cl SyncAgentClient, agents map[string]string) map[string]datasync.PeerView {
	var mu sync.Mutex
	views := map[string]datasync.PeerView{}
	var wg sync.WaitGroup
	for node, addr := range agents {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, nodeProbeTimeout)
			defer cancel()
			v, err := cl.Peers(pctx, addr)
			if err != nil {
				return
			}
			mu.Lock()
			views[node] = v
			mu.Unlock()
		})
	}
	wg.Wait()
	return views
}

// Evidence is why a node is judged lost: how long the operator has not
// heard it, and the other agents that have not either.
type Evidence struct {
	Silent   time.Duration
	Agreeing []string
}

// Judge decides which of nodes are lost: the operator has not heard the
// node's agent for after, and every agent that answered (views, by node)
// other than the node has not heard it for after either — at least one
// such agent, and none that has. A node no agent reports on (not in its
// config yet) counts as not agreeing.
func Judge(now time.Time, seen map[string]time.Time, views map[string]datasync.PeerView, nodes []string, after time.Duration) map[string]Evidence {
	out := map[string]Evidence{}
	for _, node := range nodes {
		silent := now.Sub(seen[node])
		if _, answered := views[node]; answered || silent < after {
			continue
		}
		var agree []string
		disagree := false
		for obs, v := range views {
			if obs == node {
				continue
			}
			u, ok := v.Unseen[node]
			if !ok || time.Duration(u) < after {
				disagree = true
				break
			}
			agree = append(agree, obs)
		}
		if disagree || len(agree) == 0 {
			continue
		}
		slices.Sort(agree)
		out[node] = Evidence{Silent: silent, Agreeing: agree}
	}
	return out
}
