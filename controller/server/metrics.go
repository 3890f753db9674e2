package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
)

// storeCollector reads the store at scrape time.
type storeCollector struct {
	store   Store
	objs    *objects.Objects
	objects *prometheus.Desc
	leader  *prometheus.Desc
	term    *prometheus.Desc
	commit  *prometheus.Desc
	applied *prometheus.Desc
	skipped *prometheus.Desc
	bridge  *prometheus.Desc
	brokers *prometheus.Desc
	expiry  *prometheus.Desc
	cond    *prometheus.Desc
	known   *prometheus.Desc
	contact *prometheus.Desc
	syncAge *prometheus.Desc
	syncAt  *prometheus.Desc
	syncErr *prometheus.Desc
	users   *prometheus.Desc
	userOK  *prometheus.Desc
	now     func() time.Time
}

func newStoreCollector(s Store, objs *objects.Objects) *storeCollector {
	return &storeCollector{
		store:   s,
		objs:    objs,
		objects: prometheus.NewDesc("mqttoperator_objects", "Stored objects by kind.", []string{"kind"}, nil),
		leader:  prometheus.NewDesc("mqttoperator_raft_leader", "1 if this operator is the raft leader.", nil, nil),
		term:    prometheus.NewDesc("mqttoperator_raft_term", "Current raft term.", nil, nil),
		commit:  prometheus.NewDesc("mqttoperator_raft_commit_index", "Raft commit index.", nil, nil),
		applied: prometheus.NewDesc("mqttoperator_raft_applied_index", "Raft index applied to the state machine.", nil, nil),
		skipped: prometheus.NewDesc("mqttoperator_raft_skipped_entries_total", "Raft entries the state machine could not apply (unknown type, undecodable payload) and skipped, since this operator started.", nil, nil),
		bridge: prometheus.NewDesc("mqttoperator_bridge_connected", "1 if the broker's bridge toward the hub is up, by the broker's parent.",
			[]string{"cluster", "broker", "parent"}, nil),
		brokers: prometheus.NewDesc("mqttoperator_brokers", "Brokers by cluster: desired (spec) and running (status).", []string{"cluster", "state"}, nil),
		expiry: prometheus.NewDesc("mqttoperator_certificate_expiration_timestamp_seconds", "When a cluster's certificate expires (kind: server, ca, next-ca during a CA rotation), Unix seconds.",
			[]string{"cluster", "kind"}, nil),
		cond: prometheus.NewDesc("mqttoperator_cluster_condition", "1 if a cluster's condition (Ready, Progressing, Degraded, SyncHealthy) is True, 0 if False.",
			[]string{"cluster", "type", "reason"}, nil),
		known:   prometheus.NewDesc("mqttoperator_raft_known_leader", "1 if this operator knows a raft leader (itself or another).", nil, nil),
		contact: prometheus.NewDesc("mqttoperator_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader).", nil, nil),
		syncAge: prometheus.NewDesc("mqttoperator_sync_age_seconds", "How old a target's copy of a broker's data is when the data changed since (0: the copy is current), from the status (spec.sync).",
			[]string{"cluster", "broker", "target"}, nil),
		syncAt: prometheus.NewDesc("mqttoperator_sync_last_success_timestamp_seconds", "When the last successful sync of a broker's data to a target began, Unix seconds (spec.sync).",
			[]string{"cluster", "broker", "target"}, nil),
		syncErr: prometheus.NewDesc("mqttoperator_sync_failing", "1 if the last sync of a broker's data to a target failed (spec.sync).",
			[]string{"cluster", "broker", "target"}, nil),
		users: prometheus.NewDesc("mqttoperator_users", "MqttUsers by cluster.", []string{"cluster"}, nil),
		userOK: prometheus.NewDesc("mqttoperator_user_applied", "1 if every broker of the user's cluster serves the user (its Ready condition), 0 if not.",
			[]string{"cluster", "user"}, nil),
		now: time.Now,
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.objects
	ch <- c.leader
	ch <- c.term
	ch <- c.commit
	ch <- c.applied
	ch <- c.skipped
	ch <- c.bridge
	ch <- c.brokers
	ch <- c.expiry
	ch <- c.cond
	ch <- c.known
	ch <- c.contact
	ch <- c.syncAge
	ch <- c.syncAt
	ch <- c.syncErr
	ch <- c.users
	ch <- c.userOK
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.objs.EachCluster(func(cl *api.MqttCluster) {
		c.collectCluster(ch, cl)
		c.collectSync(ch, cl)
		c.collectCertificates(ch, cl)
	})
	ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(n), api.KindMqttCluster)
	c.collectUsers(ch)
	c.collectRaft(ch)
}

// collectCluster: brokers, bridges and conditions, from the status.
func (c *storeCollector) collectCluster(ch chan<- prometheus.Metric, cl *api.MqttCluster) {
	if cl.Spec.Replicas != nil || cl.Spec.Scaling.Auto() || cl.Spec.Scaling.PerNode() {
		// The brokers meant to run: a parked PerNode broker is not.
		ch <- prometheus.MustNewConstMetric(c.brokers, prometheus.GaugeValue, float64(api.Brokers(cl)-len(api.Parked(cl))), cl.Name, "desired")
	}
	running := 0
	for _, b := range cl.Status.Brokers {
		if b.State == "running" {
			running++
		}
		if b.Bridge == nil {
			continue
		}
		up := 0.0
		if b.Bridge.Connected {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.bridge, prometheus.GaugeValue, up, cl.Name, b.Name, b.Bridge.Parent)
	}
	ch <- prometheus.MustNewConstMetric(c.brokers, prometheus.GaugeValue, float64(running), cl.Name, "running")
	for _, cd := range cl.Status.Conditions {
		v := 0.0
		switch cd.Status {
		case "True":
			v = 1
		case "False":
		default:
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.cond, prometheus.GaugeValue, v, cl.Name, cd.Type, cd.Reason)
	}
}

// collectSync: each broker's copies (spec.sync), from the status.
func (c *storeCollector) collectSync(ch chan<- prometheus.Metric, cl *api.MqttCluster) {
	if sy := cl.Status.Sync; sy != nil {
		for _, b := range sy.Brokers {
			for _, t := range b.Targets {
				failing := 0.0
				if t.Error != "" {
					failing = 1
				}
				ch <- prometheus.MustNewConstMetric(c.syncErr, prometheus.GaugeValue, failing, cl.Name, b.Name, t.Node)
				if t.LastSync == nil {
					continue
				}
				age := 0.0
				if t.Pending {
					age = max(0, c.now().Sub(t.LastSync.Time).Seconds())
				}
				ch <- prometheus.MustNewConstMetric(c.syncAge, prometheus.GaugeValue, age, cl.Name, b.Name, t.Node)
				ch <- prometheus.MustNewConstMetric(c.syncAt, prometheus.GaugeValue, float64(t.LastSync.Unix()), cl.Name, b.Name, t.Node)
			}
		}
	}
}

// collectCertificates: when the server certificate and the CAs expire.
func (c *storeCollector) collectCertificates(ch chan<- prometheus.Metric, cl *api.MqttCluster) {
	// The server certificate as the status reports it (that covers a
	// user-supplied one, read from HAProxy); the CAs from the store.
	if cs := cl.Status.Certificate; cs != nil && cs.NotAfter != nil {
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(cs.NotAfter.Unix()), cl.Name, "server")
	}
	if cl.Spec.TLS.CertificateSecret == "" {
		if m, err := c.objs.Credentials(cl.Name); err == nil && m != nil {
			pems := map[string][]byte{"ca": credentials.CABundle(*m)} // the signing CA comes first
			if m.NextCA != nil {
				pems["next-ca"] = m.NextCA.CertPEM
			}
			for kind, pemBytes := range pems {
				if cert, err := certs.ParseCert(pemBytes); err == nil {
					ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), cl.Name, kind)
				}
			}
		}
	}
}

// collectRaft: this operator's view of raft.
func (c *storeCollector) collectRaft(ch chan<- prometheus.Metric) {
	l := c.store.Leader()
	isLeader := 0.0
	if l.IsLeader {
		isLeader = 1
	}
	ch <- prometheus.MustNewConstMetric(c.leader, prometheus.GaugeValue, isLeader)
	knownLeader := 0.0
	if l.LeaderID != "" {
		knownLeader = 1
	}
	ch <- prometheus.MustNewConstMetric(c.known, prometheus.GaugeValue, knownLeader)
	contact := 0.0
	if !l.IsLeader && !l.LastContact.IsZero() {
		contact = c.now().Sub(l.LastContact).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(c.contact, prometheus.GaugeValue, contact)
	ch <- prometheus.MustNewConstMetric(c.term, prometheus.GaugeValue, float64(l.Term))
	ch <- prometheus.MustNewConstMetric(c.commit, prometheus.GaugeValue, float64(l.CommitIndex))
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(l.AppliedIndex))
	ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.CounterValue, float64(l.SkippedEntries))
}

// collectUsers: users per cluster, and whether each is served everywhere.
func (c *storeCollector) collectUsers(ch chan<- prometheus.Metric) {
	users, _, err := c.objs.Users(nil)
	if err != nil {
		return
	}
	per := map[string]int{}
	for _, u := range users {
		per[u.Spec.Cluster]++
		ok := 0.0
		for _, cd := range u.Status.Conditions {
			if cd.Type == api.ConditionReady && cd.Status == "True" {
				ok = 1
			}
		}
		ch <- prometheus.MustNewConstMetric(c.userOK, prometheus.GaugeValue, ok, u.Spec.Cluster, u.Name)
	}
	for cl, n := range per {
		ch <- prometheus.MustNewConstMetric(c.users, prometheus.GaugeValue, float64(n), cl)
	}
	ch <- prometheus.MustNewConstMetric(c.objects, prometheus.GaugeValue, float64(len(users)), api.KindMqttUser)
}
