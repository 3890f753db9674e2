package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

func newReconciler(f *swarm.Fake) *Reconciler {
	return &Reconciler{Swarm: f, OperatorID: "op1", Network: func(c string) string { return c + "-net" }}
}

// inputsFor makes the internal password file and every possible broker's
// bridge secret (real content: the e2e test runs the brokers), once per
// reconciler (created only when missing).
func inputsFor(t testing.TB, r *Reconciler) Inputs {
	t.Helper()
	ctx := context.Background()
	line, err := credentials.PasswordLine(BridgeUser, "bridge-pw")
	if err != nil {
		t.Fatal(err)
	}
	content := map[string][]byte{r.OperatorID + "-internal": []byte(line + "\n")}
	for i := 1; i < 15; i++ {
		b, err := RenderBridge("e2ebrk", i, "bridge-pw", Options{})
		if err != nil {
			t.Fatal(err)
		}
		content[fmt.Sprintf("%s-bridge-%d", r.OperatorID, i)] = b
	}
	get := func(name string) *dswarm.Secret {
		have, err := r.Swarm.Secrets(ctx, map[string]string{swarm.LabelOwner: r.OperatorID, "test": "inputs"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range have {
			if s.Spec.Name == name {
				return &s
			}
		}
		spec := dswarm.SecretSpec{Annotations: dswarm.Annotations{Name: name, Labels: map[string]string{swarm.LabelOwner: r.OperatorID, "test": "inputs"}}, Data: content[name]}
		id, err := r.Swarm.(secretCreator).CreateSecret(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		return &dswarm.Secret{ID: id, Spec: spec}
	}
	in := Inputs{Internal: get(r.OperatorID + "-internal"), Bridges: map[int]*dswarm.Secret{}}
	for i := 1; i < 15; i++ {
		in.Bridges[i] = get(fmt.Sprintf("%s-bridge-%d", r.OperatorID, i))
	}
	if f, ok := r.Swarm.(*swarm.Fake); ok {
		f.ResetCalls()
	}
	return in
}

type secretCreator interface {
	CreateSecret(ctx context.Context, spec dswarm.SecretSpec) (string, error)
}

func withSecret(t *testing.T, f *swarm.Fake, name string) {
	t.Helper()
	if _, err := f.CreateSecret(context.Background(), dswarm.SecretSpec{Annotations: dswarm.Annotations{Name: name}, Data: []byte("alice:hash")}); err != nil {
		t.Fatal(err)
	}
	f.ResetCalls()
}

func names(t *testing.T, f *swarm.Fake) []string {
	t.Helper()
	svcs, _ := f.Services(context.Background(), swarm.Owned("op1", "iot"))
	var out []string
	for _, s := range svcs {
		out = append(out, s.Spec.Name)
	}
	slices.Sort(out)
	return out
}

func TestCreateThenNoWrites(t *testing.T) {
	t.Parallel()
	f := swarm.NewFake()
	withSecret(t, f, "iot-passwd")
	r := newReconciler(f)
	c := cluster(t, "spec: {replicas: 3, auth: {passwordFileSecret: iot-passwd}, broker: {resources: {memory: 256Mi, cpus: \"0.5\"}}, placement: {constraints: [\"node.labels.mqtt == true\"]}}\n")
	out, err := r.Reconcile(context.Background(), c, inputsFor(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Created) != 6 || len(out.Updated)+len(out.Removed) != 0 {
		t.Fatalf("first pass: %+v", out)
	}
	if got := names(t, f); !slices.Equal(got, []string{"iot-broker-0", "iot-broker-1", "iot-broker-2"}) {
		t.Fatalf("services %v", got)
	}
	svcs, _ := f.Services(context.Background(), map[string]string{LabelIndex: "1"})
	s := svcs[0].Spec
	cs := s.TaskTemplate.ContainerSpec
	checks := map[string]bool{
		"one replica":    *s.Mode.Replicated.Replicas == 1,
		"dnsrr":          s.EndpointSpec.Mode == dswarm.ResolutionModeDNSRR,
		"image":          cs.Image == "eclipse-mosquitto:2.0",
		"config mounted": len(cs.Configs) == 1 && cs.Configs[0].File.Name == ConfigPath,
		"secrets mounted": len(cs.Secrets) == 3 && cs.Secrets[0].SecretName == "iot-passwd" &&
			cs.Secrets[1].File.Name == "mosquitto-internal-passwd" && cs.Secrets[2].File.Name == BridgeFileName && cs.Secrets[2].SecretName == "op1-bridge-1",
		"data volume":  len(cs.Mounts) == 1 && cs.Mounts[0].Source == "iot-broker-1-data" && cs.Mounts[0].Target == DataDir,
		"memory limit": s.TaskTemplate.Resources.Limits.MemoryBytes == 256<<20,
		"cpu limit":    s.TaskTemplate.Resources.Limits.NanoCPUs == 500_000_000,
		"constraint":   slices.Equal(s.TaskTemplate.Placement.Constraints, []string{"node.labels.mqtt == true"}),
		"network":      s.TaskTemplate.Networks[0].Target == "iot-net",
		"owner label":  s.Labels[swarm.LabelOwner] == "op1" && s.Labels[swarm.LabelCluster] == "iot",
	}
	for name, ok := range checks {
		if !ok {
			t.Errorf("%s: %+v", name, s)
		}
	}
	f.ResetCalls()
	out, err = r.Reconcile(context.Background(), c, inputsFor(t, r))
	if err != nil || out.Changed() || len(f.Calls()) != 0 {
		t.Fatalf("second pass wrote: %+v %v calls=%v", out, err, f.Calls())
	}
}

func TestScaleCreatesAndRemovesExactly(t *testing.T) {
	t.Parallel()
	f := swarm.NewFake()
	r := newReconciler(f)
	anon := "auth: {allowAnonymous: true}"
	if _, err := r.Reconcile(context.Background(), cluster(t, "spec: {replicas: 3, "+anon+"}\n"), inputsFor(t, r)); err != nil {
		t.Fatal(err)
	}
	f.ResetCalls()
	out, err := r.Reconcile(context.Background(), cluster(t, "spec: {replicas: 5, "+anon+"}\n"), inputsFor(t, r))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range f.Calls() {
		if c.Method == "UpdateService" || c.Method == "RemoveService" {
			t.Errorf("scale up touched a broker that stays: %+v", c)
		}
	}
	if !slices.Contains(out.Created, "iot-broker-3") || !slices.Contains(out.Created, "iot-broker-4") || len(names(t, f)) != 5 {
		t.Fatalf("scale up: %+v %v", out, names(t, f))
	}
	f.ResetCalls()
	out, err = r.Reconcile(context.Background(), cluster(t, "spec: {replicas: 2, "+anon+"}\n"), inputsFor(t, r))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, f); !slices.Equal(got, []string{"iot-broker-0", "iot-broker-1"}) {
		t.Fatalf("scale down left %v (%+v)", got, out)
	}
	for _, c := range f.Calls() {
		if c.Method == "UpdateService" || c.Method == "CreateService" {
			t.Errorf("scale down touched a broker that stays: %+v", c)
		}
	}
	confs, _ := f.Configs(context.Background(), swarm.Owned("op1", "iot"))
	if len(confs) != 2 {
		t.Fatalf("configs of removed brokers not pruned: %d left", len(confs))
	}
}

func TestConfigChangeIsANewConfigAndTheOldIsPruned(t *testing.T) {
	t.Parallel()
	f := swarm.NewFake()
	r := newReconciler(f)
	if _, err := r.Reconcile(context.Background(), cluster(t, "spec: {replicas: 1, auth: {allowAnonymous: true}}\n"), inputsFor(t, r)); err != nil {
		t.Fatal(err)
	}
	before, _ := f.Configs(context.Background(), swarm.Owned("op1", "iot"))
	out, err := r.Reconcile(context.Background(), cluster(t, "spec: {replicas: 1, auth: {allowAnonymous: true}, broker: {persistence: {autosaveInterval: 5s}}}\n"), inputsFor(t, r))
	if err != nil {
		t.Fatal(err)
	}
	after, _ := f.Configs(context.Background(), swarm.Owned("op1", "iot"))
	if len(after) != 1 || after[0].Spec.Name == before[0].Spec.Name || !slices.Equal(out.Updated, []string{"iot-broker-0"}) {
		t.Fatalf("config change: before %v after %v out %+v", before[0].Spec.Name, after, out)
	}
}

func TestMissingSecretAndForeignObjects(t *testing.T) {
	t.Parallel()
	f := swarm.NewFake()
	r := newReconciler(f)
	_, err := r.Reconcile(context.Background(), cluster(t, "spec: {auth: {passwordFileSecret: nope}}\n"), inputsFor(t, r))
	if !errors.Is(err, ErrMissingSecret) || len(f.Calls()) != 0 {
		t.Fatalf("missing secret: %v, calls %v", err, f.Calls())
	}
	// A service of the same name that the operator does not own is never
	// updated or removed; creating over it fails loudly.
	if _, err := f.CreateService(context.Background(), dswarm.ServiceSpec{Annotations: dswarm.Annotations{Name: "iot-broker-0"}}); err != nil {
		t.Fatal(err)
	}
	f.ResetCalls()
	_, err = r.Reconcile(context.Background(), cluster(t, "spec: {replicas: 1, auth: {allowAnonymous: true}}\n"), inputsFor(t, r))
	if err == nil {
		t.Fatal("no error creating over a foreign service")
	}
	for _, c := range f.Calls() {
		if c.Method == "UpdateService" || c.Method == "RemoveService" {
			t.Fatalf("touched a foreign service: %+v", c)
		}
	}
}
