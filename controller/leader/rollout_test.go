package leader

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/cluster"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// step runs a pass and returns the brokers it updated.
func (e *clusterEnv) step() []string {
	e.t.Helper()
	e.fake.ResetCalls()
	e.reconcile()
	var out []string
	for _, n := range written(e.fake.Calls(), "UpdateService") {
		if strings.Contains(n, "-broker-") {
			out = append(out, n)
		}
	}
	return out
}

func TestClusterBrokersRollOneAtATimeDrainedFirst(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	rt := e.withControlNetwork()
	e.running("spec: {replicas: 3, loadBalancer: {replicas: 1}}\n")
	addrs := e.attachLB(1)
	// A change that restarts every broker.
	e.apply("spec: {replicas: 3, loadBalancer: {replicas: 1}, broker: {persistence: {autosaveInterval: 5s}}}\n")
	for i := 0; i < 3; i++ {
		name := "iot-broker-" + strconv.Itoa(i)
		if got := e.step(); !slices.Equal(got, []string{name}) {
			t.Fatalf("step %d updated %v, want only %s", i, got, name)
		}
		if !rt.drained[addrs[0]]["broker-"+strconv.Itoa(i)] {
			t.Fatalf("%s not drained before its update: %v", name, rt.states)
		}
		// Drained, then its sessions moved, before the update.
		srv := "broker-" + strconv.Itoa(i)
		if d, s := slices.Index(rt.states, addrs[0]+" "+srv+" drain"), slices.Index(rt.states, addrs[0]+" "+srv+" shutdown-sessions"); d < 0 || s < d {
			t.Fatalf("%s: drain then session shutdown expected: %v", name, rt.states)
		}
		c := e.cluster()
		if cond := meta.FindStatusCondition(c.Status.Conditions, api.ConditionReady); cond.Status != "False" || !strings.Contains(cond.Message, "rolling") {
			t.Fatalf("during the rollout: %+v", cond)
		}
		// Its new task has not run long enough: nothing else moves.
		if got := e.step(); len(got) != 0 {
			t.Fatalf("updated %v while %s restarts", got, name)
		}
		// It runs its new spec, stable: made ready in HAProxy, next one.
		e.runAll()
		e.attachLB(1)
		e.now = e.now.Add(time.Minute)
	}
	if got := e.step(); len(got) != 0 || len(rt.drained[addrs[0]]) != 0 {
		t.Fatalf("after the rollout: updates %v, drained %v", got, rt.drained)
	}
	if !meta.IsStatusConditionTrue(e.cluster().Status.Conditions, api.ConditionReady) {
		t.Fatalf("not Ready after the rollout: %+v", e.cluster().Status.Conditions)
	}
}

func TestClusterManualApprovalHoldsRestarts(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.withControlNetwork()
	e.running("spec: {replicas: 2, loadBalancer: {replicas: 1}, updatePolicy: {approval: manual}}\n")
	e.attachLB(1)
	e.apply("spec: {replicas: 2, loadBalancer: {replicas: 1}, updatePolicy: {approval: manual}, broker: {resources: {memory: 256Mi}}}\n")
	if got := e.step(); len(got) != 0 {
		t.Fatalf("restarted %v before approval", got)
	}
	c := e.cluster()
	p := meta.FindStatusCondition(c.Status.Conditions, api.ConditionProgressing)
	if p.Reason != "AwaitingApproval" || !strings.Contains(p.Message, "iot-broker-0, iot-broker-1") || !strings.Contains(p.Message, "mqttctl approve iot") {
		t.Fatalf("progressing: %+v", p)
	}
	if !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) {
		t.Fatalf("a held cluster still serves: %+v", c.Status.Conditions)
	}
	// Approved (what mqttctl approve writes): it rolls.
	o := e.store.Get(api.KindMqttCluster, "iot")
	ann := map[string]string{api.ApprovedGenerationAnnotation: strconv.FormatInt(o.Generation, 10)}
	if _, _, err := e.store.Apply(store.ApplyRequest{Kind: api.KindMqttCluster, Name: "iot", Spec: o.Spec, Annotations: ann}); err != nil {
		t.Fatal(err)
	}
	if got := e.step(); !slices.Equal(got, []string{"iot-broker-0"}) {
		t.Fatalf("after approval: %v", got)
	}
	// A later change needs its own approval.
	o = e.store.Get(api.KindMqttCluster, "iot")
	e.runAll()
	e.attachLB(1)
	e.now = e.now.Add(time.Minute)
	e.step()
	e.runAll()
	e.attachLB(1)
	e.now = e.now.Add(time.Minute)
	e.apply("spec: {replicas: 2, loadBalancer: {replicas: 1}, updatePolicy: {approval: manual}, broker: {resources: {memory: 512Mi}}}\n")
	if got := e.step(); len(got) != 0 {
		t.Fatalf("a new generation rolled on an old approval: %v", got)
	}
}

// restartTask gives service name a new task, created (and running) at.
func (e *clusterEnv) restartTask(name string, at time.Time) {
	e.t.Helper()
	for i, t := range e.fake.TaskList {
		if e.serviceName(t.ServiceID) == name {
			e.fake.TaskList[i].ID += "r"
			e.fake.TaskList[i].Meta.CreatedAt = at
			e.fake.TaskList[i].Status.Timestamp = at
			return
		}
	}
	e.t.Fatalf("no task of %s", name)
}

func (e *clusterEnv) serviceName(id string) string {
	svcs, _ := e.fake.Services(context.Background(), nil)
	for _, s := range svcs {
		if s.ID == id {
			return s.Spec.Name
		}
	}
	return ""
}

func bridgeLine(child int, at time.Time) swarm.LogLine {
	return swarm.LogLine{Time: at, Text: fmt.Sprintf("New bridge connected from 10.0.0.%d:40000 as iot-broker-%d-bridge (p2, c1, k5, u'bridge').", child, child)}
}

// A broker that restarted is an island until a bridge links it to the
// others (issue: a client sent to a hub that came back before its spokes
// rejoined it published to nobody else): HAProxy gets it drained until
// then, and ready once a bridge is up; a task that has joined stays
// admitted when its bridge drops (it holds its clients' sessions); a
// settled cluster writes nothing to HAProxy. A broker whose connection to the operator closed is drained at
// once, the streams sent to it since closed, and kept out until the
// operator reaches it again (its new task, or it was never gone).
func TestClusterAdmitsARestartedBrokerOnlyOnceJoined(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	rt := e.withControlNetwork()
	e.running("spec: {replicas: 3, loadBalancer: {replicas: 1}}\n")
	addrs := e.attachLB(1)
	e.step()
	if d := rt.drained[addrs[0]]; len(d) != 0 {
		t.Fatalf("a joined cluster has drained brokers: %v", d)
	}
	n := len(rt.states)
	e.step()
	if len(rt.states) != n {
		t.Fatalf("a settled pass changed HAProxy: %v", rt.states[n:])
	}

	// The hub is killed: Swarm starts its new task, broker 2's bridge
	// moves to broker 1; broker 1's bridge is not back to the hub yet.
	kill := e.now
	e.restartTask("iot-broker-0", kill.Add(time.Second))
	// No bridge is up anywhere yet: the stable brokers serve, not the hub
	// that just started.
	e.now = kill.Add(1500 * time.Millisecond)
	e.step()
	if d := rt.drained[addrs[0]]; !d["broker-0"] || d["broker-1"] || d["broker-2"] {
		t.Fatalf("hub back, no bridge up anywhere: drained %v, want broker-0 only (%v)", d, rt.states[n:])
	}
	e.fake.Logs["iot-broker-1"] = append(e.fake.Logs["iot-broker-1"], bridgeLine(2, kill.Add(2*time.Second)))
	e.now = kill.Add(10 * time.Second) // long past StableAfter
	e.step()
	if d := rt.drained[addrs[0]]; !d["broker-0"] || d["broker-1"] || d["broker-2"] {
		t.Fatalf("hub back, not joined: drained %v, want broker-0 only (%v)", d, rt.states[n:])
	}
	// Broker 1's bridge reaches it: admitted.
	e.fake.Logs["iot-broker-0"] = append(e.fake.Logs["iot-broker-0"], bridgeLine(1, e.now))
	e.now = e.now.Add(time.Second)
	e.step()
	if d := rt.drained[addrs[0]]; len(d) != 0 {
		t.Fatalf("hub joined: still drained %v", d)
	}

	// Broker 2's bridge drops (its node cut off for a while): its task
	// has joined, and holds its clients' sessions: it stays admitted.
	e.fake.Logs["iot-broker-1"] = append(e.fake.Logs["iot-broker-1"], swarm.LogLine{Time: e.now, Text: "Client iot-broker-2-bridge has exceeded timeout, disconnecting."})
	e.now = e.now.Add(time.Second)
	e.step()
	if b := e.cluster().Status.Brokers[2].Bridge; b == nil || b.Connected {
		t.Fatalf("broker 2's bridge still shown up: %+v", b)
	}
	if d := rt.drained[addrs[0]]; len(d) != 0 {
		t.Fatalf("a joined broker whose bridge dropped is drained: %v", d)
	}

	// The operator's connection to broker 2 closes: drained at once, young
	// streams closed; broker 2 still runs and is joined: ready again.
	e.rec.Reconciler.BrokerLost(context.Background(), "iot", 2, 3)
	if d, s := slices.Index(rt.states, addrs[0]+" broker-2 drain"), slices.Index(rt.states, addrs[0]+" broker-2 shutdown-young-sessions"); d < 0 || s < d {
		t.Fatalf("lost broker: drain, then its young streams closed, expected: %v", rt.states)
	}
	// Swarm still lists its task running, the bridges still up: it stays
	// out until the operator reaches it again.
	e.step()
	if d := rt.drained[addrs[0]]; !d["broker-2"] {
		t.Fatalf("a lost broker whose task Swarm still lists is admitted again: %v", rt.states)
	}
	if !e.rec.Reconciler.BrokerReached("iot", 2) || e.rec.Reconciler.BrokerReached("iot", 2) {
		t.Fatal("BrokerReached: true once for a broker found gone, then false")
	}
	e.step()
	if d := rt.drained[addrs[0]]; len(d) != 0 {
		t.Fatalf("a broker reached again and joined stays drained: %v", d)
	}

	// The connections to every broker close at once: the operator's own
	// network, likelier than three deaths: HAProxy is left alone.
	n = len(rt.states)
	for i := 0; i < 3; i++ {
		e.rec.Reconciler.BrokerLost(context.Background(), "iot", i, 3)
	}
	if got := rt.states[n:]; len(got) != 4 || !strings.HasSuffix(got[0], "broker-0 drain") || !strings.HasSuffix(got[2], "broker-1 drain") {
		t.Fatalf("every connection lost: want broker 0 and 1 drained (and their young streams closed), broker 2 left alone: %v", got)
	}
	for i := 0; i < 3; i++ {
		e.rec.Reconciler.BrokerReached("iot", i)
	}

	// A one-broker cluster is never held back: nothing else could serve.
	e2 := newClusterEnv(t)
	rt2 := e2.withControlNetwork()
	e2.running("spec: {replicas: 1, loadBalancer: {replicas: 1}}\n")
	addrs2 := e2.attachLB(1)
	e2.restartTask("iot-broker-0", e2.now)
	e2.step()
	if d := rt2.drained[addrs2[0]]; len(d) != 0 {
		t.Fatalf("the only broker drained: %v", d)
	}
}

// After a node was cut off, Swarm may not stream its tasks' logs for
// minutes ("incomplete log stream"): the hub's log never shows broker 2's
// bridge back, and the cluster stayed "not bridged to the hub yet" (a
// soak: 3 min, then failed). Broker 2's own word on its bridge, read over
// the operator's connection to it, makes it bridged and the cluster Ready.
func TestClusterTakesABrokersOwnWordWhenItsParentsLogIsOutOfReach(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.withControlNetwork()
	e.running("spec: {replicas: 3, loadBalancer: {replicas: 1}}\n")
	e.attachLB(1)
	e.step()
	e.fake.Logs["iot-broker-0"] = append(e.fake.Logs["iot-broker-0"], swarm.LogLine{Time: e.now, Text: "Client iot-broker-2-bridge has exceeded timeout, disconnecting."})
	e.now = e.now.Add(time.Second)
	e.step()
	if c := e.cluster(); meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) {
		t.Fatal("Ready with broker 2's bridge down")
	}
	// The hub's node can no longer be read; broker 2 says it is back.
	e.fake.LogsErr = map[string]error{"iot-broker-0": fmt.Errorf("logs of service iot-broker-0: %w: node n1 is not available", swarm.ErrIncompleteLogs)}
	e.fake.Logs["iot-broker-0"] = nil
	e.now = e.now.Add(5 * time.Second)
	if e.rec.Reconciler.BridgeState("iot", 2, "iot-broker-2-bridge-local", true) {
		t.Fatal("another client id taken as broker 2's bridge")
	}
	if !e.rec.Reconciler.BridgeState("iot", 2, "iot-broker-2-bridge", true) || e.rec.Reconciler.BridgeState("iot", 2, "iot-broker-2-bridge", true) {
		t.Fatal("BridgeState: a change the first time, none the second")
	}
	e.step()
	e.bridgedAndReady("broker 2's own word", 2)
}

// TestADeposedLeaderStopsMidwayThroughHAProxyWrites: a leader that stops
// leading between two of its HAProxy writes (its operator paused past its
// lease just after the first, as in the HA suite) makes no further write:
// each write is fenced, not only the first of a batch — taking a lost
// broker out of every HAProxy task, and draining a broker before a
// rolling update replaces it.
func TestADeposedLeaderStopsMidwayThroughHAProxyWrites(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	rt := e.withControlNetwork()
	e.running("spec: {replicas: 3, loadBalancer: {replicas: 2}}\n")
	if addrs := e.attachLB(1); len(addrs) != 2 {
		t.Fatalf("HAProxy tasks %v, want 2", addrs)
	}
	deposeAfterNextWrite := func() {
		rt.mu.Lock()
		rt.states = nil
		rt.afterWrite = func() { e.store.stale.Store(true) }
		rt.mu.Unlock()
	}

	deposeAfterNextWrite()
	e.rec.Reconciler.BrokerLost(context.Background(), "iot", 2, 3)
	if len(rt.states) != 1 {
		t.Fatalf("lost broker: writes after leadership was lost: %v", rt.states)
	}

	// A rolling update: broker 0 is drained (the first write), then the
	// leader is deposed: no more drain, no session closed, no update.
	rt.afterWrite = nil
	e.store.stale.Store(false)
	e.apply("spec: {replicas: 3, loadBalancer: {replicas: 2}, broker: {persistence: {autosaveInterval: 5s}}}\n")
	e.fake.ResetCalls()
	deposeAfterNextWrite()
	if _, err := e.rec.Reconcile(context.Background(), "iot"); !errors.Is(err, cluster.ErrNotLeaderAnyMore) {
		t.Fatalf("rolling update by a deposed leader: err %v", err)
	}
	if len(rt.states) != 1 || len(written(e.fake.Calls(), "UpdateService")) != 0 {
		t.Fatalf("rolling update: writes after leadership was lost: HAProxy %v, Swarm %v", rt.states, e.fake.Calls())
	}
}
