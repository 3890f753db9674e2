package status

import (
	"fmt"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
)

// SyncView is what a pass learnt of the sync agents.
type SyncView struct {
	// Plan is each agent's configuration, by node id.
	Plan map[string]datasync.Config
	// Status of each agent that answered, by node id; Errs of the others.
	Status map[string]datasync.Status
	Errs   map[string]string
	// Hostname of each node id.
	Hostname map[string]string
}

// Sync turns the agents' reports into the sync status, and says whether
// every wanted broker's data reached every target recently (and if not,
// why).
func Sync(c *api.MqttCluster, v SyncView, now time.Time) (*api.SyncStatus, bool, string) {
	delay, _ := c.Spec.Sync.Delay.Parse()
	autosave, _ := c.Spec.Broker.Persistence.AutosaveInterval.Parse()
	// A sync is due within autosave + delay of a change; past that, and
	// 30 s more, the copy counts as late.
	late := autosave + delay + 30*time.Second
	st := &api.SyncStatus{}
	var why []string
	var anyCfg datasync.Config
	for _, cfg := range v.Plan {
		anyCfg = cfg
		break
	}
	for node, e := range v.Errs {
		why = append(why, fmt.Sprintf("sync agent on %s: %s", v.Hostname[node], e))
	}
	for _, b := range anyCfg.Brokers {
		if i, ok := api.BrokerIndex(c.Name, b.Name); !ok || i >= int(*c.Spec.Replicas) {
			continue // a broker being removed
		}
		bs, bwhy := v.broker(b, now, late)
		st.Brokers = append(st.Brokers, bs)
		why = append(why, bwhy...)
	}
	sort.Strings(why)
	if len(anyCfg.Brokers) == 0 {
		why = append(why, "no sync agent is running")
	}
	if len(why) == 0 {
		return st, true, fmt.Sprintf("the data of %d brokers is on every eligible node", len(st.Brokers))
	}
	return st, false, strings.Join(why, "; ")
}

// broker is one broker's copies, as its source agent reports them.
func (v SyncView) broker(b datasync.Broker, now time.Time, late time.Duration) (api.BrokerSyncStatus, []string) {
	bs := api.BrokerSyncStatus{Name: b.Name, Source: v.Hostname[b.Source]}
	var why []string
	var src *datasync.SourceStatus
	if s, ok := v.Status[b.Source]; ok {
		for i := range s.Sources {
			if s.Sources[i].Broker == b.Name {
				src = &s.Sources[i]
			}
		}
	}
	if len(b.Targets) == 0 {
		why = append(why, b.Name+": no other node to copy its data to")
	}
	for _, t := range b.Targets {
		ts := api.SyncTargetStatus{Node: v.Hostname[t], Pending: true}
		var got *datasync.TargetStatus
		if src != nil {
			for i := range src.Targets {
				if src.Targets[i].Node == t {
					got = &src.Targets[i]
				}
			}
		}
		if got != nil {
			ts.Pending, ts.Error = got.Pending, got.Error
			if !got.LastSync.IsZero() {
				lt := metav1.NewTime(got.LastSync.UTC().Truncate(time.Second))
				ts.LastSync = &lt
			}
		}
		if w := targetLag(got, now, late); w != "" {
			why = append(why, fmt.Sprintf("%s -> %s: %s", b.Name, ts.Node, w))
		}
		bs.Targets = append(bs.Targets, ts)
	}
	return bs, why
}

// targetLag says why a copy is not current ("" when it is).
func targetLag(got *datasync.TargetStatus, now time.Time, late time.Duration) string {
	switch {
	case got == nil, got.Error == "" && got.LastSync.IsZero():
		return "not synced yet"
	case got.Error != "":
		return got.Error
	case got.Pending && now.Sub(got.LastSync) > late:
		return "behind since the sync of " + got.LastSync.UTC().Format(time.RFC3339)
	}
	return ""
}
