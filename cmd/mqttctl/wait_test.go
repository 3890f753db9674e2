package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

func setStatus(t *testing.T, inst *servertest.Instance, name string, st api.MqttClusterStatus) {
	t.Helper()
	b, _ := json.Marshal(st)
	if _, _, err := inst.Store.UpdateStatus(store.StatusRequest{Kind: api.KindMqttCluster, Name: name, Status: b}); err != nil {
		t.Fatal(err)
	}
}

func TestWait(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	if r := mqttctl(t, inst, "", "apply", "-f", "../../examples/minimal.yaml"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	// Not Ready: times out, exit 1, saying why.
	setStatus(t, inst, "minimal", api.MqttClusterStatus{ObservedGeneration: 1, Conditions: []metav1.Condition{
		{Type: api.ConditionReady, Status: "False", Reason: "NotAllRunning", Message: "1/3 brokers running", LastTransitionTime: metav1.Now()},
	}})
	r := mqttctl(t, inst, "", "wait", "minimal", "--timeout", "300ms", "--poll-interval", "50ms")
	if r.code != 1 || !strings.Contains(r.err, "timed out after 300ms") || !strings.Contains(r.err, "1/3 brokers running") {
		t.Fatalf("timeout: %+v", r)
	}
	// Ready for an older generation does not count.
	setStatus(t, inst, "minimal", api.MqttClusterStatus{ObservedGeneration: 0, Conditions: []metav1.Condition{
		{Type: api.ConditionReady, Status: "True", Reason: "AllRunning", Message: "ok", LastTransitionTime: metav1.Now()},
	}})
	if r := mqttctl(t, inst, "", "wait", "minimal", "--timeout", "200ms", "--poll-interval", "50ms"); r.code != 1 {
		t.Fatalf("stale Ready counted: %+v", r)
	}
	// Becomes Ready while waiting: exit 0. The status changes once the
	// command has read it at least twice (the server counts the reads).
	reads := func() int {
		return testutil.Metric(inst.URL, `mqttoperator_api_requests_total{code="200",method="GET",route="get"}`)
	}
	start := reads()
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for reads() < start+2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		setStatus(t, inst, "minimal", api.MqttClusterStatus{ObservedGeneration: 1, Conditions: []metav1.Condition{
			{Type: api.ConditionReady, Status: "True", Reason: "AllRunning", Message: "3/3 brokers running", LastTransitionTime: metav1.Now()},
		}})
	}()
	r = mqttctl(t, inst, "", "wait", "minimal", "--for=condition=Ready", "--timeout", "10s", "--poll-interval", "50ms")
	if r.code != 0 || r.out != "mqttcluster/minimal condition met: Ready\n" {
		t.Fatalf("ready: %+v", r)
	}
	// A cluster that does not exist is an error at once, not a wait.
	if r := mqttctl(t, inst, "", "wait", "nope", "--timeout", "10s"); r.code != 1 || !strings.Contains(r.err, "not found") {
		t.Fatalf("missing: %+v", r)
	}
	if r := mqttctl(t, inst, "", "wait", "minimal", "--for", "delete"); r.code != 1 || !strings.Contains(r.err, "condition=TYPE") {
		t.Fatalf("bad --for: %+v", r)
	}
}

func TestCertificateRenew(t *testing.T) {
	withToken(t)
	inst := servertest.Start(t, "")
	if r := mqttctl(t, inst, "", "apply", "-f", "../../examples/minimal.yaml"); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	r := mqttctl(t, inst, "", "certificate", "renew", "minimal")
	if r.code != 0 || !strings.HasPrefix(r.out, "mqttcluster/minimal certificate renewal requested at ") {
		t.Fatalf("renew: %+v", r)
	}
	if got := inst.Store.Get(api.KindMqttCluster, "minimal").Annotations["mqtt.swarm/renew-certificate-requested-at"]; got == "" || !strings.Contains(r.out, got) {
		t.Fatalf("annotation %q, output %q", got, r.out)
	}
	if r := mqttctl(t, inst, "", "certificate", "renew", "nope"); r.code != 1 || !strings.Contains(r.err, "not found") {
		t.Fatalf("renew of a missing cluster: %+v", r)
	}
}
