package controller

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

// MaxEvents is how many distinct events a cluster keeps (the oldest go).
const MaxEvents = 100

// eventRefresh is how often a repeated event (a reconcile error that
// stays, say) is written again with its count: an event write is a store
// write, and a store write wakes the leader loop, so a repeat must not be
// written on every pass.
const eventRefresh = time.Minute

// event records an action of this pass on a cluster; the pass stores them
// at its end (one store write), so an unchanged pass writes none. Repeats
// within the pending list count up.
func (r *ClusterReconciler) event(cluster, typ, reason, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[string][]api.Event{}
	}
	now := metav1.NewTime(r.now().UTC().Truncate(time.Second))
	e := api.Event{Type: typ, Reason: reason, Message: fmt.Sprintf(format, args...), Count: 1, FirstTime: now, LastTime: now}
	for i, p := range r.pending[cluster] {
		if same(p, e) {
			r.pending[cluster][i].Count++
			r.pending[cluster][i].LastTime = now
			return
		}
	}
	r.pending[cluster] = append(r.pending[cluster], e)
}

func same(a, b api.Event) bool {
	return a.Type == b.Type && a.Reason == b.Reason && a.Message == b.Message
}

// flushEvents merges the pending events into the cluster's stored list: a
// repeat of a stored event (same type, reason, message) adds its count and
// moves to the end; the list keeps the MaxEvents most recent. When every
// pending event repeats one stored less than eventRefresh ago, nothing is
// written yet (they stay pending, counted).
func (r *ClusterReconciler) flushEvents(cluster string) error {
	r.mu.Lock()
	evs := r.pending[cluster]
	r.mu.Unlock()
	if len(evs) == 0 {
		return nil
	}
	var list api.EventList
	if o := r.Store.Get(server.EventsKind, cluster); o != nil {
		_ = json.Unmarshal(o.Spec, &list)
	}
	due := false
	for _, e := range evs {
		i := slices.IndexFunc(list.Items, func(old api.Event) bool { return same(old, e) })
		if i < 0 || e.LastTime.Sub(list.Items[i].LastTime.Time) >= eventRefresh {
			due = true
		}
	}
	if !due {
		return nil
	}
	r.mu.Lock()
	delete(r.pending, cluster)
	r.mu.Unlock()
	list.Cluster = cluster
	for _, e := range evs {
		if i := slices.IndexFunc(list.Items, func(old api.Event) bool { return same(old, e) }); i >= 0 {
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
	_, _, err = r.Store.Apply(store.ApplyRequest{Kind: server.EventsKind, Name: cluster, Spec: b})
	return err
}
