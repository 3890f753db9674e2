package swarm

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// contract is what reconcilers rely on, run against the Fake here and
// against a real Swarm in the e2e build (docker_e2e_test.go), so the fake
// cannot drift from Docker.
func contract(t *testing.T, c Client, image string) {
	ctx := context.Background()
	run := fmt.Sprintf("c%d", time.Now().UnixNano()%1_000_000)
	own := Owned("contract-"+run, "demo")
	other := Owned("contract-"+run, "other")
	zero := uint64(0)
	spec := func(name string, labels map[string]string) swarm.ServiceSpec {
		return swarm.ServiceSpec{
			Annotations:  swarm.Annotations{Name: name, Labels: labels},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: image, Command: []string{"sleep", "600"}}},
			Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &zero}},
		}
	}
	var ids []string
	t.Cleanup(func() {
		for _, id := range ids {
			_ = c.RemoveService(ctx, id)
		}
	})
	id, err := c.CreateService(ctx, spec(run+"-a", own))
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, id)
	id2, err := c.CreateService(ctx, spec(run+"-b", other))
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, id2)
	if _, err := c.CreateService(ctx, spec(run+"-a", own)); err == nil {
		t.Fatal("a second service with the same name was created")
	}

	got, err := c.Services(ctx, own)
	if err != nil || len(got) != 1 || got[0].Spec.Name != run+"-a" {
		t.Fatalf("services by label: %v %v", got, err)
	}
	// Update with the current version works; with a stale one it fails.
	s := got[0]
	upd := s.Spec
	upd.Labels = map[string]string{LabelOwner: own[LabelOwner], LabelCluster: "demo", LabelComponent: "broker"}
	if err := c.UpdateService(ctx, s.ID, s.Version, upd); err != nil {
		t.Fatalf("update: %v", err)
	}
	if err := c.UpdateService(ctx, s.ID, s.Version, upd); err == nil {
		t.Fatal("an update with a stale version succeeded")
	}
	got, _ = c.Services(ctx, map[string]string{LabelComponent: "broker", LabelOwner: own[LabelOwner]})
	if len(got) != 1 || got[0].Version.Index <= s.Version.Index {
		t.Fatalf("after update: %+v", got)
	}

	sid, err := c.CreateSecret(ctx, swarm.SecretSpec{Annotations: swarm.Annotations{Name: run + "-secret", Labels: own}, Data: []byte("s3cr3t")})
	if err != nil {
		t.Fatal(err)
	}
	secs, err := c.Secrets(ctx, own)
	if err != nil || len(secs) != 1 || len(secs[0].Spec.Data) != 0 {
		t.Fatalf("secrets by label (data must not come back): %+v %v", secs, err)
	}
	// A secret a service references cannot be removed; once the service
	// stops referencing it, it can.
	ref := got[0]
	withSecret := ref.Spec
	cs := *withSecret.TaskTemplate.ContainerSpec
	cs.Secrets = []*swarm.SecretReference{{SecretID: sid, SecretName: run + "-secret", File: &swarm.SecretReferenceFileTarget{Name: "s", UID: "0", GID: "0", Mode: 0o400}}}
	withSecret.TaskTemplate.ContainerSpec = &cs
	if err := c.UpdateService(ctx, ref.ID, ref.Version, withSecret); err != nil {
		t.Fatalf("reference secret: %v", err)
	}
	if err := c.RemoveSecret(ctx, sid); err == nil {
		t.Fatal("a secret in use by a service was removed")
	}
	got, _ = c.Services(ctx, own)
	if err := c.UpdateService(ctx, got[0].ID, got[0].Version, upd); err != nil {
		t.Fatalf("drop secret reference: %v", err)
	}
	if err := c.RemoveSecret(ctx, sid); err != nil {
		t.Fatal(err)
	}
	cid, err := c.CreateConfig(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: run + "-config", Labels: own}, Data: []byte("listener 1883\n")})
	if err != nil {
		t.Fatal(err)
	}
	cfgs, _ := c.Configs(ctx, own)
	if len(cfgs) != 1 || string(cfgs[0].Spec.Data) != "listener 1883\n" {
		t.Fatalf("configs by label: %+v", cfgs)
	}
	if err := c.RemoveConfig(ctx, cid); err != nil {
		t.Fatal(err)
	}
	nid, err := c.CreateNetwork(ctx, run+"-net", own)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, run+"-net", own); err == nil {
		t.Error("a second network with the same name was created")
	}
	// Right after creation a manager may list the network before its
	// driver details are filled in: poll briefly.
	var nets []network.Summary
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		nets, err = c.Networks(ctx, own)
		if err == nil && len(nets) == 1 && nets[0].Name == run+"-net" && nets[0].Driver == "overlay" && nets[0].Attachable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("networks by label: %+v %v", nets, err)
		}
	}
	if err := c.RemoveNetwork(ctx, nid); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := c.RemoveService(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	ids = nil
	for _, l := range []map[string]string{own, other} {
		if got, err := c.Services(ctx, l); err != nil || len(got) != 0 {
			t.Fatalf("left over after removal: %+v %v", got, err)
		}
	}
}

func TestFakeKeepsTheContract(t *testing.T) {
	t.Parallel()
	f := NewFake()
	contract(t, f, "swarm-mqtt/mosquitto:local")
	if len(f.Calls()) == 0 {
		t.Fatal("writes were not recorded")
	}
}
