package cluster

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// event records an action of this pass on a cluster; the pass returns
// them in its Result (the leader stores them in one write), so an
// unchanged pass has none. Repeats within a pass count up.
func (r *Reconciler) event(cluster, typ, reason, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[string][]api.Event{}
	}
	now := metav1.NewTime(r.now().UTC().Truncate(time.Second))
	e := api.Event{Type: typ, Reason: reason, Message: fmt.Sprintf(format, args...), Count: 1, FirstTime: now, LastTime: now}
	for i, p := range r.pending[cluster] {
		if p.Same(e) {
			r.pending[cluster][i].Count++
			r.pending[cluster][i].LastTime = now
			return
		}
	}
	r.pending[cluster] = append(r.pending[cluster], e)
}

// takeEvents returns and forgets the events recorded for a cluster.
func (r *Reconciler) takeEvents(cluster string) []api.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.pending[cluster]
	delete(r.pending, cluster)
	return evs
}
