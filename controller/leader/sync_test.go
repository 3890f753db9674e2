package leader

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/cluster"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/loadbalancer"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/rollout"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// fakeAgents are sync agents: each keeps the config it was sent and
// reports every push of a broker it is the source of as synced at synced.
type fakeAgents struct {
	mu         sync.Mutex
	cfg        map[string]datasync.Config // by addr
	configured []string
	synced     time.Time
	running    map[string]bool // volume -> runs on its source
	// dead: agents (by address) that answer nobody; the others report
	// not having heard them for a minute.
	dead map[string]bool
}

func (f *fakeAgents) Status(_ context.Context, addr string) (datasync.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cfg, ok := f.cfg[addr]
	if !ok {
		return datasync.Status{}, nil
	}
	st := datasync.Status{Node: cfg.Node, ConfigHash: cfg.Hash(), Copies: map[string]datasync.Copy{}}
	for _, b := range cfg.Brokers {
		if b.Source != cfg.Node {
			continue
		}
		st.Copies[b.Volume] = datasync.Copy{Running: f.running[b.Volume]}
		src := datasync.SourceStatus{Broker: b.Name, Running: f.running[b.Volume]}
		for _, t := range b.Targets {
			src.Targets = append(src.Targets, datasync.TargetStatus{Node: t, LastSync: f.synced})
		}
		st.Sources = append(st.Sources, src)
	}
	return st, nil
}

func (f *fakeAgents) Configure(_ context.Context, addr string, cfg datasync.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg[addr] = cfg
	f.configured = append(f.configured, cfg.Node)
	return nil
}

func (f *fakeAgents) Peers(_ context.Context, addr string) (datasync.PeerView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dead[addr] {
		return datasync.PeerView{}, fmt.Errorf("dial %s: i/o timeout", addr)
	}
	cfg := f.cfg[addr]
	v := datasync.PeerView{Node: cfg.Node, Unseen: map[string]datasync.Duration{}}
	for _, p := range cfg.Peers {
		if p.Node == cfg.Node {
			continue
		}
		v.Unseen[p.Node] = 0
		if f.dead[p.Addr+":8474"] {
			v.Unseen[p.Node] = datasync.Duration(time.Minute)
		}
	}
	return v, nil
}

func (f *fakeAgents) takeConfigured() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.configured
	f.configured = nil
	slices.Sort(out)
	return out
}

// withSync adds a second node and sync agents on both nodes.
func (e *clusterEnv) withSync() *fakeAgents {
	e.withControlNetwork()
	e.rec.SyncImage = "sync:test"
	ready := dswarm.NodeStatus{State: dswarm.NodeStateReady}
	e.fake.NodeList = []dswarm.Node{
		{ID: "n1", Description: dswarm.NodeDescription{Hostname: "node-1"}, Status: ready, Spec: dswarm.NodeSpec{Availability: dswarm.NodeAvailabilityActive}},
		{ID: "n2", Description: dswarm.NodeDescription{Hostname: "node-2"}, Status: ready, Spec: dswarm.NodeSpec{Availability: dswarm.NodeAvailabilityActive}},
	}
	f := &fakeAgents{cfg: map[string]datasync.Config{}, running: map[string]bool{}}
	e.rec.SyncAgents = f
	return f
}

// runAgents gives the sync agent service a running task on each node,
// reachable on the control network.
func (e *clusterEnv) runAgents() {
	svcs, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: datasync.ComponentAgent})
	var keep []dswarm.Task
	for _, t := range e.fake.TaskList {
		if len(svcs) == 0 || t.ServiceID != svcs[0].ID {
			keep = append(keep, t)
		}
	}
	e.fake.TaskList = keep
	for i, n := range []string{"n1", "n2"} {
		if len(svcs) == 0 {
			return
		}
		e.fake.TaskList = append(e.fake.TaskList, dswarm.Task{
			ID: fmt.Sprintf("agent-%s", n), ServiceID: svcs[0].ID, NodeID: n, DesiredState: dswarm.TaskStateRunning,
			Status: dswarm.TaskStatus{State: dswarm.TaskStateRunning, Timestamp: e.now.Add(-time.Minute)},
			Spec:   svcs[0].Spec.TaskTemplate,
			NetworksAttachments: []dswarm.NetworkAttachment{{
				Network: dswarm.Network{Spec: dswarm.NetworkSpec{Annotations: dswarm.Annotations{Name: "mqtt-operator-control"}}}, Addresses: []string{fmt.Sprintf("10.9.1.%d/24", i+1)},
			}},
		})
	}
}

func TestClusterSyncConfiguresAgentsThenStaysQuiet(t *testing.T) {
	e := newClusterEnv(t)
	agents := e.withSync()
	spec := "spec: {replicas: 2, sync: {enabled: true}}\n"
	e.running(spec)
	if got := written(e.fake.Calls(), "CreateService"); !slices.Contains(got, "iot-sync") {
		t.Fatalf("no sync agent service: %v", got)
	}
	svc, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: "broker"})
	for _, s := range svc {
		if s.Spec.TaskTemplate.ContainerSpec.Env[0] != "MQTT_TASK_ID={{.Task.ID}}" {
			t.Fatalf("broker %s does not wait for its data: %v", s.Spec.Name, s.Spec.TaskTemplate.ContainerSpec.Env)
		}
	}
	e.runAll() // brokers on n1
	e.runAgents()
	agents.synced = e.now.Add(-time.Second)
	e.reconcile()
	if got := agents.takeConfigured(); !slices.Equal(got, []string{"n1", "n2"}) {
		t.Fatalf("agents configured: %v", got)
	}
	cfg := agents.cfg["10.9.1.2:8474"]
	if cfg.Node != "n2" || len(cfg.Brokers) != 2 || cfg.Brokers[0].Source != "n1" || !slices.Equal(cfg.Brokers[0].Targets, []string{"n2"}) {
		t.Fatalf("config of n2: %+v", cfg)
	}
	e.reconcile()
	c := e.cluster()
	if !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionSyncHealthy) || c.Status.Sync == nil || len(c.Status.Sync.Brokers) != 2 ||
		c.Status.Sync.Brokers[0].Source != "node-1" || c.Status.Sync.Brokers[0].Targets[0].Node != "node-2" || c.Status.Sync.Brokers[0].Targets[0].LastSync == nil {
		t.Fatalf("sync status: %+v %+v", c.Status.Sync, meta.FindStatusCondition(c.Status.Conditions, api.ConditionSyncHealthy))
	}
	// Unchanged: no config sent, no Swarm write.
	e.fake.ResetCalls()
	res := e.reconcile()
	if got := agents.takeConfigured(); len(got) != 0 {
		t.Fatalf("unchanged placement re-sent configs to %v", got)
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("unchanged spec and Swarm: writes %v", calls)
	}
	if res.RequeueAfter == 0 || res.RequeueAfter > cluster.SyncRefresh {
		t.Fatalf("requeue %s: the sync status must be refreshed within %s", res.RequeueAfter, cluster.SyncRefresh)
	}
	// An old sync of data that has not changed since is still current.
	agents.synced = e.now.Add(-10 * time.Minute)
	e.reconcile()
	if cond := meta.FindStatusCondition(e.cluster().Status.Conditions, api.ConditionSyncHealthy); cond.Status != "True" {
		t.Fatalf("old but current copy reported unhealthy: %+v", cond)
	}

	// Scale down: broker 1 is stopped first, removed once synced.
	e.apply("spec: {replicas: 1, sync: {enabled: true}}\n")
	e.fake.ResetCalls()
	e.reconcile()
	if got := written(e.fake.Calls(), "UpdateService"); !slices.Contains(got, "iot-broker-1") || slices.Contains(written(e.fake.Calls(), "RemoveService"), "iot-broker-1") {
		t.Fatalf("broker 1 not stopped first: updates %v removes %v", got, written(e.fake.Calls(), "RemoveService"))
	}
	// Swarm deletes the tasks of a service scaled to zero.
	b1, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: "broker", "mqtt.swarm/broker-index": "1"})
	if b1[0].Spec.Labels[cluster.LabelRetiringNode] != "n1" {
		t.Fatalf("retiring node: %v", b1[0].Spec.Labels)
	}
	var keep []dswarm.Task
	for _, tk := range e.fake.TaskList {
		if tk.ServiceID != b1[0].ID {
			keep = append(keep, tk)
		}
	}
	e.fake.TaskList = keep
	// Not synced since the stop: it stays.
	e.reconcile()
	if slices.Contains(written(e.fake.Calls(), "RemoveService"), "iot-broker-1") {
		t.Fatal("broker 1 removed before its last state was synced")
	}
	e.now = e.now.Add(2 * time.Second)
	agents.synced = e.now
	e.reconcile()
	if !slices.Contains(written(e.fake.Calls(), "RemoveService"), "iot-broker-1") {
		t.Fatal("broker 1 not removed once its last state was synced")
	}

	// Sync off: the agents and their secret go, the condition too.
	e.apply("spec: {replicas: 1, sync: {enabled: false}}\n")
	e.fake.ResetCalls()
	e.reconcile()
	e.reconcile()
	if got := written(e.fake.Calls(), "RemoveService"); !slices.Contains(got, "iot-sync") {
		t.Fatalf("sync agent service not removed: %v", got)
	}
	secrets, _ := e.fake.Secrets(context.Background(), map[string]string{swarm.LabelComponent: datasync.ComponentSecret})
	if len(secrets) != 0 {
		t.Fatalf("sync secret left: %d", len(secrets))
	}
	c = e.cluster()
	if meta.FindStatusCondition(c.Status.Conditions, api.ConditionSyncHealthy) != nil || c.Status.Sync != nil {
		t.Fatalf("sync status left: %+v", c.Status)
	}
}

// A node whose agent neither the operator nor the other agents hear is
// lost before Swarm says so: its brokers' services exclude it and update
// start-first at once (the watch, no pass needed), with no drain through
// the rollout gate; the next pass writes nothing more, the lost node's
// agent leaves the others' config; when it answers again, the exclusion
// is lifted, again without a drain.
func TestClusterMovesBrokersOffALostNode(t *testing.T) {
	e := newClusterEnv(t)
	agents := e.withSync()
	rt := e.withControlNetwork()
	e.running("spec: {replicas: 2, sync: {enabled: true}}\n")
	e.runAll() // brokers on n1
	e.runAgents()
	e.reconcile()
	e.reconcile()
	ctx := context.Background()
	if e.rec.Reconciler.WatchOnce(ctx) {
		t.Fatal("a node found lost or back while every agent answers")
	}
	e.fake.ResetCalls()
	containers := e.brokerContainers()
	agents.mu.Lock()
	agents.dead = map[string]bool{"10.9.1.1:8474": true} // n1's agent
	agents.mu.Unlock()
	e.now = e.now.Add(time.Second)
	if e.rec.Reconciler.WatchOnce(ctx) {
		t.Fatal("n1 lost after 1 s")
	}
	e.now = e.now.Add(1500 * time.Millisecond)
	// An agent Swarm is replacing (its task told to stop) is not a lost
	// node, however silent.
	agentTask := func(node string) *dswarm.Task {
		for i := range e.fake.TaskList {
			if e.fake.TaskList[i].ID == "agent-"+node {
				return &e.fake.TaskList[i]
			}
		}
		t.Fatalf("no agent task on %s", node)
		return nil
	}
	agentTask("n1").DesiredState = dswarm.TaskStateShutdown
	if e.rec.Reconciler.WatchOnce(ctx) || len(written(e.fake.Calls(), "UpdateService")) != 0 {
		t.Fatal("n1 found lost while Swarm replaces its agent")
	}
	agentTask("n1").DesiredState = dswarm.TaskStateRunning
	if !e.rec.Reconciler.WatchOnce(ctx) {
		t.Fatal("n1 not found lost after 2.5 s of silence to the operator and to n2's agent")
	}
	if got := written(e.fake.Calls(), "UpdateService"); !slices.Equal(got, []string{"iot-broker-0", "iot-broker-1"}) {
		t.Fatalf("the watch updated %v, want both brokers at once", got)
	}
	for i := range 2 {
		cons, _ := e.brokerPlacement(i)
		if !slices.Contains(cons, "node.id!=n1") {
			t.Fatalf("broker %d placement %v does not exclude the lost node", i, cons)
		}
	}
	svcs, _ := e.fake.Services(ctx, map[string]string{swarm.LabelComponent: "broker"})
	for _, s := range svcs {
		if s.Spec.UpdateConfig == nil || s.Spec.UpdateConfig.Order != dswarm.UpdateOrderStartFirst {
			t.Fatalf("%s does not update start-first: %+v", s.Spec.Name, s.Spec.UpdateConfig)
		}
	}
	if len(rt.states) != 0 {
		t.Fatalf("HAProxy asked %v: an eviction drains nothing", rt.states)
	}
	// The pass renders the same: no more writes; n2's agent no longer
	// has n1 among its peers.
	e.fake.ResetCalls()
	e.reconcile()
	if got := written(e.fake.Calls(), "UpdateService"); len(got) != 0 {
		t.Fatalf("the pass after the eviction updated %v", got)
	}
	if evs := e.eventsWith("NodeLost"); len(evs) != 1 {
		t.Fatalf("NodeLost events: %v", evs)
	}
	if cfg := agents.cfg["10.9.1.2:8474"]; len(cfg.Peers) != 1 || cfg.Peers[0].Node != "n2" {
		t.Fatalf("n2's agent config keeps the lost node: %+v", cfg.Peers)
	}
	// Back: the exclusion is lifted without a drain.
	agents.mu.Lock()
	agents.dead = nil
	agents.mu.Unlock()
	if !e.rec.Reconciler.WatchOnce(ctx) {
		t.Fatal("n1 not found back")
	}
	e.fake.ResetCalls()
	e.reconcile()
	if got := written(e.fake.Calls(), "UpdateService"); !slices.Equal(got, []string{"iot-broker-0", "iot-broker-1"}) {
		t.Fatalf("lifting the exclusion updated %v", got)
	}
	if cons, _ := e.brokerPlacement(0); slices.Contains(cons, "node.id!=n1") {
		t.Fatalf("placement %v still excludes n1", cons)
	}
	if len(rt.states) != 0 {
		t.Fatalf("HAProxy asked %v: lifting an eviction drains nothing", rt.states)
	}
	// Only the placement (and the update order) changed, never the
	// container spec: Swarm replaces no task when the exclusion goes.
	if got := e.brokerContainers(); !reflect.DeepEqual(got, containers) {
		t.Fatalf("container specs changed:\n%+v\n%+v", got, containers)
	}
}

func (e *clusterEnv) brokerContainers() []dswarm.ContainerSpec {
	svcs, _ := e.fake.Services(context.Background(), map[string]string{swarm.LabelComponent: "broker"})
	slices.SortFunc(svcs, func(a, b dswarm.Service) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	var out []dswarm.ContainerSpec
	for _, s := range svcs {
		out = append(out, *s.Spec.TaskTemplate.ContainerSpec)
	}
	return out
}

// After moving a broker off a lost node, the watch points HAProxy at the
// broker's new task as soon as it runs, without waiting for a pass (Swarm's
// DNS keeps naming the task on the lost node): the task on the lost node,
// which Swarm still lists as running and as the newest until the new one
// is made, does not count as done. HAProxy, which has the server down
// (its checks of a down server run once a second), is told it is up as
// soon as the new task answers the operator, and not before.
func TestTheWatchPointsHAProxyAtTheMovedBroker(t *testing.T) {
	e := newClusterEnv(t)
	agents := e.withSync()
	rt := e.withControlNetwork()
	answering := map[string]bool{}
	e.rec.Reconciler.BrokerAnswers = func(_ context.Context, ip string) bool { return answering[ip] }
	e.running("spec: {replicas: 1, sync: {enabled: true}}\n")
	e.runAll() // every task on n1
	e.runAgents()
	lbs := e.attachLB(20)
	nets := func(ip, control string) []dswarm.NetworkAttachment {
		return []dswarm.NetworkAttachment{
			{Network: dswarm.Network{Spec: dswarm.NetworkSpec{Annotations: dswarm.Annotations{Name: "iot-net"}}}, Addresses: []string{ip + "/24"}},
			{Network: dswarm.Network{Spec: dswarm.NetworkSpec{Annotations: dswarm.Annotations{Name: "mqtt-operator-control"}}}, Addresses: []string{control + "/24"}},
		}
	}
	var broker dswarm.Task
	for i, tk := range e.fake.TaskList {
		switch tk.Spec.ContainerSpec.Labels[swarm.LabelComponent] {
		case "loadbalancer":
			e.fake.TaskList[i].NodeID = "n2" // HAProxy on the node that stays
		case "broker":
			e.fake.TaskList[i].NetworksAttachments = nets("10.0.5.1", "10.9.0.51")
			broker = e.fake.TaskList[i]
		}
	}
	rt.servers = map[string]map[string]loadbalancer.ServerState{}
	for _, lb := range lbs {
		rt.servers[lb] = map[string]loadbalancer.ServerState{"broker-0": {Addr: "10.0.5.1", Up: true}}
	}
	e.reconcile()
	e.reconcile()
	ctx := context.Background()
	e.rec.Reconciler.WatchOnce(ctx)
	agents.mu.Lock()
	agents.dead = map[string]bool{"10.9.1.1:8474": true} // n1's agent
	agents.mu.Unlock()
	for _, lb := range lbs {
		rt.servers[lb]["broker-0"] = loadbalancer.ServerState{Addr: "10.0.5.1"} // HAProxy's checks found it down
	}
	e.now = e.now.Add(2500 * time.Millisecond)
	if !e.rec.Reconciler.WatchOnce(ctx) {
		t.Fatal("n1 not found lost")
	}
	// Swarm has not made the new task yet: the old one is the newest.
	e.now = e.now.Add(500 * time.Millisecond)
	e.rec.Reconciler.WatchOnce(ctx)
	// Now it runs on n2, its broker not listening yet.
	moved := broker
	moved.ID, moved.NodeID = broker.ID+"-2", "n2"
	moved.Status.Timestamp, moved.Meta.CreatedAt = e.now, e.now
	moved.NetworksAttachments = nets("10.0.5.2", "10.9.0.52")
	e.fake.TaskList = append(e.fake.TaskList, moved)
	e.now = e.now.Add(500 * time.Millisecond)
	e.rec.Reconciler.WatchOnce(ctx)
	for _, lb := range lbs {
		if got := rt.servers[lb]["broker-0"]; got != (loadbalancer.ServerState{Addr: "10.0.5.2"}) {
			t.Errorf("HAProxy %s has broker-0 at %+v, want the moved task's 10.0.5.2, still down", lb, got)
		}
	}
	// It listens.
	answering["10.9.0.52"] = true
	e.now = e.now.Add(500 * time.Millisecond)
	e.rec.Reconciler.WatchOnce(ctx)
	for _, lb := range lbs {
		if got := rt.servers[lb]["broker-0"]; got != (loadbalancer.ServerState{Addr: "10.0.5.2", Up: true}) {
			t.Errorf("HAProxy %s has broker-0 at %+v, want 10.0.5.2 up", lb, got)
		}
	}
	// A broker whose checks take it down later (a storm filling its
	// accept queue) is left to them, though it answers the operator.
	for _, lb := range lbs {
		rt.servers[lb]["broker-0"] = loadbalancer.ServerState{Addr: "10.0.5.2"}
	}
	rt.mu.Lock()
	rt.states = nil
	rt.mu.Unlock()
	e.now = e.now.Add(rollout.FreshTask)
	e.reconcile()
	if slices.ContainsFunc(rt.states, func(s string) bool { return strings.HasSuffix(s, "health up") }) {
		t.Errorf("a broker running for %s marked up by force: %v", rollout.FreshTask, rt.states)
	}
}
