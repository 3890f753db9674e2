package leader

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

func (e *clusterEnv) events() []api.Event {
	e.t.Helper()
	o := e.store.Get(objects.KindEvents, "iot")
	if o == nil {
		return nil
	}
	var l api.EventList
	if err := json.Unmarshal(o.Spec, &l); err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

func TestClusterEventsRecordActionsOnce(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	e.apply("spec: {replicas: 2, loadBalancer: {replicas: 1}}\n")
	e.reconcile()
	var got []string
	for _, ev := range e.events() {
		got = append(got, ev.Reason+": "+ev.Message)
	}
	for _, want := range []string{"Created: network iot-net", "Created: broker iot-broker-0", "Created: broker iot-broker-1", "Created: loadbalancer iot-lb"} {
		if !slices.Contains(got, want) {
			t.Errorf("no event %q in %v", want, got)
		}
	}
	for _, prefix := range []string{"CertificateIssued: server certificate ", "CreatedSecret: secret iot-passwd-"} {
		if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, prefix) }) {
			t.Errorf("no event %q... in %v", prefix, got)
		}
	}
	// No secret in any event.
	m := e.material()
	b, _ := json.Marshal(e.events())
	for _, secret := range []string{m.Password, m.BridgePassword, "PRIVATE KEY"} {
		if strings.Contains(string(b), secret) {
			t.Fatal("an event holds a secret")
		}
	}
	// A pass that does nothing records nothing (no store write).
	e.runAll()
	e.reconcile()
	before := e.store.Get(objects.KindEvents, "iot").ModifyIndex
	e.reconcile()
	if after := e.store.Get(objects.KindEvents, "iot").ModifyIndex; after != before {
		t.Fatalf("an idle pass wrote events (%d -> %d)", before, after)
	}
}

func TestClusterEventsCountRepeatsKeepABoundAndGoWithTheCluster(t *testing.T) {
	t.Parallel()
	e := newClusterEnv(t)
	// A missing secret: the same warning every pass, counted, and written
	// again at most every eventRefresh (the raft log does not grow by a
	// write per pass).
	e.apply("spec: {replicas: 1, auth: {passwordFileSecret: nope}}\n")
	e.reconcile()
	before := e.store.Get(objects.KindEvents, "iot").ModifyIndex
	e.reconcile()
	if after := e.store.Get(objects.KindEvents, "iot").ModifyIndex; after != before {
		t.Fatalf("a repeated warning was written again at once (%d -> %d)", before, after)
	}
	e.now = e.now.Add(eventRefresh)
	e.reconcile()
	var warn *api.Event
	for _, ev := range e.events() {
		if ev.Type == api.EventWarning {
			ev := ev
			warn = &ev
		}
	}
	if warn == nil || warn.Reason != "ReconcileError" || warn.Count != 3 || !strings.Contains(warn.Message, `"nope"`) {
		t.Fatalf("warning: %+v", warn)
	}
	// At most MaxEvents, the newest.
	var many []api.Event
	for i := 0; i < objects.MaxEvents+20; i++ {
		many = append(many, api.Event{Type: api.EventNormal, Reason: "Test", Message: fmt.Sprintf("event %d", i), Count: 1})
	}
	if err := e.rec.recordEvents("iot", many); err != nil {
		t.Fatal(err)
	}
	evs := e.events()
	if len(evs) != objects.MaxEvents || evs[len(evs)-1].Message != fmt.Sprintf("event %d", objects.MaxEvents+19) {
		t.Fatalf("%d events, last %+v", len(evs), evs[len(evs)-1])
	}
	// Deleted with the cluster.
	if _, err := e.store.Delete(store.DeleteRequest{Kind: api.KindMqttCluster, Name: "iot"}); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	if e.store.Get(objects.KindEvents, "iot") != nil {
		t.Fatal("events left after the cluster was deleted")
	}
}
