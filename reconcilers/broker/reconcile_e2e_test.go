//go:build e2e

package broker

import (
	"context"

	"fmt"
	"os/exec"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/network"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// TestReconcileOnRealSwarm: brokers come up as real services, a second pass
// against the live Swarm writes nothing (Swarm's own defaults in the stored
// spec do not look like drift), and scaling down removes exactly the extra.
func TestReconcileOnRealSwarm(t *testing.T) {
	d, err := swarm.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	op := fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1_000_000)
	ctx := context.Background()
	nr := &network.Reconciler{Swarm: d, OperatorID: op}
	r := &Reconciler{Swarm: d, OperatorID: op, Network: api.NetworkName}
	c := cluster(t, "spec: {replicas: 2, auth: {allowAnonymous: true}, broker: {image: \"swarm-mqtt/mosquitto:local\", persistence: {enabled: false}}}\n")
	c.Name = "e2ebrk"
	if created, err := nr.Reconcile(ctx, c.Name); err != nil || !created {
		t.Fatalf("network: %v %v", created, err)
	}
	t.Cleanup(func() {
		svcs, _ := d.Services(ctx, swarm.Owned(op, c.Name))
		for _, s := range svcs {
			_ = d.RemoveService(ctx, s.ID)
		}
		confs, _ := d.Configs(ctx, swarm.Owned(op, c.Name))
		for _, cf := range confs {
			_ = exec.Command("docker", "config", "rm", cf.ID).Run()
		}
		secs, _ := d.Secrets(ctx, map[string]string{swarm.LabelOwner: op})
		for _, s := range secs {
			_ = d.RemoveSecret(ctx, s.ID)
		}
		// The network is free once the tasks have left it.
		deadline := time.Now().Add(30 * time.Second)
		for nr.Delete(ctx, c.Name) != nil && time.Now().Before(deadline) {
			time.Sleep(250 * time.Millisecond)
		}
	})
	out, err := r.Reconcile(ctx, c, inputsFor(t, r))
	if err != nil || len(out.Created) != 4 {
		t.Fatalf("first pass: %+v %v", out, err)
	}
	// Wait for both brokers to run.
	deadline := time.Now().Add(60 * time.Second)
	for {
		tasks, _ := d.Tasks(ctx, nil)
		running := 0
		svcs, _ := d.Services(ctx, swarm.Owned(op, c.Name))
		ids := map[string]bool{}
		for _, s := range svcs {
			ids[s.ID] = true
		}
		for _, tk := range tasks {
			if ids[tk.ServiceID] && tk.Status.State == "running" {
				running++
			}
		}
		if running == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("brokers not running after 60s (%d running)", running)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// Brokers reach each other by name over the overlay network.
	var ctr string
	for _, tk := range mustTasks(t, d, op, c.Name) {
		if tk.Status.State == "running" && tk.Status.ContainerStatus != nil {
			ctr = tk.Status.ContainerStatus.ContainerID
		}
	}
	// A running task is not yet a listening broker (its start script runs
	// first): the probe is retried until it gets through, for 20 s at most.
	for probe := time.Now().Add(20 * time.Second); ; {
		pub := exec.Command("docker", "exec", ctr, "mosquitto_pub", "-h", "tasks.e2ebrk-broker-1", "-t", "probe", "-m", "over-overlay")
		b, err := pub.CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(probe) {
			t.Fatalf("broker-0 cannot reach broker-1 over the overlay: %v\n%s", err, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
	out, err = r.Reconcile(ctx, c, inputsFor(t, r))
	if err != nil || out.Changed() {
		t.Fatalf("second pass against the live Swarm changed something: %+v %v", out, err)
	}
	two := *c.Spec.Replicas
	*c.Spec.Replicas = 1
	out, err = r.Reconcile(ctx, c, inputsFor(t, r))
	if err != nil || len(out.Removed) != 2 || out.Removed[0] != "e2ebrk-broker-1" {
		t.Fatalf("scale %d -> 1: %+v %v", two, out, err)
	}
}

func mustTasks(t *testing.T, d *swarm.Docker, op, cluster string) []dswarm.Task {
	t.Helper()
	svcs, err := d.Services(context.Background(), swarm.Owned(op, cluster))
	if err != nil {
		t.Fatal(err)
	}
	var out []dswarm.Task
	tasks, _ := d.Tasks(context.Background(), nil)
	for _, s := range svcs {
		for _, tk := range tasks {
			if tk.ServiceID == s.ID {
				out = append(out, tk)
			}
		}
	}
	return out
}
