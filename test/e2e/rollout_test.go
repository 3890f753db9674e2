//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

// TestRollingUpdateApprovedUnderLoad: with updatePolicy.approval manual a
// change that restarts the brokers waits (the brokers untouched) until
// approved; then they roll one at a time, each drained in HAProxy first,
// and a QoS 1 publisher that retries loses no publish.
func TestRollingUpdateApprovedUnderLoad(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	const name, port = "e2eroll", 24883
	spec := func(mem string) []byte {
		return []byte(fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
  replicas: 3
  auth: {allowAnonymous: true}
  updatePolicy: {approval: manual}
  broker: {persistence: {enabled: false}, resources: {memory: %s}}
  loadBalancer: {replicas: 1, ports: {mqtt: %d, mqtts: 0}}
`, name, mem, port))
	}
	if _, err := c.Apply(ctx, spec("128Mi")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), name) })
	waitReady(t, c, name, 3*time.Minute)
	pub := &testutil.RetryingPublisher{Addr: fmt.Sprintf("127.0.0.1:%d", port), ID: "roller", Topic: "roll/t", Every: 20 * time.Millisecond, Budget: 15 * time.Second}
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			pub.Stop()
			stopped = true
		}
	}
	t.Cleanup(stop)
	before := serviceVersions(t, name)

	// Held: the operator saw the change, the brokers are untouched.
	if _, err := c.Apply(ctx, spec("192Mi")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the change held for approval", time.Minute, func() error {
		o, err := c.Get(ctx, name)
		if err != nil {
			return err
		}
		p := meta.FindStatusCondition(o.Status.Conditions, api.ConditionProgressing)
		if o.Status.ObservedGeneration < o.Generation || p == nil || p.Reason != "AwaitingApproval" {
			return fmt.Errorf("status: %+v", o.Status.Conditions)
		}
		return nil
	})
	if after := serviceVersions(t, name); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("services changed before approval:\n%v\n%v", before, after)
	}

	// Approved: they roll.
	start := time.Now()
	if _, err := c.Approve(ctx, name); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every broker on the new spec, Ready", 4*time.Minute, func() error {
		o, err := c.Get(ctx, name)
		if err != nil {
			return err
		}
		if o.Status.ObservedGeneration < o.Generation || !meta.IsStatusConditionTrue(o.Status.Conditions, api.ConditionReady) {
			return fmt.Errorf("status: %+v", o.Status.Conditions)
		}
		after := serviceVersions(t, name)
		for svc, v := range before {
			if strings.Contains(svc, "-broker-") && after[svc] == v {
				return fmt.Errorf("%s not updated yet", svc)
			}
		}
		return nil
	})
	took := time.Since(start)
	stop()
	t.Logf("rolling update of 3 brokers in %s: %d publishes acknowledged, %d needed a retry, %d failed", took.Round(time.Millisecond), pub.Sent.Load(), pub.Retried.Load(), pub.Failed.Load())
	if pub.Failed.Load() != 0 {
		t.Fatalf("%d publishes failed after retrying", pub.Failed.Load())
	}
	evs, err := c.Events(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	rolled := 0
	for _, e := range evs.Items {
		if e.Reason == "RollingUpdate" {
			rolled++
		}
	}
	if rolled != 3 {
		t.Fatalf("%d RollingUpdate events, want one per broker: %+v", rolled, evs.Items)
	}
}
