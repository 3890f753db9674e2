package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

const iotDoc = `apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata:
  name: iot
  labels: {team: a}
spec:
  replicas: 3
  auth: {allowAnonymous: true}
`

func TestDiff(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	if r := mqttctl(t, inst, iotDoc, "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	// The same file: no change, exit 0.
	if r := mqttctl(t, inst, iotDoc, "diff", "-f", "-"); r.code != 0 || r.out != "mqttcluster/iot unchanged\n" {
		t.Fatalf("unchanged: %+v", r)
	}
	// Changes: field by field, the brokers a change restarts, exit 1; a
	// new object in the same run.
	changed := strings.NewReplacer("replicas: 3", "replicas: 4\n  broker: {persistence: {autosaveInterval: 5s}}\n  tls: {dnsNames: [mqtt.example.com]}", "team: a", "team: b, tier: gold").Replace(iotDoc)
	fresh := strings.NewReplacer("name: iot", "name: fresh", "replicas: 3", "replicas: 1").Replace(iotDoc)
	r := mqttctl(t, inst, changed+"---\n"+fresh, "diff", "-f", "-")
	if r.code != 1 {
		t.Fatalf("changes: %+v", r)
	}
	golden(t, "diff-changes", r.out)
	// A load balancer change restarts no broker.
	lbOnly := strings.Replace(iotDoc, "replicas: 3", "replicas: 3\n  loadBalancer: {replicas: 3}", 1)
	if r := mqttctl(t, inst, lbOnly, "diff", "-f", "-"); r.code != 1 || !strings.Contains(r.out, "brokers: none restarts") {
		t.Fatalf("load balancer change: %+v", r)
	}
	// Nothing was stored by any of it.
	if o := inst.Store.Get(api.KindMqttCluster, "iot"); o.Generation != 1 || inst.Store.Get(api.KindMqttCluster, "fresh") != nil {
		t.Fatalf("diff changed the store: %+v", o)
	}
	// Errors: exit 2 (an invalid file, an unreachable server).
	if r := mqttctl(t, inst, strings.Replace(iotDoc, "replicas: 3", "replicas: 99", 1), "diff", "-f", "-"); r.code != 2 || !strings.Contains(r.err, "spec.replicas") {
		t.Fatalf("invalid: %+v", r)
	}
	if r := mqttctl(t, nil, iotDoc, "--server", "http://127.0.0.1:1", "diff", "-f", "-"); r.code != 2 {
		t.Fatalf("unreachable server: %+v", r)
	}
}

func TestApplyPrune(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	doc := func(name, label string) string {
		return strings.NewReplacer("name: iot", "name: "+name, "team: a", label).Replace(iotDoc)
	}
	all := doc("one", "team: a") + "---\n" + doc("two", "team: a") + "---\n" + doc("other", "team: z")
	if r := mqttctl(t, inst, all, "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	// --prune without -l is refused, nothing deleted.
	if r := mqttctl(t, inst, doc("one", "team: a"), "apply", "--prune", "-f", "-"); r.code != 1 || !strings.Contains(r.err, "needs -l") {
		t.Fatalf("prune without a selector: %+v", r)
	}
	// With -l team=a: "two" is gone from the files, so it is pruned;
	// "other" is not selected, so it stays.
	r := mqttctl(t, inst, doc("one", "team: a"), "apply", "--prune", "-l", "team=a", "-f", "-")
	if r.code != 0 || r.out != "mqttcluster/one unchanged\nmqttcluster/two pruned\n" {
		t.Fatalf("prune: %+v", r)
	}
	for name, want := range map[string]bool{"one": true, "two": false, "other": true} {
		if got := inst.Store.Get(api.KindMqttCluster, name) != nil; got != want {
			t.Errorf("%s exists: %v, want %v", name, got, want)
		}
	}
	// A document the selector does not match is skipped, not applied.
	r = mqttctl(t, inst, doc("new", "team: z"), "apply", "-l", "team=a", "-f", "-")
	if r.code != 0 || !strings.Contains(r.out, "skipped") || inst.Store.Get(api.KindMqttCluster, "new") != nil {
		t.Fatalf("unselected document: %+v", r)
	}
}

func TestApplyWaitAndDegraded(t *testing.T) {
	withToken(t)
	// Reads of the cluster, counted once answered: the CLI's polls. (Counted
	// on arrival, a poll in flight when Ready is written — a consistent
	// read waits for the leader first — answered Ready and looked early.)
	var gets atomic.Int32
	inst := servertest.StartWith(t, "", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/iot") {
				gets.Add(1)
			}
		})
	})
	// The operator (played here) first reports the cluster not Ready, and
	// makes it Ready only after the CLI has polled it three times: an
	// apply --wait that returns before that did not wait.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var readyAt atomic.Int32 // polls seen when Ready was written (0: not yet)
	go func() {
		for ctx.Err() == nil {
			if o := inst.Store.Get(api.KindMqttCluster, "iot"); o != nil {
				setStatus(t, inst, "iot", api.MqttClusterStatus{ObservedGeneration: o.Generation, Conditions: []metav1.Condition{
					{Type: api.ConditionReady, Status: "False", Reason: "NotAllRunning", Message: "0/3 brokers running", LastTransitionTime: metav1.Now()},
				}, Brokers: []api.BrokerStatus{{Name: "iot-broker-0", State: "starting"}}})
				first := gets.Load()
				for ctx.Err() == nil && gets.Load() < first+3 {
					time.Sleep(5 * time.Millisecond)
				}
				readyAt.Store(gets.Load())
				setStatus(t, inst, "iot", api.MqttClusterStatus{ObservedGeneration: o.Generation, Conditions: []metav1.Condition{
					{Type: api.ConditionReady, Status: "True", Reason: "AllRunning", Message: "3/3 brokers running", LastTransitionTime: metav1.Now()},
				}, Brokers: []api.BrokerStatus{{Name: "iot-broker-0", State: "running"}}})
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	r := mqttctl(t, inst, iotDoc, "apply", "--wait", "--timeout", "5s", "--poll-interval", "20ms", "-f", "-")
	if r.code != 0 || r.out != "mqttcluster/iot created\nmqttcluster/iot condition met: Ready\n" {
		t.Fatalf("apply --wait: %+v", r)
	}
	if readyAt.Load() == 0 || gets.Load() <= readyAt.Load() {
		t.Fatalf("apply --wait returned before the cluster was Ready (Ready written after poll %d, %d polls)", readyAt.Load(), gets.Load())
	}
	// Degraded for the current generation past the grace: exit 1, why.
	setStatus(t, inst, "iot", api.MqttClusterStatus{ObservedGeneration: 1, Conditions: []metav1.Condition{
		{Type: api.ConditionReady, Status: "False", Reason: "NotAllRunning", Message: "0/3 brokers running", LastTransitionTime: metav1.Now()},
		{Type: api.ConditionDegraded, Status: "True", Reason: "MissingSecret", Message: "secret not found: Docker secret \"x\"", LastTransitionTime: metav1.Now()},
	}, Brokers: []api.BrokerStatus{{Name: "iot-broker-0", State: "missing"}}})
	r = mqttctl(t, inst, "", "wait", "iot", "--timeout", "5s", "--poll-interval", "20ms")
	if r.code != 1 || !strings.Contains(r.err, "is Degraded (MissingSecret)") || !strings.Contains(r.err, "broker-0 missing") {
		t.Fatalf("degraded: %+v", r)
	}
}

func TestEvents(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	if r := mqttctl(t, inst, iotDoc, "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	if r := mqttctl(t, inst, "", "events", "iot"); r.code != 0 || !strings.Contains(r.err, "no events") {
		t.Fatalf("no events yet: %+v", r)
	}
	// As the operator stores them (90 minutes before the test's clock).
	at := metav1.NewTime(time.Now().Truncate(time.Second))
	list := api.EventList{Cluster: "iot", Items: []api.Event{
		{Type: api.EventNormal, Reason: "Created", Message: "broker iot-broker-0", Count: 1, FirstTime: at, LastTime: at},
		{Type: api.EventWarning, Reason: "ReconcileError", Message: "secret not found", Count: 3, FirstTime: at, LastTime: at},
	}}
	b, _ := json.Marshal(list)
	if _, _, err := inst.Store.Apply(store.ApplyRequest{Kind: objects.KindEvents, Name: "iot", Spec: b}); err != nil {
		t.Fatal(err)
	}
	r := mqttctl(t, inst, "", "events", "iot")
	if r.code != 0 {
		t.Fatalf("events: %+v", r)
	}
	golden(t, "events", r.out)
	if r := mqttctl(t, inst, "", "events", "iot", "-o", "json"); r.code != 0 || !strings.Contains(r.out, `"reason": "ReconcileError"`) {
		t.Fatalf("events -o json: %+v", r)
	}
	if r := mqttctl(t, inst, "", "events", "nope"); r.code != 1 || !strings.Contains(r.err, "not found") {
		t.Fatalf("events of a missing cluster: %+v", r)
	}
}

func TestApprove(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	if r := mqttctl(t, inst, iotDoc, "apply", "-f", "-"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	r := mqttctl(t, inst, "", "approve", "iot")
	if r.code != 0 || r.out != "mqttcluster/iot generation 1 approved: its brokers roll one at a time\n" {
		t.Fatalf("approve: %+v", r)
	}
	o := inst.Store.Get(api.KindMqttCluster, "iot")
	if o.Annotations[api.ApprovedGenerationAnnotation] != "1" || o.Generation != 1 {
		t.Fatalf("stored: %+v", o)
	}
	// Re-applying the same file keeps the approval and changes nothing.
	if r := mqttctl(t, inst, iotDoc, "apply", "-f", "-"); r.code != 0 || r.out != "mqttcluster/iot unchanged\n" {
		t.Fatalf("re-apply: %+v", r)
	}
	if r := mqttctl(t, inst, "", "approve", "nope"); r.code != 1 || !strings.Contains(r.err, "not found") {
		t.Fatalf("approve a missing cluster: %+v", r)
	}
}
