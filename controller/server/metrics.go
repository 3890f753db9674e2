package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// storeCollector reads the store at scrape time.
type storeCollector struct {
	store   Store
	objects *prometheus.Desc
	leader  *prometheus.Desc
	term    *prometheus.Desc
	commit  *prometheus.Desc
	applied *prometheus.Desc
}

func newStoreCollector(s Store) *storeCollector {
	return &storeCollector{
		store:   s,
		objects: prometheus.NewDesc("mqttoperator_objects", "Stored objects by kind.", []string{"kind"}, nil),
		leader:  prometheus.NewDesc("mqttoperator_raft_leader", "1 if this operator is the raft leader.", nil, nil),
		term:    prometheus.NewDesc("mqttoperator_raft_term", "Current raft term.", nil, nil),
		commit:  prometheus.NewDesc("mqttoperator_raft_commit_index", "Raft commit index.", nil, nil),
		applied: prometheus.NewDesc("mqttoperator_raft_applied_index", "Raft index applied to the state machine.", nil, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.objects
	ch <- c.leader
	ch <- c.term
	ch <- c.commit
	ch <- c.applied
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	objs, _ := c.store.List(api.KindMqttCluster)
	ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(len(objs)), api.KindMqttCluster)
	l := c.store.Leader()
	isLeader := 0.0
	if l.IsLeader {
		isLeader = 1
	}
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, isLeader)
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(l.Term))
	ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, float64(l.CommitIndex))
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(l.AppliedIndex))
}
