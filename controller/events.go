package controller

import (
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

// MaxEvents is how many distinct events a cluster keeps (the oldest go).
const MaxEvents = 100

// event records an action of this pass on a cluster; the pass stores them
// at its end (one store write), so an unchanged pass writes none.
func (r *ClusterReconciler) event(cluster, typ, reason, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[string][]api.Event{}
	}
	now := metav1.NewTime(r.now().UTC().Truncate(time.Second))
	r.pending[cluster] = append(r.pending[cluster], api.Event{
		Type: typ, Reason: reason, Message: fmt.Sprintf(format, args...), Count: 1, FirstTime: now, LastTime: now,
	})
}

// flushEvents merges the pass's events into the cluster's stored list: a
// repeat of a stored event (same type, reason, message) counts up and
// moves to the end; the list keeps the MaxEvents most recent.
func (r *ClusterReconciler) flushEvents(cluster string) error {
	r.mu.Lock()
	evs := r.pending[cluster]
	delete(r.pending, cluster)
	r.mu.Unlock()
	if len(evs) == 0 {
		return nil
	}
	var list api.EventList
	if o := r.Store.Get(server.EventsKind, cluster); o != nil {
		_ = json.Unmarshal(o.Spec, &list)
	}
	list.Cluster = cluster
	for _, e := range evs {
		merged := false
		for i, old := range list.Items {
			if old.Type == e.Type && old.Reason == e.Reason && old.Message == e.Message {
				old.Count++
				old.LastTime = e.LastTime
				list.Items = append(append(list.Items[:i:i], list.Items[i+1:]...), old)
				merged = true
				break
			}
		}
		if !merged {
			list.Items = append(list.Items, e)
		}
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
