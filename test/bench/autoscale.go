package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/test/chaos"
)

const (
	autoCluster   = "bench-auto"
	autoMQTT      = 37883
	autoPerBroker = 2000
	autoDelay     = 20 * time.Second
)

func autoSpec(fixed int) string {
	scaling := fmt.Sprintf("scaling: {mode: Auto, min: 1, max: 3, connectionsPerBroker: %d, scaleDownDelay: %s}", autoPerBroker, autoDelay)
	if fixed > 0 {
		scaling = fmt.Sprintf("replicas: %d", fixed)
	}
	return fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: %s}
spec:
  %s
  auth: {allowAnonymous: true}
  broker: {persistence: {enabled: false}}
  loadBalancer: {replicas: 1, ports: {mqtt: %d, mqtts: %d}}
  tls: {dnsNames: [localhost]}
`, autoCluster, scaling, autoMQTT, autoMQTT+5000)
}

// autoscaleBench: idle clients ramped from 500 to 5,000 against an Auto
// cluster (1..3 brokers at 2,000 each): the time from the ramp passing
// 4,000 (what 3 brokers are for) to 3 brokers Ready, against the same
// scale asked by hand in the same run (a Fixed cluster applied 1 → 3:
// what the automatic decision adds); then the clients leave: the time to
// 1 broker Ready (scaleDownDelay included), and what persistent QoS 1
// subscribers spread over the three brokers missed during it.
func autoscaleBench(ctx context.Context, cl *client.Client) error {
	defer func() {
		_ = cl.Delete(ctx, autoCluster)
		waitGone(autoCluster)
	}()
	// The baseline: by hand, Fixed 1 → 3.
	if _, err := cl.Apply(ctx, []byte(autoSpec(1))); err != nil {
		return err
	}
	if err := waitClusterReady(ctx, cl, autoCluster, 3*time.Minute); err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := cl.Apply(ctx, []byte(autoSpec(3))); err != nil {
		return err
	}
	if err := waitBrokers(ctx, cl, 3, 3*time.Minute); err != nil {
		return err
	}
	byHand := time.Since(t0)
	_ = cl.Delete(ctx, autoCluster)
	waitGone(autoCluster)

	if _, err := cl.Apply(ctx, []byte(autoSpec(0))); err != nil {
		return err
	}
	if err := waitBrokers(ctx, cl, 1, 3*time.Minute); err != nil {
		return err
	}
	url := fmt.Sprintf("tcp://%s:%d", chaos.FleetHost("127.0.0.1"), autoMQTT)
	base := &chaos.Fleet{URL: url, N: 500, IDPrefix: "auto-base"}
	if err := base.Start(ctx, 32); err != nil {
		return err
	}
	defer base.Stop()
	ramp := &chaos.Fleet{URL: url, N: 4500, IDPrefix: "auto-ramp"}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	started := make(chan error, 1)
	rampFrom := time.Now()
	go func() { started <- ramp.Start(rctx, 32) }()
	defer ramp.Stop()
	for base.Connected()+ramp.Connected() < 2*autoPerBroker+1 {
		if time.Since(rampFrom) > 5*time.Minute {
			return fmt.Errorf("the ramp did not pass %d clients", 2*autoPerBroker)
		}
		time.Sleep(10 * time.Millisecond)
	}
	crossed := time.Now()
	if err := waitBrokers(ctx, cl, 3, 3*time.Minute); err != nil {
		return err
	}
	up := time.Since(crossed)
	if err := <-started; err != nil {
		return err
	}
	rampTook := time.Since(rampFrom)

	// Persistent subscribers on every broker, a publisher; the ramp
	// leaves.
	h := chaos.NewHistory()
	w := &chaos.Workload{Run: "bench" + strconv.FormatInt(time.Now().Unix()%100000, 10), Publishers: 1, Every: 50 * time.Millisecond,
		Budget: 30 * time.Second, Subscribers: 9, RetainedEvery: time.Second, History: h, Plain: []chaos.Endpoint{{URL: url}}}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Close()
	time.Sleep(2 * time.Second)
	ramp.Stop()
	from := time.Now()
	if err := waitBrokers(ctx, cl, 1, 3*time.Minute); err != nil {
		return err
	}
	down := time.Since(from)
	mark := h.Mark()
	for end := time.Now().Add(30 * time.Second); len(h.Receiving(mark)) > 0 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	h.Faulted(chaos.Fault{Kind: "scale-down", Detail: "3 → 1", From: from, To: time.Now()})
	time.Sleep(time.Second)
	w.Stop()
	w.Drain(10 * time.Second)
	row := h.Check().Row("scale-down")

	fmt.Printf("\nautoscale (spec.scaling Auto, 1..3 brokers, %d connections per broker), idle MQTT clients ramped 500 → 5,000 in %s\n", autoPerBroker, rampTook.Round(100*time.Millisecond))
	fmt.Printf("  ramp past %d clients -> 3 brokers Ready:      %s\n", 2*autoPerBroker, up.Round(100*time.Millisecond))
	fmt.Printf("  by hand, mqttctl apply replicas 1 -> 3 -> Ready: %s (baseline)\n", byHand.Round(100*time.Millisecond))
	fmt.Printf("  ratio automatic/by hand: %.2f\n", up.Seconds()/byHand.Seconds())
	fmt.Printf("  ramp gone -> 1 broker Ready: %s (scaleDownDelay %s, then one broker at a time)\n", down.Round(100*time.Millisecond), autoDelay)
	fmt.Printf("  9 persistent QoS 1 subscribers over the 3 brokers: %d of %d owed deliveries lost during the scale-down (a moved subscriber's session starts anew)\n", row.Lost, row.Owed)
	return nil
}

// waitBrokers waits until the cluster is Ready with n broker services.
func waitBrokers(ctx context.Context, cl *client.Client, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		o, err := cl.Get(ctx, autoCluster)
		svcs, _ := sh("docker", "service", "ls", "-q", "--filter", "name="+autoCluster+"-broker-")
		if err == nil && api.Brokers(o) == n && len(strings.Fields(svcs)) == n &&
			o.Status.ObservedGeneration >= o.Generation && meta.IsStatusConditionTrue(o.Status.Conditions, api.ConditionReady) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: not %d brokers and Ready within %s", autoCluster, n, timeout)
}
