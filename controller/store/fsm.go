package store

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// snapshotVersion is written first in every snapshot.
const snapshotVersion = 1

type key struct{ kind, name string }

// FSM is the raft state machine: every stored object, by kind and name.
type FSM struct {
	log *slog.Logger

	mu      sync.RWMutex
	objects map[key]*Object
	index   uint64 // last applied raft index that changed state
	watch   chan struct{}
	// changes are the last changeLogSize changes of state; complete
	// from an index at or after trimmed (see Changes).
	changes []Change
	trimmed uint64
	// applied is the raft index of the last command the FSM processed,
	// changed state or not (raft's own AppliedIndex moves when a batch is
	// handed to the FSM, before it is applied).
	applied atomic.Uint64
	// skipped counts entries the FSM could not apply (see Apply).
	skipped atomic.Uint64
}

// NewFSM returns an empty state machine.
func NewFSM(log *slog.Logger) *FSM {
	if log == nil {
		log = slog.Default()
	}
	return &FSM{log: log, objects: map[key]*Object{}, watch: make(chan struct{})}
}

// dispatch applies one message; an error means its payload does not
// decode (the entry is skipped, see Apply).
type dispatch func(f *FSM, index uint64, data []byte) (any, error)

// handlers is the dispatch table: one entry per message type.
var handlers = map[MessageType]dispatch{
	ApplyObjectType:  (*FSM).applyObject,
	DeleteObjectType: (*FSM).deleteObject,
	UpdateStatusType: (*FSM).updateStatus,
}

// Apply applies one committed log entry; business errors (conflict, not
// found) are returned as the response.
//
// An entry it cannot apply (an unknown type, a payload that does not
// decode) is skipped, logged and counted (Skipped), and answered with
// ErrSkipped: every replica reads the same entry the same way, so all skip
// it alike and the state stays identical everywhere. Panicking instead
// would stop the operator at every restart for as long as the entry stays
// in the log. Optional messages (IgnoreUnknownTypeFlag) of an unknown type
// are skipped quietly: a newer version wrote them, by design.
func (f *FSM) Apply(l *raft.Log) any {
	defer f.applied.Store(l.Index)
	if l.Type != raft.LogCommand || len(l.Data) == 0 {
		return nil
	}
	t := MessageType(l.Data[0])
	ignoreUnknown := t&IgnoreUnknownTypeFlag != 0
	t &^= IgnoreUnknownTypeFlag
	h, ok := handlers[t]
	if !ok {
		if ignoreUnknown {
			f.log.Info("skipping unknown optional raft message", "type", uint8(t), "index", l.Index)
			return nil
		}
		return f.skip(l.Index, t, "unknown message type")
	}
	resp, err := h(f, l.Index, l.Data[1:])
	if err != nil {
		return f.skip(l.Index, t, err.Error())
	}
	return resp
}

// skip reports an entry that cannot be applied. The log line names the
// type and index only: never the payload (it may hold sealed material).
func (f *FSM) skip(index uint64, t MessageType, why string) any {
	f.skipped.Add(1)
	f.log.Error("skipping a raft entry that cannot be applied", "index", index, "type", uint8(t), "reason", why)
	return &response{Err: fmt.Errorf("%w: entry %d (type %d): %s", ErrSkipped, index, t, why)}
}

// Skipped is the number of entries skipped since this FSM started (see
// Apply).
func (f *FSM) Skipped() uint64 { return f.skipped.Load() }

func decode(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		// The decoder's message, not the payload.
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return fmt.Errorf("undecodable payload: invalid JSON at offset %d", se.Offset)
		case errors.As(err, &te):
			return fmt.Errorf("undecodable payload: field %q has the wrong type", te.Field)
		}
		return errors.New("undecodable payload")
	}
	return nil
}

func checkVersion(cur *Object, expect *uint64) error {
	if expect == nil {
		return nil
	}
	switch {
	case *expect == 0 && cur != nil:
		return fmt.Errorf("%w: %s %q already exists", ErrConflict, cur.Kind, cur.Name)
	case *expect != 0 && cur == nil:
		return fmt.Errorf("%w: object no longer exists", ErrConflict)
	case *expect != 0 && cur.ModifyIndex != *expect:
		return fmt.Errorf("%w: %s %q was modified (resourceVersion %d, the request had %d)", ErrConflict, cur.Kind, cur.Name, cur.ModifyIndex, *expect)
	}
	return nil
}

func (f *FSM) applyObject(index uint64, data []byte) (any, error) {
	var req ApplyRequest
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	if req.Kind == "" || req.Name == "" {
		return nil, errors.New("no kind or name")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key{req.Kind, req.Name}
	cur := f.objects[k]
	if err := checkVersion(cur, req.ExpectVersion); err != nil {
		return &response{Err: err}, nil
	}
	if cur == nil {
		obj := &Object{
			Kind: req.Kind, Name: req.Name, UID: req.UID, Generation: 1,
			CreateIndex: index, ModifyIndex: index, Created: req.Now.UTC(),
			Labels: req.Labels, Annotations: req.Annotations, Spec: req.Spec, Schema: req.Schema,
		}
		f.set(k, obj, index, true)
		return &response{Result: Created, Object: obj}, nil
	}
	if sameContent(cur, &req) {
		return &response{Result: Unchanged, Object: cur}, nil
	}
	specChanged := !bytes.Equal(cur.Spec, req.Spec)
	// A storage migration wakes no one for the spec it rewrote: the object
	// is the same (its labels or annotations may still have changed).
	wake := !req.Migration || !maps.Equal(cur.Labels, req.Labels) || !maps.Equal(cur.Annotations, req.Annotations)
	obj := *cur
	obj.Labels, obj.Annotations, obj.Spec, obj.Schema = req.Labels, req.Annotations, req.Spec, req.Schema
	obj.ModifyIndex = index
	if specChanged && !req.Migration {
		obj.Generation++
	}
	f.set(k, &obj, index, wake)
	return &response{Result: Configured, Object: &obj}, nil
}

// sameContent reports whether applying req to cur would change nothing.
func sameContent(cur *Object, req *ApplyRequest) bool {
	return bytes.Equal(cur.Spec, req.Spec) && cur.Schema == req.Schema && maps.Equal(cur.Labels, req.Labels) && maps.Equal(cur.Annotations, req.Annotations)
}

func (f *FSM) deleteObject(index uint64, data []byte) (any, error) {
	var req DeleteRequest
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	if req.Kind == "" || req.Name == "" {
		return nil, errors.New("no kind or name")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key{req.Kind, req.Name}
	cur := f.objects[k]
	if cur == nil {
		return &response{Err: fmt.Errorf("%w: %s %q", ErrNotFound, req.Kind, req.Name)}, nil
	}
	if err := checkVersion(cur, req.ExpectVersion); err != nil {
		return &response{Err: err}, nil
	}
	delete(f.objects, k)
	f.changed(index, Change{Index: index, Kind: k.kind, Name: k.name, Spec: true})
	return &response{Result: Deleted, Object: cur}, nil
}

func (f *FSM) updateStatus(index uint64, data []byte) (any, error) {
	var req StatusRequest
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	if req.Kind == "" || req.Name == "" {
		return nil, errors.New("no kind or name")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key{req.Kind, req.Name}
	cur := f.objects[k]
	if cur == nil || (req.ExpectUID != "" && cur.UID != req.ExpectUID) {
		return &response{Err: fmt.Errorf("%w: %s %q", ErrNotFound, req.Kind, req.Name)}, nil
	}
	if err := checkVersion(cur, req.ExpectVersion); err != nil {
		return &response{Err: err}, nil
	}
	if bytes.Equal(cur.Status, req.Status) {
		return &response{Result: Unchanged, Object: cur}, nil
	}
	obj := *cur
	obj.Status = req.Status
	obj.ModifyIndex = index
	f.set(k, &obj, index, false)
	return &response{Result: Configured, Object: &obj}, nil
}

// Change says what one change of state touched.
type Change struct {
	Index      uint64
	Kind, Name string
	// Spec: the object was created or deleted, or its spec, labels or
	// annotations changed; false for a write of its status only.
	Spec bool
}

// changeLogSize is how many changes the FSM remembers for Changes.
const changeLogSize = 4096

// set stores obj and wakes watchers. Callers hold f.mu.
func (f *FSM) set(k key, obj *Object, index uint64, spec bool) {
	f.objects[k] = obj
	f.changed(index, Change{Index: index, Kind: k.kind, Name: k.name, Spec: spec})
}

// changed records a change (none: everything may have changed, as after
// a snapshot restore) and wakes watchers.
func (f *FSM) changed(index uint64, c ...Change) {
	f.index = index
	if len(c) == 0 {
		f.changes, f.trimmed = nil, index
	}
	f.changes = append(f.changes, c...)
	if n := len(f.changes) - changeLogSize; n > 0 {
		f.trimmed = f.changes[n-1].Index
		f.changes = slices.Clone(f.changes[n:])
	}
	close(f.watch)
	f.watch = make(chan struct{})
}

// Changes returns the changes after index since, oldest first, and the
// index of the state now. complete is false when some of them are no
// longer remembered (a watcher then treats everything as changed).
func (f *FSM) Changes(since uint64) (changes []Change, now uint64, complete bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if since < f.trimmed {
		return nil, f.index, false
	}
	i, _ := slices.BinarySearchFunc(f.changes, since+1, func(c Change, idx uint64) int { return cmp.Compare(c.Index, idx) })
	return slices.Clone(f.changes[i:]), f.index, true
}

// Get returns the object, or nil. The object must not be modified.
func (f *FSM) Get(kind, name string) *Object {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.objects[key{kind, name}]
}

// List returns every object of a kind, sorted by name, and the index of the
// state it was read from.
func (f *FSM) List(kind string) ([]*Object, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []*Object
	for k, o := range f.objects {
		if k.kind == kind {
			out = append(out, o)
		}
	}
	sortObjects(out)
	return out, f.index
}

// Watch returns a channel closed at the next change of state, and the index
// of the state now.
func (f *FSM) Watch() (<-chan struct{}, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.watch, f.index
}

// Applied is the raft index of the last command processed.
func (f *FSM) Applied() uint64 { return f.applied.Load() }

// Index is the raft index of the last change applied.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.index
}

type snapshotFile struct {
	Version int       `json:"version"`
	Index   uint64    `json:"index"`
	Objects []*Object `json:"objects"`
}

// Snapshot clones the state under the lock; Persist writes it later.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	objs := make([]*Object, 0, len(f.objects))
	for _, o := range f.objects {
		objs = append(objs, o) // objects are immutable: sharing is a clone
	}
	return &fsmSnapshot{file: snapshotFile{Version: snapshotVersion, Index: f.index, Objects: objs}}, nil
}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var file snapshotFile
	if err := json.NewDecoder(rc).Decode(&file); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if file.Version != snapshotVersion {
		return fmt.Errorf("restore snapshot: unsupported version %d", file.Version)
	}
	objects := make(map[key]*Object, len(file.Objects))
	for _, o := range file.Objects {
		objects[key{o.Kind, o.Name}] = o
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects = objects
	f.changed(file.Index)
	return nil
}

type fsmSnapshot struct{ file snapshotFile }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	sortObjects(s.file.Objects)
	if err := json.NewEncoder(sink).Encode(&s.file); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// writeTo writes the snapshot as Persist does (the backup format).
func (s *fsmSnapshot) writeTo(w io.Writer) error {
	sortObjects(s.file.Objects)
	return json.NewEncoder(w).Encode(&s.file)
}

// readSnapshot reads and checks a snapshot (or backup) file.
func readSnapshot(r io.Reader) (snapshotFile, error) {
	var file snapshotFile
	if err := json.NewDecoder(r).Decode(&file); err != nil {
		return file, fmt.Errorf("read snapshot: %w", err)
	}
	if file.Version != snapshotVersion {
		return file, fmt.Errorf("read snapshot: unsupported version %d", file.Version)
	}
	return file, nil
}
