package network

import (
	"context"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

func TestNetworkLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := swarm.NewFake()
	r := &Reconciler{Swarm: f, OperatorID: "op1"}
	created, err := r.Reconcile(ctx, "iot")
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	f.ResetCalls()
	created, err = r.Reconcile(ctx, "iot")
	if err != nil || created || len(f.Calls()) != 0 {
		t.Fatalf("second pass: %v %v %v", created, err, f.Calls())
	}
	// Another operator's or a user's network of the same name is not
	// adopted: creating over it fails and nothing of it is removed.
	if _, err := f.CreateNetwork(ctx, "edge-net", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, "edge"); err == nil {
		t.Fatal("adopted a foreign network")
	}
	if err := r.Delete(ctx, "edge"); err != nil {
		t.Fatal(err)
	}
	if nets, _ := f.Networks(ctx, nil); len(nets) != 2 {
		t.Fatalf("delete of a cluster touched a foreign network: %+v", nets)
	}
	if err := r.Delete(ctx, "iot"); err != nil {
		t.Fatal(err)
	}
	if nets, _ := f.Networks(ctx, swarm.Owned("op1", "iot")); len(nets) != 0 {
		t.Fatalf("network left: %+v", nets)
	}
}
