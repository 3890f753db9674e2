package objects

import (
	"errors"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store/storetest"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

func open(t *testing.T) *Objects { return &Objects{Store: storetest.Open(t)} }

func parse(t *testing.T, doc string) *api.MqttCluster {
	t.Helper()
	c, err := api.Parse([]byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\n"+doc), api.BuiltinDefaults())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Apply and Preview agree on what an apply does; the operator's request
// annotations survive a re-apply of a file that does not carry them.
func TestApplyPreviewAndRequestAnnotations(t *testing.T) {
	x := open(t)
	c := parse(t, "metadata: {name: iot, labels: {team: a}}\nspec: {replicas: 1}\n")
	if res, out, stored, err := x.Preview(c); err != nil || res != api.Created || stored != nil || out.Generation != 1 {
		t.Fatalf("preview of a new cluster: %v %v %v %v", res, out, stored, err)
	}
	if res, out, err := x.Apply(c, nil); err != nil || res != api.Created || out.Generation != 1 || out.UID == "" {
		t.Fatalf("apply: %v %+v %v", res, out, err)
	}
	for _, tc := range []struct {
		doc string
		res api.ApplyResult
		gen int64
	}{
		{"metadata: {name: iot, labels: {team: a}}\nspec: {replicas: 1}\n", api.Unchanged, 1},
		{"metadata: {name: iot, labels: {team: b}}\nspec: {replicas: 1}\n", api.Configured, 1},
		{"metadata: {name: iot, labels: {team: a}}\nspec: {replicas: 3}\n", api.Configured, 2},
	} {
		res, out, stored, err := x.Preview(parse(t, tc.doc))
		if err != nil || res != tc.res || out.Generation != tc.gen || stored == nil {
			t.Errorf("preview of %q: %v generation %d (%v); want %v, %d", tc.doc, res, out.Generation, err, tc.res, tc.gen)
		}
	}
	cur, _ := x.Cluster("iot")
	if err := x.Annotate(cur, credentials.RenewAnnotation, "2026-12-01T00:00:00Z"); err != nil {
		t.Fatal(err)
	}
	if res, _, _, _ := x.Preview(c); res != api.Unchanged {
		t.Fatalf("re-applying the file would undo the renewal request (%v)", res)
	}
	res, out, err := x.Apply(c, nil)
	if err != nil || res != api.Unchanged || out.Annotations[credentials.RenewAnnotation] == "" {
		t.Fatalf("re-apply: %v %v %v", res, out.Annotations, err)
	}
	// A stale resourceVersion is a conflict; a missing cluster not found.
	stale := uint64(1)
	if _, _, err := x.Apply(parse(t, "metadata: {name: iot}\nspec: {replicas: 2}\n"), &stale); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale apply: %v", err)
	}
	if _, err := x.Cluster("nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if list, _, err := x.Clusters(labels.SelectorFromSet(labels.Set{"team": "b"})); err != nil || len(list) != 0 {
		t.Fatalf("selector: %v %v", list, err)
	}
}

// WriteStatus writes only a changed status, and never onto a cluster
// deleted and created again since the pass read it.
func TestWriteStatus(t *testing.T) {
	x := open(t)
	_, c, err := x.Apply(parse(t, "metadata: {name: iot}\nspec: {replicas: 1}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st := api.MqttClusterStatus{Hub: "iot-broker-0", ObservedGeneration: 1}
	if err := x.WriteStatus(c, st); err != nil {
		t.Fatal(err)
	}
	before := x.Store.Get(KindCluster, "iot").ModifyIndex
	if err := x.WriteStatus(c, st); err != nil || x.Store.Get(KindCluster, "iot").ModifyIndex != before {
		t.Fatalf("an unchanged status was written (%v)", err)
	}
	old := *c
	old.UID = types.UID("another")
	if err := x.WriteStatus(&old, api.MqttClusterStatus{Hub: "stale"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := x.Cluster("iot"); got.Status.Hub != "iot-broker-0" {
		t.Fatalf("a status for another incarnation was written: %q", got.Status.Hub)
	}
	if err := x.Degrade("iot", "InvalidSpec", "bad", time.Now()); err != nil {
		t.Fatal(err)
	}
	if got, _ := x.Cluster("iot"); got.Status.Hub != "iot-broker-0" || len(got.Status.Conditions) != 2 {
		t.Fatalf("degrade: %+v", got.Status)
	}
}

// Events merge repeats, keep the newest MaxEvents, and go with Forget;
// credentials round-trip sealed.
func TestEventsAndCredentials(t *testing.T) {
	x := open(t)
	sealer, err := credentials.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	x.Sealer = sealer
	var evs []api.Event
	for i := 0; i < MaxEvents+5; i++ {
		evs = append(evs, api.Event{Type: api.EventNormal, Reason: "R", Message: fmt.Sprint(i), Count: 1})
	}
	evs = append(evs, api.Event{Type: api.EventNormal, Reason: "R", Message: "104", Count: 2})
	if err := x.RecordEvents("iot", evs); err != nil {
		t.Fatal(err)
	}
	list, err := x.Events("iot")
	if err != nil || len(list.Items) != MaxEvents || list.Items[MaxEvents-1].Message != "104" || list.Items[MaxEvents-1].Count != 3 {
		t.Fatalf("events: %d, last %+v (%v)", len(list.Items), list.Items[len(list.Items)-1], err)
	}
	if m, err := x.Credentials("iot"); m != nil || err != nil {
		t.Fatalf("credentials before any: %v %v", m, err)
	}
	if err := x.SaveCredentials("iot", credentials.Material{Username: "u", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	if !credentials.IsSealed(x.Store.Get(KindCredentials, "iot").Spec) {
		t.Fatal("credentials stored in clear")
	}
	if m, err := x.Credentials("iot"); err != nil || m.Password != "p" {
		t.Fatalf("credentials: %v %v", m, err)
	}
	if err := x.Forget("iot"); err != nil {
		t.Fatal(err)
	}
	if x.Store.Get(KindEvents, "iot") != nil || x.Store.Get(KindCredentials, "iot") != nil {
		t.Fatal("records left after Forget")
	}
}

// racing writes a status of the cluster between annotate's read and its
// write, as the leader does while a verb (renew, approve) is served.
type racing struct {
	Store
	x     *Objects
	races int
}

func (r *racing) Apply(req store.ApplyRequest) (store.Result, *store.Object, error) {
	if r.races > 0 && req.ExpectVersion != nil {
		r.races--
		c, _ := r.x.Cluster(req.Name)
		st := c.Status
		st.Hub = fmt.Sprintf("iot-broker-%d", r.races)
		_ = r.x.WriteStatus(c, st)
	}
	return r.Store.Apply(req)
}

// A verb's annotation survives status writes racing it (a soak saw renew
// fail with a conflict): it is retried on a fresh read, a bounded number
// of times, and never writes an old spec over a newer one.
func TestAnnotateRetriesOnConflict(t *testing.T) {
	x := open(t)
	if _, _, err := x.Apply(parse(t, "metadata: {name: iot}\nspec: {replicas: 1}\n"), nil); err != nil {
		t.Fatal(err)
	}
	r := &racing{Store: x.Store, x: x, races: annotateTries - 1}
	y := &Objects{Store: r}
	if err := y.Annotate(&api.MqttCluster{ObjectMeta: metav1.ObjectMeta{Name: "iot"}}, api.ApprovedGenerationAnnotation, "now"); err != nil {
		t.Fatalf("annotate with %d racing status writes: %v", annotateTries-1, err)
	}
	if got, _ := x.Cluster("iot"); got.Annotations[api.ApprovedGenerationAnnotation] != "now" || got.Generation != 1 {
		t.Fatalf("annotations %v, generation %d", got.Annotations, got.Generation)
	}
	r.races = annotateTries
	if err := y.Annotate(&api.MqttCluster{ObjectMeta: metav1.ObjectMeta{Name: "iot"}}, api.ApprovedGenerationAnnotation, "later"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("annotate racing every try: %v, want a conflict in the end", err)
	}
}
