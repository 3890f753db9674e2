//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/test/chaos"
)

const autoCluster = "e2eauto"

// autoSpec: Auto between 1 and 3 brokers at 20 connections each (and a
// message target never reached: its figure is read all the same), down
// 15 s after the load drops.
func autoSpec() []byte {
	return []byte(fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
  scaling: {mode: Auto, min: 1, max: 3, connectionsPerBroker: 20, messagesPerSecondPerBroker: 100000, scaleDownDelay: 15s}
  auth: {allowAnonymous: true}
  broker: {persistence: {enabled: false}}
  loadBalancer: {replicas: 1, ports: {mqtt: 25884, mqtts: 25885}}
`, autoCluster))
}

// scaling waits until the cluster's status.scaling says want brokers and
// it is Ready with exactly that many broker services.
func waitScaled(t *testing.T, c *client.Client, want int, timeout time.Duration) *api.MqttCluster {
	t.Helper()
	var obj *api.MqttCluster
	eventually(t, fmt.Sprintf("%s scaled to %d and Ready", autoCluster, want), timeout, func() error {
		var err error
		if obj, err = c.Get(context.Background(), autoCluster); err != nil {
			return err
		}
		st := obj.Status.Scaling
		if st == nil || int(st.Replicas) != want {
			return fmt.Errorf("status.scaling %+v", st)
		}
		if n := len(strings.Fields(docker(t, "service", "ls", "-q", "--filter", "name="+autoCluster+"-broker-"))); n != want {
			return fmt.Errorf("%d broker services", n)
		}
		return readyErr(obj)
	})
	return obj
}

// TestAutoscaling: an Auto cluster follows its connections — 50 idle
// clients at 20 per broker scale it from 1 to 3 brokers; once they leave,
// after the delay, it goes down one broker at a time to 1, each removed
// broker drained in HAProxy first. Persistent subscribers on every broker
// count the QoS 1 messages of a publisher throughout: those on the broker
// that stays lose nothing, and neither do those whose broker is removed:
// they reconnect to broker 0, which catches their new sessions up.
func TestAutoscaling(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	deleteOnCleanup(t, c, autoCluster)
	if _, err := c.Apply(ctx, autoSpec()); err != nil {
		t.Fatal(err)
	}
	waitScaled(t, c, 1, 120*time.Second)
	host := chaos.FleetHost("127.0.0.1")
	broker0 := serviceVersions(t, autoCluster)[autoCluster+"-broker-0"]

	// Load up: 50 clients need 3 brokers.
	f := &chaos.Fleet{URL: fmt.Sprintf("tcp://%s:25884", host), N: 50, IDPrefix: "auto-fleet"}
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := f.Start(fctx, 8); err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	loaded := time.Now()
	obj := waitScaled(t, c, 3, 90*time.Second)
	t.Logf("50 connections: 3 brokers and Ready %v after the load", time.Since(loaded).Round(100*time.Millisecond))
	if st := obj.Status.Scaling; st.Desired != 3 || !strings.Contains(st.Next, "holding 3") {
		t.Errorf("status.scaling at the peak: %+v", st)
	}
	ups := scalingEvents(t, c, "ScaledUp")
	if len(ups) == 0 || !strings.Contains(ups[len(ups)-1], "→ 3 brokers") {
		t.Fatalf("no scale-up event to 3: %v", ups)
	}

	// Persistent subscribers spread over the 3 brokers, a publisher.
	h := chaos.NewHistory()
	w := &chaos.Workload{Run: "auto" + strconv.FormatInt(time.Now().Unix()%100000, 10), Publishers: 1, Every: 50 * time.Millisecond,
		Budget: 30 * time.Second, Subscribers: 9, RetainedEvery: time.Second, History: h,
		Plain: []chaos.Endpoint{{URL: fmt.Sprintf("tcp://%s:25884", host)}}}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// Load down: 10 clients (the workload's) need 1.
	time.Sleep(2 * time.Second) // traffic before the fault, to count against
	f.Stop()
	from := time.Now()
	obj = waitScaled(t, c, 1, 150*time.Second)
	t.Logf("load gone: 1 broker and Ready %v later", time.Since(from).Round(100*time.Millisecond))
	// The message rate reached the operator from the brokers' $SYS.
	if m := obj.Status.Scaling.MessagesPerSecond; m == nil || *m <= 0 {
		t.Errorf("no message rate in status.scaling (publishing 20/s): %+v", obj.Status.Scaling)
	}
	downs := scalingEvents(t, c, "ScaledDown")
	if len(downs) != 2 || !strings.Contains(downs[0], "3 → 2 brokers") || !strings.Contains(downs[1], "2 → 1 brokers") {
		t.Fatalf("scale-down events %v, want 3 → 2 then 2 → 1", downs)
	}
	if v := serviceVersions(t, autoCluster)[autoCluster+"-broker-0"]; v != broker0 {
		t.Errorf("broker 0 was updated or restarted by the scaling: %s -> %s", broker0, v)
	}

	// The scale-down's window ends once every subscriber is back on
	// broker 0 and receiving; then the account.
	mark := h.Mark()
	eventually(t, "every subscriber receiving again", 30*time.Second, func() error {
		if waiting := h.Receiving(mark); len(waiting) > 0 {
			return fmt.Errorf("waiting: %v", waiting)
		}
		return nil
	})
	h.Faulted(chaos.Fault{Kind: "scale-down", Detail: "3 → 1", From: from, To: time.Now()})
	time.Sleep(2 * time.Second) // calm traffic after it, to count against
	w.Stop()
	w.Drain(10 * time.Second)
	rep := h.Check()
	t.Logf("account:\n%s", rep.Table(0, 0))
	row, calm := rep.Row("scale-down"), rep.Row(chaos.Calm)
	if calm.Lost != 0 || calm.Acked == 0 {
		t.Errorf("outside the scale-down: %d of %d owed lost", calm.Lost, calm.Owed)
	}
	// A subscriber whose broker goes reconnects to broker 0, which holds
	// no session of its; broker 0 catches it up (spec.broker.catchUp,
	// default 60 s) from what it kept of the traffic: nothing is lost.
	if row.Lost != 0 || row.Owed == 0 {
		t.Errorf("scale-down: %d of %d owed deliveries lost", row.Lost, row.Owed)
	}
	for _, x := range rep.Examples {
		t.Log(x)
	}
}

// scalingEvents lists the messages of the cluster's events with reason.
func scalingEvents(t *testing.T, c *client.Client, reason string) []string {
	t.Helper()
	evs, err := c.Events(context.Background(), autoCluster)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs.Items {
		if e.Reason == reason {
			out = append(out, e.Message)
		}
	}
	return out
}

// readyErr says why obj's status does not describe its generation as
// Ready (nil: it does).
func readyErr(obj *api.MqttCluster) error {
	if obj.Status.ObservedGeneration < obj.Generation || !meta.IsStatusConditionTrue(obj.Status.Conditions, api.ConditionReady) {
		return fmt.Errorf("status: %+v", obj.Status.Conditions)
	}
	return nil
}
