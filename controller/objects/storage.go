package objects

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

// StorageVersion is the format of the records this operator writes: every
// record carries the version it was written in (store.Object.Schema), a
// record of an older version is converted when read, and the leader
// rewrites old records in the current version once every operator reads
// it (MigrateStorage), as Kubernetes keeps a storage version per resource
// and migrates stored objects to it.
//
//   - 1: the records written before they carried a version (read as 1).
//   - 2: the same formats, the version stated on each record.
//
// A new format is a new version with a conversion from the previous one in
// conversions, never a change to an existing version.
const StorageVersion = 2

// ErrNewerStorage: a record was written by a newer operator (a version this
// one does not know). It is neither read nor overwritten: the newer
// format's meaning is unknown here, and a write would lose what this
// version cannot represent (after a rollback, upgrade again or restore a
// backup taken before the upgrade).
var ErrNewerStorage = errors.New("stored by a newer operator")

// conversion turns one record's spec and status from version v into v+1
// (conversions[kind][v]).
type conversion func(spec, status []byte) ([]byte, []byte, error)

func identity(spec, status []byte) ([]byte, []byte, error) { return spec, status, nil }

// conversions by kind and from-version. A kind with no entry for a version
// keeps its format across it.
var conversions = map[string]map[int]conversion{
	KindCluster:     {1: identity},
	KindUser:        {1: identity},
	KindEvents:      {1: identity},
	KindCredentials: {1: identity},
	KindGitSync:     {1: identity},
	KindSealing:     {1: identity},
}

// canonical re-encodes a converted spec the way this operator encodes it
// (its Go type's field order), so that an apply of the same object after a
// migration compares equal and is "unchanged".
var canonical = map[string]func([]byte) ([]byte, error){
	KindCluster: recode[api.MqttClusterSpec],
	KindUser:    recode[api.MqttUserSpec],
}

func recode[T any](b []byte) ([]byte, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// schemaOf is the version a record was written in.
func schemaOf(o *store.Object) int {
	if o.Schema == 0 {
		return 1
	}
	return o.Schema
}

// current is o in the current storage version (o itself when it is
// already), or ErrNewerStorage.
func current(o *store.Object) (*store.Object, error) {
	v := schemaOf(o)
	if v > StorageVersion {
		return nil, fmt.Errorf("%w: %s %q is in storage version %d, this operator reads up to %d", ErrNewerStorage, o.Kind, o.Name, v, StorageVersion)
	}
	if v == StorageVersion {
		return o, nil
	}
	c := *o // records are immutable: convert a copy
	spec, status := []byte(c.Spec), []byte(c.Status)
	for ; v < StorageVersion; v++ {
		conv := conversions[o.Kind][v]
		if conv == nil {
			continue
		}
		var err error
		if spec, status, err = conv(spec, status); err != nil {
			return nil, fmt.Errorf("convert %s %q from storage version %d: %w", o.Kind, o.Name, v, err)
		}
	}
	if canon := canonical[o.Kind]; canon != nil && len(spec) > 0 {
		var err error
		if spec, err = canon(spec); err != nil {
			return nil, fmt.Errorf("convert %s %q: %w", o.Kind, o.Name, err)
		}
	}
	c.Spec, c.Status, c.Schema = spec, status, StorageVersion
	return &c, nil
}

// writable refuses a write over a record a newer operator wrote.
func (x *Objects) writable(kind, name string) error {
	if o := x.Store.Get(kind, name); o != nil && schemaOf(o) > StorageVersion {
		_, err := current(o)
		return err
	}
	return nil
}

// apply is Store.Apply in the current storage version, refused over a
// newer record.
func (x *Objects) apply(req store.ApplyRequest) (store.Result, *store.Object, error) {
	if err := x.writable(req.Kind, req.Name); err != nil {
		return "", nil, err
	}
	req.Schema = StorageVersion
	return x.Store.Apply(req)
}

// updateStatus is Store.UpdateStatus, refused over a newer record.
func (x *Objects) updateStatus(req store.StatusRequest) (store.Result, *store.Object, error) {
	if err := x.writable(req.Kind, req.Name); err != nil {
		return "", nil, err
	}
	return x.Store.UpdateStatus(req)
}

// StorageKinds are the kinds MigrateStorage rewrites.
func StorageKinds() []string {
	kinds := make([]string, 0, len(conversions))
	for k := range conversions {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return kinds
}

// Outdated counts the records stored in an older version than this
// operator's.
func (x *Objects) Outdated() int {
	n := 0
	for _, k := range StorageKinds() {
		objs, _ := x.Store.List(k)
		for _, o := range objs {
			if schemaOf(o) < StorageVersion {
				n++
			}
		}
	}
	return n
}

// PeerVersions reports the storage version every operator of the raft
// cluster reads (by raft id), or an error naming those it could not ask.
type PeerVersions func(ctx context.Context) (map[string]int, error)

// MigrateStorage rewrites every record older than StorageVersion in it —
// the spec converted, the generation kept (a migration is not a change:
// no rollout, no approval), guarded by the record's version (a concurrent
// write wins) — but only once every operator reads StorageVersion (peers;
// nil: this one is alone), so that an operator of the previous version,
// still running mid-upgrade, never reads a format it does not know.
// Records a newer operator wrote are left alone. fence runs before each
// write. It returns the number of records rewritten, and retries the peer
// check every retry until ctx ends while an older operator runs.
func (x *Objects) MigrateStorage(ctx context.Context, fence func() error, peers PeerVersions, retry time.Duration, log *slog.Logger) (int, error) {
	if x.Outdated() == 0 {
		return 0, nil
	}
	if err := x.waitForPeers(ctx, peers, retry, log); err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, k := range StorageKinds() {
		objs, _ := x.Store.List(k)
		for _, o := range objs {
			if schemaOf(o) >= StorageVersion {
				continue
			}
			c, err := current(o)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := fence(); err != nil {
				return n, err
			}
			v := o.ModifyIndex
			_, stored, err := x.Store.Apply(store.ApplyRequest{Kind: o.Kind, Name: o.Name, Labels: o.Labels, Annotations: o.Annotations,
				Spec: c.Spec, Schema: StorageVersion, Migration: true, ExpectVersion: &v})
			if errors.Is(err, store.ErrConflict) {
				continue // written meanwhile, in the current version
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("migrate %s %q: %w", o.Kind, o.Name, err))
				continue
			}
			if len(c.Status) > 0 && string(c.Status) != string(o.Status) {
				if _, _, err := x.Store.UpdateStatus(store.StatusRequest{Kind: o.Kind, Name: o.Name, Status: c.Status, ExpectUID: stored.UID}); err != nil {
					errs = append(errs, fmt.Errorf("migrate the status of %s %q: %w", o.Kind, o.Name, err))
				}
			}
			n++
		}
	}
	if n > 0 {
		log.Info("storage migration: records rewritten in the current storage version", "records", n, "storageVersion", StorageVersion)
	}
	return n, errors.Join(errs...)
}

// waitForPeers returns once every operator reads StorageVersion (at once
// when peers is nil), asking again every retry, or ctx's error.
func (x *Objects) waitForPeers(ctx context.Context, peers PeerVersions, retry time.Duration, log *slog.Logger) error {
	for peers != nil {
		vs, err := peers(ctx)
		var behind []string
		for id, v := range vs {
			if v < StorageVersion {
				behind = append(behind, fmt.Sprintf("%s (version %d)", id, v))
			}
		}
		if err == nil && len(behind) == 0 {
			return nil
		}
		slices.Sort(behind)
		log.Info("storage migration waits until every operator reads the new storage version", "storageVersion", StorageVersion, "outdated", x.Outdated(), "behind", behind, "unreachable", errString(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
