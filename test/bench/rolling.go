package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

func rollingSpec(mem string) []byte {
	return []byte(fmt.Sprintf(`apiVersion: mqtt.swarm/v1alpha1
kind: MqttCluster
metadata: {name: brolling}
spec:
  replicas: 3
  auth: {allowAnonymous: true}
  broker: {persistence: {enabled: false}, resources: {memory: %s}}
  loadBalancer: {replicas: 1, ports: {mqtt: 21895, mqtts: 0}}
`, mem))
}

func readyAt(ctx context.Context, cl *client.Client, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		o, err := cl.Get(ctx, name)
		if err == nil && o.Status.ObservedGeneration >= o.Generation && meta.IsStatusConditionTrue(o.Status.Conditions, api.ConditionReady) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not Ready within %s", name, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rollingBench: a change that restarts all 3 brokers, rolled by the
// operator one at a time, under a QoS 1 publisher that retries.
func rollingBench(ctx context.Context, cl *client.Client) error {
	defer cl.Delete(context.Background(), "brolling")
	if _, err := cl.Apply(ctx, rollingSpec("128Mi")); err != nil {
		return err
	}
	if err := readyAt(ctx, cl, "brolling", 3*time.Minute); err != nil {
		return err
	}
	fmt.Printf("\nrolling update of 3 brokers (a memory limit change) under a QoS 1 publisher, one publish every 20 ms, retried for up to 15 s\n")
	for run := 1; run <= 2; run++ {
		pub := &testutil.RetryingPublisher{Addr: "127.0.0.1:21895", ID: fmt.Sprintf("bench-roller-%d", run), Topic: "bench/roll", Every: 20 * time.Millisecond, Budget: 15 * time.Second}
		if err := pub.Start(); err != nil {
			return err
		}
		mem := []string{"", "192Mi", "128Mi"}[run]
		start := time.Now()
		if _, err := cl.Apply(ctx, rollingSpec(mem)); err != nil {
			pub.Stop()
			return err
		}
		// Until the status describes the new generation as Ready.
		err := readyAt(ctx, cl, "brolling", 4*time.Minute)
		took := time.Since(start)
		pub.Stop()
		if err != nil {
			return err
		}
		fmt.Printf("  run %d (the operator, one broker at a time): %s until Ready on the new spec; %d publishes acknowledged, %d needed a retry, %d failed, longest wait for an ack %s   target 0 failed\n",
			run, took.Round(time.Millisecond), pub.Sent.Load(), pub.Retried.Load(), pub.Failed.Load(), time.Duration(pub.MaxWait.Load()).Round(time.Millisecond))
	}
	return rollingBaseline(ctx, cl)
}

// rollingBaseline: the same change the Swarm way, on the hand-made stack
// (the same brokers and HAProxy made with docker service create): every
// broker service updated at once, as docker stack deploy does, under the
// same publisher.
func rollingBaseline(ctx context.Context, cl *client.Client) error {
	const user, pass = "bench", "bench-roll-pw"
	defer removeHandMade()
	removeHandMade()
	if _, err := byHand(user, pass); err != nil {
		return err
	}
	pub := &testutil.RetryingPublisher{Addr: fmt.Sprintf("127.0.0.1:%d", handMQTT), ID: "bench-roller-hand", Topic: "bench/roll",
		User: user, Password: pass, Every: 20 * time.Millisecond, Budget: 15 * time.Second}
	if err := pub.Start(); err != nil {
		return err
	}
	start := time.Now()
	errc := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			_, err := sh("docker", "service", "update", "--detach", "--quiet", "--limit-memory", "192M", fmt.Sprintf("bench-hand-broker-%d", i))
			errc <- err
		}()
	}
	for i := 0; i < 3; i++ {
		if err := <-errc; err != nil {
			pub.Stop()
			return err
		}
	}
	updated := func() bool {
		for i := 0; i < 3; i++ {
			if st, _ := sh("docker", "service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", fmt.Sprintf("bench-hand-broker-%d", i)); st != "completed" {
				return false
			}
		}
		return stableServices("label=bench=hand", 4)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for !updated() {
		if time.Now().After(deadline) {
			pub.Stop()
			return fmt.Errorf("hand-made brokers not running again within 3 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	pub.Stop()
	fmt.Printf("  the Swarm way (the three services updated at once, hand-made stack): %s until running; %d acknowledged, %d needed a retry, %d failed, longest wait for an ack %s\n",
		took.Round(time.Millisecond), pub.Sent.Load(), pub.Retried.Load(), pub.Failed.Load(), time.Duration(pub.MaxWait.Load()).Round(time.Millisecond))
	return nil
}
