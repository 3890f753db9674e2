package objects

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func noFence() error { return nil }

// A backup the previous commit's operator took (records with no storage
// version) restores, reads as it was, and is migrated by the leader: every
// record in the current version, uid and generation kept, the specs the
// same; a second run writes nothing.
func TestBackupOfThePreviousVersionIsReadAndMigrated(t *testing.T) {
	f, err := os.Open("testdata/backup-c1054f5.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir, addr := t.TempDir(), testutil.FreeAddr(t)
	if n, err := store.RestoreBackup(dir, "restored", addr, f); err != nil || n != 3 {
		t.Fatalf("restore: %d objects, %v", n, err)
	}
	s, err := store.Open(store.Config{DataDir: dir, BindAddr: addr, NodeID: "restored", LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	<-s.CaughtUp()
	x := &Objects{Store: s}

	before, _, err := x.Clusters(nil)
	if err != nil || len(before) != 2 {
		t.Fatalf("clusters of the old backup: %d, %v", len(before), err)
	}
	iot, err := x.Cluster("iot")
	if err != nil {
		t.Fatal(err)
	}
	if *iot.Spec.Replicas != 3 || !*iot.Spec.Sync.Enabled || iot.Spec.Placement.Constraints[0] != "node.labels.mqtt == true" || iot.Labels["team"] != "edge" {
		t.Fatalf("iot read from the old backup: %+v", iot.Spec)
	}
	user, err := x.User("dashboard")
	if err != nil || user.Spec.Cluster != "quickstart" || len(user.Spec.Authorization.ACLs) != 3 {
		t.Fatalf("user read from the old backup: %+v %v", user, err)
	}
	if n := x.Outdated(); n != 3 {
		t.Fatalf("outdated records: %d, want 3", n)
	}

	n, err := x.MigrateStorage(ctx, noFence, nil, time.Millisecond, quiet)
	if err != nil || n != 3 {
		t.Fatalf("migration: %d records, %v", n, err)
	}
	after, _, err := x.Clusters(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.UID != b.UID || a.Generation != b.Generation || !reflect.DeepEqual(a.Spec, b.Spec) || !reflect.DeepEqual(a.Labels, b.Labels) {
			t.Errorf("%s changed by the migration:\nbefore %+v\nafter  %+v", b.Name, b, a)
		}
	}
	for _, k := range []string{KindCluster, KindUser} {
		objs, _ := s.List(k)
		for _, o := range objs {
			if o.Schema != StorageVersion {
				t.Errorf("%s %s still in storage version %d", k, o.Name, o.Schema)
			}
		}
	}
	idx := s.Leader().AppliedIndex
	if n, err := x.MigrateStorage(ctx, noFence, nil, time.Millisecond, quiet); n != 0 || err != nil {
		t.Fatalf("second migration: %d, %v", n, err)
	}
	if now := s.Leader().AppliedIndex; now != idx {
		t.Fatalf("the second migration wrote (index %d -> %d)", idx, now)
	}
}

// A format change: a conversion runs on read and in the migration, which
// keeps the generation; an apply of the same object after it is unchanged.
func TestConversionOnReadAndMigration(t *testing.T) {
	x := open(t)
	// Pretend version 1 called replicas "brokers".
	old := conversions[KindCluster][1]
	conversions[KindCluster][1] = func(spec, status []byte) ([]byte, []byte, error) {
		var m map[string]any
		if err := json.Unmarshal(spec, &m); err != nil {
			return nil, nil, err
		}
		m["replicas"], m["brokers"] = m["brokers"], nil
		delete(m, "brokers")
		b, err := json.Marshal(m)
		return b, status, err
	}
	t.Cleanup(func() { conversions[KindCluster][1] = old })
	c := parse(t, "metadata: {name: iot}\nspec: {replicas: 5}\n")
	spec, _ := json.Marshal(c.Spec)
	var m map[string]any
	_ = json.Unmarshal(spec, &m)
	m["brokers"] = m["replicas"]
	delete(m, "replicas")
	v1, _ := json.Marshal(m)
	if _, _, err := x.Store.Apply(store.ApplyRequest{Kind: KindCluster, Name: "iot", UID: "u1", Spec: v1}); err != nil {
		t.Fatal(err)
	}
	got, err := x.Cluster("iot")
	if err != nil || *got.Spec.Replicas != 5 {
		t.Fatalf("read through the conversion: %+v %v", got, err)
	}
	if n, err := x.MigrateStorage(t.Context(), noFence, nil, time.Millisecond, quiet); n != 1 || err != nil {
		t.Fatalf("migration: %d %v", n, err)
	}
	o := x.Store.Get(KindCluster, "iot")
	if o.Schema != StorageVersion || o.Generation != 1 || strings.Contains(string(o.Spec), "brokers") {
		t.Fatalf("migrated record: schema %d generation %d spec %s", o.Schema, o.Generation, o.Spec)
	}
	if res, _, err := x.Apply(c, nil); err != nil || res != api.Unchanged {
		t.Fatalf("re-apply after the migration: %v %v", res, err)
	}
}

// A record a newer operator wrote is neither read nor overwritten, and the
// migration leaves it alone.
func TestNewerRecordsAreRefused(t *testing.T) {
	x := open(t)
	c := parse(t, "metadata: {name: iot}\nspec: {replicas: 1}\n")
	spec, _ := json.Marshal(c.Spec)
	if _, _, err := x.Store.Apply(store.ApplyRequest{Kind: KindCluster, Name: "iot", UID: "u1", Spec: spec, Schema: StorageVersion + 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Cluster("iot"); !errors.Is(err, ErrNewerStorage) {
		t.Fatalf("read: %v, want ErrNewerStorage", err)
	}
	if _, _, err := x.Apply(c, nil); !errors.Is(err, ErrNewerStorage) {
		t.Fatalf("apply: %v", err)
	}
	if err := x.Annotate(c, "k", "v"); !errors.Is(err, ErrNewerStorage) {
		t.Fatalf("annotate: %v", err)
	}
	if _, err := x.PutStatus("iot", "u1", api.MqttClusterStatus{ObservedGeneration: 1}, nil); !errors.Is(err, ErrNewerStorage) {
		t.Fatalf("status: %v", err)
	}
	if n, err := x.MigrateStorage(t.Context(), noFence, nil, time.Millisecond, quiet); n != 0 || err != nil {
		t.Fatalf("migration touched a newer record: %d %v", n, err)
	}
	if o := x.Store.Get(KindCluster, "iot"); o.Schema != StorageVersion+1 || o.Generation != 1 {
		t.Fatalf("the newer record was changed: %+v", o)
	}
}

// Mid-upgrade, the migration waits until every operator reads the current
// version (an operator from before versions answers 1), writing nothing
// meanwhile; a leadership lost while waiting ends it with nothing written.
func TestMigrationWaitsForEveryOperator(t *testing.T) {
	x := open(t)
	if _, _, err := x.Store.Apply(store.ApplyRequest{Kind: KindUser, Name: "u", UID: "u1", Spec: json.RawMessage(`{"cluster":"c"}`)}); err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	peers := func(context.Context) (map[string]int, error) {
		switch asked.Add(1) {
		case 1:
			return map[string]int{"m1": StorageVersion, "m2": 1}, nil
		case 2:
			return map[string]int{"m1": StorageVersion}, errors.New("m2: connection refused")
		}
		if o := x.Store.Get(KindUser, "u"); o.Schema != 0 {
			t.Errorf("written before every operator read version %d", StorageVersion)
		}
		return map[string]int{"m1": StorageVersion, "m2": StorageVersion}, nil
	}
	n, err := x.MigrateStorage(t.Context(), noFence, peers, time.Millisecond, quiet)
	if err != nil || n != 1 || asked.Load() != 3 {
		t.Fatalf("migration: %d records, %v, asked %d times", n, err, asked.Load())
	}

	if _, _, err := x.Store.Apply(store.ApplyRequest{Kind: KindUser, Name: "v", UID: "u2", Spec: json.RawMessage(`{"cluster":"c"}`)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	behind := func(context.Context) (map[string]int, error) {
		cancel()
		return map[string]int{"m2": 1}, nil
	}
	if n, err := x.MigrateStorage(ctx, noFence, behind, time.Hour, quiet); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("migration with an old operator and leadership lost: %d %v", n, err)
	}
	if o := x.Store.Get(KindUser, "v"); o.Schema != 0 {
		t.Fatal("written while an old operator runs")
	}
}
