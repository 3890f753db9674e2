package leader

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
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
