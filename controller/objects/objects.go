// Package objects is the typed layer over the raft store: every kind of
// record the operator stores (clusters, their events and credentials, the
// git sync's status, the sealing migration's mark), their conversion to
// the api types, admission's apply with the operator's request
// annotations kept, status and event writes. The HTTP handlers, git sync
// and the leader go through it; nothing else sees raw store records. It
// does no Swarm I/O.
package objects

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// The kinds of the store's records (the values are on disk: never change
// one).
const (
	KindCluster     = api.KindMqttCluster
	KindEvents      = "MqttClusterEvents"
	KindCredentials = "MqttClusterCredentials"
	KindGitSync     = "GitSyncStatus"
	KindSealing     = "SealingMigration"

	gitSyncName = "default"
	sealingName = "credentials"
)

// MaxEvents is how many distinct events a cluster keeps (the oldest go).
const MaxEvents = 100

// Store is what the layer needs of the raft store.
type Store interface {
	Get(kind, name string) *store.Object
	List(kind string) ([]*store.Object, uint64)
	Apply(store.ApplyRequest) (store.Result, *store.Object, error)
	Delete(store.DeleteRequest) (*store.Object, error)
	UpdateStatus(store.StatusRequest) (store.Result, *store.Object, error)
}

var _ Store = (*store.Store)(nil)

// Objects reads and writes the operator's objects.
type Objects struct {
	Store Store
	// Sealer seals credentials (nil: stored in clear).
	Sealer *credentials.Sealer
}

// ToCluster turns a stored record into the MqttCluster users see.
func ToCluster(o *store.Object) (*api.MqttCluster, error) {
	o, err := current(o)
	if err != nil {
		return nil, err
	}
	out := &api.MqttCluster{}
	out.APIVersion = api.APIVersion
	out.Kind = api.KindMqttCluster
	if len(o.Spec) > 0 {
		if err := json.Unmarshal(o.Spec, &out.Spec); err != nil {
			return nil, fmt.Errorf("decode stored spec of %q: %w", o.Name, err)
		}
	}
	if len(o.Status) > 0 {
		if err := json.Unmarshal(o.Status, &out.Status); err != nil {
			return nil, fmt.Errorf("decode stored status of %q: %w", o.Name, err)
		}
	}
	out.Name = o.Name
	out.UID = types.UID(o.UID)
	out.Generation = o.Generation
	out.ResourceVersion = strconv.FormatUint(o.ModifyIndex, 10)
	out.CreationTimestamp = metav1.NewTime(o.Created)
	out.Labels = o.Labels
	out.Annotations = o.Annotations
	return out, nil
}

func notFound(name string) error {
	return fmt.Errorf("%w: %s %q", store.ErrNotFound, api.KindMqttCluster, name)
}

// Cluster is the stored cluster name (store.ErrNotFound when there is
// none; another error when it does not decode).
func (x *Objects) Cluster(name string) (*api.MqttCluster, error) {
	o := x.Store.Get(KindCluster, name)
	if o == nil {
		return nil, notFound(name)
	}
	return ToCluster(o)
}

// Clusters are the stored clusters sel matches, and the store's index.
func (x *Objects) Clusters(sel labels.Selector) ([]api.MqttCluster, uint64, error) {
	objs, index := x.Store.List(KindCluster)
	out := []api.MqttCluster{}
	for _, o := range objs {
		if sel != nil && !sel.Matches(labels.Set(o.Labels)) {
			continue
		}
		c, err := ToCluster(o)
		if err != nil {
			return nil, index, err
		}
		out = append(out, *c)
	}
	return out, index, nil
}

// EachCluster calls f with every stored cluster that decodes (one that
// does not is skipped: a scrape must not fail on it) and returns how many
// are stored.
func (x *Objects) EachCluster(f func(*api.MqttCluster)) int {
	objs, _ := x.Store.List(KindCluster)
	for _, o := range objs {
		if c, err := ToCluster(o); err == nil {
			f(c)
		}
	}
	return len(objs)
}

// ClusterNames are the stored clusters' names, sorted.
func (x *Objects) ClusterNames() []string { return ClusterNames(x.Store) }

// ClusterNames are the clusters' names in a store that can only list (the
// leader's view), sorted.
func ClusterNames(s interface {
	List(kind string) ([]*store.Object, uint64)
}) []string {
	objs, _ := s.List(KindCluster)
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		names = append(names, o.Name)
	}
	slices.Sort(names)
	return names
}

// KeepRequests is c's annotations plus the request annotations (renew,
// rotate-ca) the stored object has and c does not set: those are written
// by the operator's verbs, and re-applying the same file must neither
// undo them nor count as a change.
func (x *Objects) KeepRequests(c *api.MqttCluster) map[string]string {
	cur := x.Store.Get(KindCluster, c.Name)
	if cur == nil {
		return c.Annotations
	}
	ann := maps.Clone(c.Annotations)
	for _, k := range credentials.RequestAnnotations {
		v, stored := cur.Annotations[k]
		if _, set := c.Annotations[k]; !stored || set {
			continue
		}
		if ann == nil {
			ann = map[string]string{}
		}
		ann[k] = v
	}
	return ann
}

// Apply stores an admitted cluster (api.Admit), keeping the request
// annotations; expect, when set, is the resourceVersion it must replace.
func (x *Objects) Apply(c *api.MqttCluster, expect *uint64) (api.ApplyResult, *api.MqttCluster, error) {
	spec, err := json.Marshal(c.Spec)
	if err != nil {
		return "", nil, err
	}
	res, stored, err := x.apply(store.ApplyRequest{
		Kind: KindCluster, Name: c.Name, Labels: c.Labels, Annotations: x.KeepRequests(c),
		Spec: spec, ExpectVersion: expect,
	})
	if err != nil {
		return "", nil, err
	}
	out, err := ToCluster(stored)
	return res, out, err
}

// Preview is what Apply would store and do, storing nothing (a dry run):
// the object as it would be stored, the result, and the stored object
// (nil when there is none).
func (x *Objects) Preview(c *api.MqttCluster) (api.ApplyResult, *api.MqttCluster, *api.MqttCluster, error) {
	spec, err := json.Marshal(c.Spec)
	if err != nil {
		return "", nil, nil, err
	}
	ann := x.KeepRequests(c)
	out := c.DeepCopy()
	out.Annotations, out.Status, out.Generation = ann, api.MqttClusterStatus{}, 1
	cur := x.Store.Get(KindCluster, c.Name)
	if cur == nil {
		return api.Created, out, nil, nil
	}
	stored, err := ToCluster(cur)
	if err != nil {
		return "", nil, nil, err
	}
	out.UID, out.CreationTimestamp, out.ResourceVersion, out.Generation = stored.UID, stored.CreationTimestamp, stored.ResourceVersion, stored.Generation
	out.Status = stored.Status
	conv, err := current(cur)
	if err != nil {
		return "", nil, nil, err
	}
	// As the store decides: the spec compared in the current storage
	// version; a record in an older one is rewritten (the generation kept).
	specSame := bytes.Equal(spec, conv.Spec)
	res := api.Configured
	switch {
	case specSame && cur.Schema == StorageVersion && maps.Equal(c.Labels, cur.Labels) && maps.Equal(ann, cur.Annotations):
		res = api.Unchanged
	case !specSame:
		out.Generation++
	}
	return res, out, stored, nil
}

// Annotate sets one annotation of a stored cluster (the operator's verbs:
// renew, rotate-ca, approve), leaving its spec and generation alone.
func (x *Objects) Annotate(c *api.MqttCluster, key, value string) error {
	return x.annotate(KindCluster, c.Name, key, value, notFound)
}

// annotateTries bounds annotate's retries: each is a fresh read, and only
// a write that raced another (a status write, most often) is retried.
const annotateTries = 5

// annotate sets one annotation of a stored record, guarded by the version
// it read (a spec applied meanwhile is never overwritten) and retried on a
// conflict, as client-go's RetryOnConflict does: the caller named no
// version, so a status the leader wrote meanwhile must not fail its verb.
func (x *Objects) annotate(kind, name, key, value string, missing func(string) error) error {
	var err error
	for range annotateTries {
		cur := x.Store.Get(kind, name)
		if cur == nil {
			return missing(name)
		}
		ann := maps.Clone(cur.Annotations)
		if ann == nil {
			ann = map[string]string{}
		}
		ann[key] = value
		version := cur.ModifyIndex
		conv, cerr := current(cur)
		if cerr != nil {
			return cerr
		}
		// The spec as it is, in the current storage version: a conversion
		// is not a change (the generation stays).
		_, _, err = x.apply(store.ApplyRequest{
			Kind: kind, Name: cur.Name, Labels: cur.Labels, Annotations: ann, Spec: conv.Spec, ExpectVersion: &version,
			Migration: schemaOf(cur) < StorageVersion,
		})
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return err
}

// Delete removes a stored cluster (expect: the resourceVersion it must
// have) and returns it as it was.
func (x *Objects) Delete(name string, expect *uint64) (*api.MqttCluster, error) {
	if x.Store.Get(KindCluster, name) == nil {
		return nil, notFound(name)
	}
	old, err := x.Store.Delete(store.DeleteRequest{Kind: KindCluster, Name: name, ExpectVersion: expect})
	if err != nil {
		return nil, err
	}
	return ToCluster(old)
}

// PutStatus replaces a cluster's status as a client asks (validated
// against the stored generation; uid and expect, when set, must match).
func (x *Objects) PutStatus(name, uid string, st api.MqttClusterStatus, expect *uint64) (*api.MqttCluster, error) {
	cur := x.Store.Get(KindCluster, name)
	if cur == nil {
		return nil, notFound(name)
	}
	if errs := api.ValidateStatus(&st, cur.Generation); len(errs) > 0 {
		return nil, &api.InvalidError{Name: name, Errors: errs}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	_, stored, err := x.updateStatus(store.StatusRequest{Kind: KindCluster, Name: name, Status: b, ExpectVersion: expect, ExpectUID: uid})
	if err != nil {
		return nil, err
	}
	return ToCluster(stored)
}

// WriteStatus stores the reconciler's status of c (the object it read:
// a cluster deleted and created again since is not written to), when it
// differs from the stored one.
func (x *Objects) WriteStatus(c *api.MqttCluster, st api.MqttClusterStatus) error {
	o := x.Store.Get(KindCluster, c.Name)
	if o == nil || o.UID != string(c.UID) {
		return nil
	}
	return x.writeStatus(o, st)
}

func (x *Objects) writeStatus(o *store.Object, st api.MqttClusterStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if string(b) == string(o.Status) {
		return nil
	}
	if _, _, err := x.updateStatus(store.StatusRequest{Kind: KindCluster, Name: o.Name, Status: b, ExpectUID: o.UID}); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("status of %s: %w", o.Name, err)
	}
	return nil
}

// Degrade sets a stored cluster's Degraded condition (True, reason,
// message) and Ready to False, keeping the rest of its status: for a
// stored object that does not decode or validate, or whose reconcile
// panicked.
func (x *Objects) Degrade(name, reason, msg string, now time.Time) error {
	o := x.Store.Get(KindCluster, name)
	if o == nil {
		return nil
	}
	var st api.MqttClusterStatus
	if len(o.Status) > 0 {
		// A status that does not decode is replaced.
		_ = json.Unmarshal(o.Status, &st)
	}
	t := metav1.NewTime(now.UTC().Truncate(time.Second))
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: api.ConditionDegraded, Status: metav1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: o.Generation, LastTransitionTime: t})
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: api.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg, ObservedGeneration: o.Generation, LastTransitionTime: t})
	return x.writeStatus(o, st)
}

// Events are a cluster's recent events, oldest first.
func (x *Objects) Events(cluster string) (api.EventList, error) {
	list := api.EventList{Cluster: cluster, Items: []api.Event{}}
	if o := x.Store.Get(KindEvents, cluster); o != nil {
		o, err := current(o)
		if err != nil {
			return list, err
		}
		if err := json.Unmarshal(o.Spec, &list); err != nil {
			return list, errors.New("the stored events are unreadable")
		}
	}
	return list, nil
}

// RecordEvents merges evs into the cluster's stored list (one write): a
// repeat of a stored event (same type, reason, message) adds its count
// and moves to the end; the list keeps the MaxEvents most recent.
func (x *Objects) RecordEvents(cluster string, evs []api.Event) error {
	if len(evs) == 0 {
		return nil
	}
	list, _ := x.Events(cluster) // unreadable: replaced
	list.Cluster = cluster
	for _, e := range evs {
		if i := slices.IndexFunc(list.Items, func(old api.Event) bool { return old.Same(e) }); i >= 0 {
			old := list.Items[i]
			old.Count += e.Count
			old.LastTime = e.LastTime
			list.Items = append(append(list.Items[:i:i], list.Items[i+1:]...), old)
			continue
		}
		list.Items = append(list.Items, e)
	}
	if len(list.Items) > MaxEvents {
		list.Items = list.Items[len(list.Items)-MaxEvents:]
	}
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	_, _, err = x.apply(store.ApplyRequest{Kind: KindEvents, Name: cluster, Spec: b})
	return err
}

// Credentials are a cluster's material, unsealed (nil when none is
// stored yet).
func (x *Objects) Credentials(cluster string) (*credentials.Material, error) {
	o := x.Store.Get(KindCredentials, cluster)
	if o == nil {
		return nil, nil
	}
	o, err := current(o)
	if err != nil {
		return nil, err
	}
	m, err := x.Sealer.Decode(o.Name, o.Spec)
	if err != nil {
		return nil, fmt.Errorf("credentials of %s: %w", cluster, err)
	}
	return &m, nil
}

// SaveCredentials stores a cluster's material, sealed.
func (x *Objects) SaveCredentials(cluster string, m credentials.Material) error {
	b, err := x.Sealer.Encode(cluster, m)
	if err != nil {
		return fmt.Errorf("credentials of %s: %w", cluster, err)
	}
	if _, _, err := x.apply(store.ApplyRequest{Kind: KindCredentials, Name: cluster, Spec: b}); err != nil {
		return fmt.Errorf("store credentials of %s: %w", cluster, err)
	}
	return nil
}

// Forget removes what the store holds for a deleted cluster besides the
// cluster itself: its events and credentials.
func (x *Objects) Forget(cluster string) error {
	for _, kind := range []string{KindEvents, KindCredentials} {
		if x.Store.Get(kind, cluster) == nil {
			continue
		}
		if _, err := x.Store.Delete(store.DeleteRequest{Kind: kind, Name: cluster}); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// GitSyncStatus is what the git sync last did (false: it never ran).
func (x *Objects) GitSyncStatus() (api.GitSyncStatus, bool) {
	var st api.GitSyncStatus
	o := x.Store.Get(KindGitSync, gitSyncName)
	if o == nil {
		return st, false
	}
	o, err := current(o)
	if err != nil {
		return st, false
	}
	_ = json.Unmarshal(o.Spec, &st)
	return st, true
}

// SetGitSyncStatus stores what the git sync did.
func (x *Objects) SetGitSyncStatus(st api.GitSyncStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, _, err = x.apply(store.ApplyRequest{Kind: KindGitSync, Name: gitSyncName, Spec: b})
	return err
}
