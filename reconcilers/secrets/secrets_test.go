package secrets

import (
	"context"
	"slices"
	"testing"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

func TestEnsureIsVersionedAndPruneSparesUsedOnes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := swarm.NewFake()
	r := &Reconciler{Swarm: f, OperatorID: "op"}
	v1, created, err := r.Ensure(ctx, "iot", ComponentTLS, []byte("one"))
	if err != nil || !created {
		t.Fatal(created, err)
	}
	f.ResetCalls()
	if again, created, err := r.Ensure(ctx, "iot", ComponentTLS, []byte("one")); err != nil || created || again.ID != v1.ID || len(f.Calls()) != 0 {
		t.Fatalf("same content made a write: %v %v %v", created, err, f.Calls())
	}
	v2, created, _ := r.Ensure(ctx, "iot", ComponentTLS, []byte("two"))
	if !created || v2.Spec.Name == v1.Spec.Name {
		t.Fatal("a new content did not make a new secret")
	}
	// v1 is still used by a service: pruning keeps it.
	svc := dswarm.ServiceSpec{Annotations: dswarm.Annotations{Name: "iot-lb", Labels: swarm.Owned("op", "iot")},
		TaskTemplate: dswarm.TaskSpec{ContainerSpec: &dswarm.ContainerSpec{Secrets: []*dswarm.SecretReference{{SecretID: v1.ID, SecretName: v1.Spec.Name}}}}}
	id, _ := f.CreateService(ctx, svc)
	svcs, _ := f.Services(ctx, nil)
	if removed, err := r.Prune(ctx, "iot", map[string]bool{v2.Spec.Name: true}, svcs); err != nil || len(removed) != 0 {
		t.Fatalf("pruned a used secret: %v %v", removed, err)
	}
	// Pointed at v2: v1 goes, v2 stays, other clusters' secrets untouched.
	other, _, _ := r.Ensure(ctx, "other", ComponentTLS, []byte("one"))
	svcs, _ = f.Services(ctx, nil)
	svc.TaskTemplate.ContainerSpec.Secrets[0] = &dswarm.SecretReference{SecretID: v2.ID, SecretName: v2.Spec.Name}
	if err := f.UpdateService(ctx, id, svcs[0].Version, svc); err != nil {
		t.Fatal(err)
	}
	svcs, _ = f.Services(ctx, nil)
	removed, err := r.Prune(ctx, "iot", map[string]bool{v2.Spec.Name: true}, svcs)
	if err != nil || !slices.Equal(removed, []string{v1.Spec.Name}) {
		t.Fatalf("prune: %v %v", removed, err)
	}
	left, _ := f.Secrets(ctx, nil)
	var names []string
	for _, s := range left {
		names = append(names, s.Spec.Name)
	}
	slices.Sort(names)
	want := []string{other.Spec.Name, v2.Spec.Name}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("left %v, want %v", names, want)
	}
}
