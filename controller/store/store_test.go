package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func rawLog(t MessageType, index uint64, msg any) *raft.Log {
	b, err := encode(t, msg)
	if err != nil {
		panic(err)
	}
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: b}
}

func applyOK(t *testing.T, f *FSM, l *raft.Log) *response {
	t.Helper()
	r, ok := f.Apply(l).(*response)
	if !ok || r.Err != nil {
		t.Fatalf("apply index %d: %+v", l.Index, r)
	}
	return r
}

func u64(v uint64) *uint64 { return &v }

func TestFSMGenerationAndVersions(t *testing.T) {
	t.Parallel()
	f := NewFSM(nil)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := applyOK(t, f, rawLog(ApplyObjectType, 5, ApplyRequest{Kind: "K", Name: "a", UID: "u1", Now: now, Spec: json.RawMessage(`{"r":1}`)}))
	if r.Result != Created || r.Object.Generation != 1 || r.Object.ModifyIndex != 5 || r.Object.CreateIndex != 5 || r.Object.UID != "u1" || !r.Object.Created.Equal(now) {
		t.Fatalf("create: %+v %+v", r.Result, r.Object)
	}
	// Same spec, new label: configured, generation stays.
	r = applyOK(t, f, rawLog(ApplyObjectType, 6, ApplyRequest{Kind: "K", Name: "a", UID: "other", Labels: map[string]string{"x": "y"}, Spec: json.RawMessage(`{"r":1}`)}))
	if r.Result != Configured || r.Object.Generation != 1 || r.Object.ModifyIndex != 6 || r.Object.UID != "u1" {
		t.Fatalf("label change: %+v %+v", r.Result, r.Object)
	}
	// Status never bumps generation.
	r = applyOK(t, f, rawLog(UpdateStatusType, 7, StatusRequest{Kind: "K", Name: "a", Status: json.RawMessage(`{"ok":true}`)}))
	if r.Object.Generation != 1 || r.Object.ModifyIndex != 7 || string(r.Object.Spec) != `{"r":1}` {
		t.Fatalf("status: %+v", r.Object)
	}
	// Spec change bumps generation and keeps status.
	r = applyOK(t, f, rawLog(ApplyObjectType, 8, ApplyRequest{Kind: "K", Name: "a", Labels: map[string]string{"x": "y"}, Spec: json.RawMessage(`{"r":2}`)}))
	if r.Result != Configured || r.Object.Generation != 2 || string(r.Object.Status) != `{"ok":true}` {
		t.Fatalf("spec change: %+v", r.Object)
	}
	// Identical: unchanged, index does not move.
	r = applyOK(t, f, rawLog(ApplyObjectType, 9, ApplyRequest{Kind: "K", Name: "a", Labels: map[string]string{"x": "y"}, Spec: json.RawMessage(`{"r":2}`)}))
	if r.Result != Unchanged || r.Object.ModifyIndex != 8 || f.Index() != 8 {
		t.Fatalf("unchanged: %+v index %d", r.Object, f.Index())
	}
}

func TestFSMConflicts(t *testing.T) {
	t.Parallel()
	f := NewFSM(nil)
	applyOK(t, f, rawLog(ApplyObjectType, 1, ApplyRequest{Kind: "K", Name: "a", Spec: json.RawMessage(`1`)}))
	cases := map[string]*raft.Log{
		"stale apply":    rawLog(ApplyObjectType, 2, ApplyRequest{Kind: "K", Name: "a", Spec: json.RawMessage(`2`), ExpectVersion: u64(99)}),
		"create exists":  rawLog(ApplyObjectType, 3, ApplyRequest{Kind: "K", Name: "a", Spec: json.RawMessage(`2`), ExpectVersion: u64(0)}),
		"stale delete":   rawLog(DeleteObjectType, 4, DeleteRequest{Kind: "K", Name: "a", ExpectVersion: u64(7)}),
		"stale status":   rawLog(UpdateStatusType, 5, StatusRequest{Kind: "K", Name: "a", Status: json.RawMessage(`1`), ExpectVersion: u64(7)}),
		"update missing": rawLog(ApplyObjectType, 6, ApplyRequest{Kind: "K", Name: "b", Spec: json.RawMessage(`2`), ExpectVersion: u64(1)}),
	}
	for name, l := range cases {
		r := f.Apply(l).(*response)
		if !errors.Is(r.Err, ErrConflict) {
			t.Errorf("%s: err = %v, want conflict", name, r.Err)
		}
	}
	for name, l := range map[string]*raft.Log{
		"delete missing": rawLog(DeleteObjectType, 7, DeleteRequest{Kind: "K", Name: "zz"}),
		"status missing": rawLog(UpdateStatusType, 8, StatusRequest{Kind: "K", Name: "zz", Status: json.RawMessage(`1`)}),
		"status old uid": rawLog(UpdateStatusType, 9, StatusRequest{Kind: "K", Name: "a", ExpectUID: "gone", Status: json.RawMessage(`1`)}),
	} {
		if r := f.Apply(l).(*response); !errors.Is(r.Err, ErrNotFound) {
			t.Errorf("%s: err = %v, want not found", name, r.Err)
		}
	}
	if f.Index() != 1 {
		t.Fatalf("a failed write changed state: index %d", f.Index())
	}
	r := applyOK(t, f, rawLog(DeleteObjectType, 10, DeleteRequest{Kind: "K", Name: "a", ExpectVersion: u64(1)}))
	if r.Result != Deleted || f.Get("K", "a") != nil {
		t.Fatal("delete with the right version failed")
	}
}

func TestFSMUnknownMessageTypes(t *testing.T) {
	t.Parallel()
	f := NewFSM(nil)
	if got := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{byte(IgnoreUnknownTypeFlag | 77), '{', '}'}}); got != nil {
		t.Fatalf("optional unknown message: %v", got)
	}
	if f.Skipped() != 0 {
		t.Fatal("an optional unknown message was counted as skipped")
	}
}

// TestFSMSkipsWhatItCannotApply: an entry of an unknown required type, or
// whose payload does not decode, is skipped by every replica alike (no
// panic: the entry would stay in the log and stop the operator at every
// restart), counted, and leaves the state as it was.
func TestFSMSkipsWhatItCannotApply(t *testing.T) {
	t.Parallel()
	bad := map[string][]byte{
		"unknown required type":        {77, '{', '}'},
		"apply payload not JSON":       append([]byte{byte(ApplyObjectType)}, "not json"...),
		"apply payload wrong types":    append([]byte{byte(ApplyObjectType)}, `{"kind": 7, "name": []}`...),
		"apply payload with no name":   append([]byte{byte(ApplyObjectType)}, `{"kind": "K"}`...),
		"delete payload truncated":     append([]byte{byte(DeleteObjectType)}, `{"kind": "K", "na`...),
		"status payload not an object": append([]byte{byte(UpdateStatusType)}, `"x"`...),
	}
	for name, data := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			replicas := []*FSM{NewFSM(nil), NewFSM(nil)}
			for _, f := range replicas {
				applyOK(t, f, rawLog(ApplyObjectType, 1, ApplyRequest{Kind: "K", Name: "a", UID: "u", Spec: []byte(`{"x":1}`)}))
				got := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data})
				r, ok := got.(*response)
				if !ok || !errors.Is(r.Err, ErrSkipped) {
					t.Fatalf("response %#v, want ErrSkipped", got)
				}
				if strings.Contains(r.Err.Error(), string(data[1:])) && len(data) > 4 {
					t.Fatalf("the skip error carries the payload: %v", r.Err)
				}
				if f.Skipped() != 1 || f.Applied() != 2 {
					t.Fatalf("skipped %d applied %d, want 1 and 2", f.Skipped(), f.Applied())
				}
				// The next entry applies as usual.
				applyOK(t, f, rawLog(ApplyObjectType, 3, ApplyRequest{Kind: "K", Name: "b", UID: "v", Spec: []byte(`{}`)}))
			}
			a, _ := replicas[0].List("K")
			b, _ := replicas[1].List("K")
			if len(a) != 2 || len(b) != 2 || string(a[0].Spec) != `{"x":1}` || !reflect.DeepEqual(a, b) {
				t.Fatalf("replicas differ or state changed: %v / %v", a, b)
			}
		})
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }
func (m *memSink) Close() error  { return nil }

// testSnapshotRestore: Snapshot, Persist, Restore into a new FSM, compare.
func TestFSMSnapshotRestore(t *testing.T) {
	t.Parallel()
	f := NewFSM(nil)
	for i := 1; i <= 50; i++ {
		applyOK(t, f, rawLog(ApplyObjectType, uint64(i), ApplyRequest{Kind: "K", Name: fmt.Sprintf("o%02d", i), UID: fmt.Sprint(i), Labels: map[string]string{"i": fmt.Sprint(i)}, Spec: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}))
	}
	applyOK(t, f, rawLog(UpdateStatusType, 51, StatusRequest{Kind: "K", Name: "o07", Status: json.RawMessage(`{"ready":true}`)}))
	applyOK(t, f, rawLog(DeleteObjectType, 52, DeleteRequest{Kind: "K", Name: "o09"}))
	applyOK(t, f, rawLog(ApplyObjectType, 53, ApplyRequest{Kind: "Other", Name: "o01", Spec: json.RawMessage(`{}`)}))

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// A write after the snapshot must not leak into it.
	applyOK(t, f, rawLog(ApplyObjectType, 54, ApplyRequest{Kind: "K", Name: "late", Spec: json.RawMessage(`{}`)}))
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	f2 := NewFSM(nil)
	if err := f2.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if f2.Index() != 53 {
		t.Fatalf("restored index %d, want 53", f2.Index())
	}
	want, _ := f.List("K")
	got, _ := f2.List("K")
	if len(got) != 49 || len(want) != 50 {
		t.Fatalf("restored %d objects of K (live has %d)", len(got), len(want))
	}
	for _, o := range got {
		w := f.Get("K", o.Name)
		if !reflect.DeepEqual(o, w) {
			t.Fatalf("object %s differs after restore:\n%+v\n%+v", o.Name, o, w)
		}
	}
	if f2.Get("K", "late") != nil || f2.Get("Other", "o01") == nil {
		t.Fatal("snapshot is not a point-in-time copy")
	}
}

func openTestStore(t *testing.T, dir, addr string) *Store {
	t.Helper()
	s, err := Open(Config{DataDir: dir, BindAddr: addr, Bootstrap: true, LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := testutil.FreeAddr(t)
	s := openTestStore(t, dir, addr)
	id := s.NodeID()
	for i := 0; i < 20; i++ {
		if _, _, err := s.Apply(ApplyRequest{Kind: "K", Name: fmt.Sprintf("o%d", i), Spec: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
		if i == 9 {
			if err := s.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, err := s.UpdateStatus(StatusRequest{Kind: "K", Name: "o3", Status: json.RawMessage(`{"ok":1}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(DeleteRequest{Kind: "K", Name: "o4"}); err != nil {
		t.Fatal(err)
	}
	before, beforeIdx := s.List("K")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openTestStore(t, dir, addr)
	defer s2.Close()
	if s2.NodeID() != id {
		t.Fatalf("node id changed across restart: %s -> %s", id, s2.NodeID())
	}
	// Once CaughtUp says so, the log found at start is in the FSM.
	select {
	case <-s2.CaughtUp():
	case <-time.After(10 * time.Second):
		t.Fatal("the store never caught up with its log")
	}
	after, afterIdx := s2.List("K")
	if afterIdx != beforeIdx || !reflect.DeepEqual(before, after) {
		t.Fatalf("objects differ after restart (index %d -> %d)\nbefore %v\nafter  %v", beforeIdx, afterIdx, before, after)
	}
	// An unchanged apply after restart writes nothing.
	res, _, err := s2.Apply(ApplyRequest{Kind: "K", Name: "o1", Spec: json.RawMessage(`{"i":1}`)})
	if err != nil || res != Unchanged || s2.fsm.Index() != beforeIdx {
		t.Fatalf("re-apply after restart: %v %v index %d", res, err, s2.fsm.Index())
	}
	info := s2.Leader()
	if !info.IsLeader || info.LeaderID != id || info.Term == 0 {
		t.Fatalf("leader info %+v", info)
	}
	peers, err := s2.Peers()
	if err != nil || len(peers) != 1 || peers[0].ID != id || !peers[0].Leader || peers[0].Suffrage != "Voter" {
		t.Fatalf("peers %+v %v", peers, err)
	}
}

// TestFSMChangesSayWhatChanged: each change names its object and whether
// it was more than a status write; a watcher too far behind is told the
// list is incomplete.
func TestFSMChangesSayWhatChanged(t *testing.T) {
	t.Parallel()
	f := NewFSM(nil)
	applyOK(t, f, rawLog(ApplyObjectType, 3, ApplyRequest{Kind: "K", Name: "a", Spec: json.RawMessage(`{"r":1}`)}))
	applyOK(t, f, rawLog(UpdateStatusType, 4, StatusRequest{Kind: "K", Name: "a", Status: json.RawMessage(`{"ok":true}`)}))
	applyOK(t, f, rawLog(ApplyObjectType, 5, ApplyRequest{Kind: "K", Name: "a", Spec: json.RawMessage(`{"r":1}`)})) // unchanged
	applyOK(t, f, rawLog(ApplyObjectType, 6, ApplyRequest{Kind: "E", Name: "b", Spec: json.RawMessage(`{}`)}))
	applyOK(t, f, rawLog(DeleteObjectType, 7, DeleteRequest{Kind: "K", Name: "a"}))
	got, now, complete := f.Changes(3)
	want := []Change{{4, "K", "a", false}, {6, "E", "b", true}, {7, "K", "a", true}}
	if !complete || now != 7 || !slices.Equal(got, want) {
		t.Fatalf("changes since 3: %v (now %d, complete %v), want %v", got, now, complete, want)
	}
	if got, _, _ := f.Changes(7); len(got) != 0 {
		t.Fatalf("changes since now: %v", got)
	}
	for i := uint64(0); i < changeLogSize+1; i++ {
		applyOK(t, f, rawLog(UpdateStatusType, 10+i, StatusRequest{Kind: "E", Name: "b", Status: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}))
	}
	if _, _, complete := f.Changes(7); complete {
		t.Fatal("a watcher behind the remembered changes was not told")
	}
	if got, _, complete := f.Changes(10 + changeLogSize - 1); !complete || len(got) != 1 {
		t.Fatalf("the last change: %v %v", got, complete)
	}
}

// Storage versions: an entry from before them (no schema field) stores
// schema 0; a migration rewrites the spec and schema with the generation
// kept and wakes no spec watcher; an apply that only changes the schema is
// a change.
func TestFSMStorageSchemaAndMigration(t *testing.T) {
	f := NewFSM(nil)
	old := []byte(`{"kind":"K","name":"a","uid":"u","spec":{"x":1}}`)
	r := applyOK(t, f, &raft.Log{Index: 1, Type: raft.LogCommand, Data: append([]byte{byte(ApplyObjectType)}, old...)})
	if r.Object.Schema != 0 || r.Object.Generation != 1 {
		t.Fatalf("an entry from before schemas: %+v", r.Object)
	}
	r = applyOK(t, f, rawLog(ApplyObjectType, 2, ApplyRequest{Kind: "K", Name: "a", Spec: json.RawMessage(`{"y":1}`), Schema: 2, Migration: true}))
	if r.Result != Configured || r.Object.Schema != 2 || r.Object.Generation != 1 || string(r.Object.Spec) != `{"y":1}` {
		t.Fatalf("migration: %v %+v", r.Result, r.Object)
	}
	changes, _, _ := f.Changes(1)
	if len(changes) != 1 || changes[0].Spec {
		t.Fatalf("a migration woke spec watchers: %+v", changes)
	}
	if r = applyOK(t, f, rawLog(ApplyObjectType, 3, ApplyRequest{Kind: "K", Name: "a", Spec: json.RawMessage(`{"y":1}`), Schema: 2})); r.Result != Unchanged {
		t.Fatalf("same spec and schema: %v", r.Result)
	}
	if r = applyOK(t, f, rawLog(ApplyObjectType, 4, ApplyRequest{Kind: "K", Name: "a", Spec: json.RawMessage(`{"y":1}`), Schema: 3})); r.Result != Configured || r.Object.Generation != 1 || r.Object.Schema != 3 {
		t.Fatalf("schema-only change: %v %+v", r.Result, r.Object)
	}
	if r = applyOK(t, f, rawLog(ApplyObjectType, 5, ApplyRequest{Kind: "K", Name: "a", Spec: json.RawMessage(`{"y":2}`), Schema: 3})); r.Object.Generation != 2 {
		t.Fatalf("a real spec change kept the generation: %+v", r.Object)
	}
}
