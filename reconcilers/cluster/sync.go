package cluster

import (
	"context"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/bridges"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/rollout"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/status"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// SyncAgentClient reaches the sync agents (tests inject a fake).
type SyncAgentClient interface {
	Status(ctx context.Context, addr string) (datasync.Status, error)
	Configure(ctx context.Context, addr string, cfg datasync.Config) error
	Peers(ctx context.Context, addr string) (datasync.PeerView, error)
}

// LabelRetiring marks a broker service stopped before its removal (its
// last state is synced first), with the RFC 3339 time it was stopped;
// LabelRetiringNode is the node it ran on (Swarm deletes the tasks of a
// service scaled to zero).
const (
	LabelRetiring     = "mqtt.swarm/retiring-since"
	LabelRetiringNode = "mqtt.swarm/retiring-node"
)

// RetireTimeout bounds the wait for a removed broker's last sync.
const RetireTimeout = 60 * time.Second

// passView is what a pass learnt of the sync agents, and its rollout.
type passView struct {
	roll *rollout.Gate
	// bridges and latest are what the status read: the bridge tracker
	// and each service's newest task (nil: not read yet).
	bridges *bridges.Tracker
	latest  map[string]dswarm.Task
	// material is the pass's credentials, once begin has them (nil: the
	// pass stopped before; observe loads them).
	material *credentials.Material
	enabled  bool
	// What the agents reported (Plan nil: not asked yet).
	status.SyncView
	tasks map[string][]dswarm.Task // broker tasks by service name
	// auth is where the users and rules stand (nil: the pass stopped
	// before pushing them); users are the cluster's MqttUsers.
	auth    *status.AuthView
	users   []api.MqttUser
	secrets map[string]credentials.UserSecret
}

func (r *Reconciler) syncClient(c *api.MqttCluster, m credentials.Material) SyncAgentClient {
	if r.SyncAgents != nil {
		return r.SyncAgents
	}
	// One client per cluster, kept while its token and certificate stay:
	// its transport keeps the connections to the agents (a new transport
	// every pass would open new TLS connections and leave the old ones
	// idle until they time out).
	key := m.SyncPassword
	if m.SyncTLS != nil {
		key += string(m.SyncTLS.CertPEM)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cl, ok := r.syncClients[c.Name]; ok && cl.key == key {
		return cl.client
	}
	cl := &datasync.AgentClient{Token: m.SyncPassword}
	if r.Identity != nil && m.SyncTLS != nil {
		cl.TLS = r.Identity.ComponentClientConfig(tlsutil.Sync, c.Name)
	}
	if r.syncClients == nil {
		r.syncClients = map[string]cachedSyncClient{}
	}
	r.syncClients[c.Name] = cachedSyncClient{key: key, client: cl}
	return cl
}

// cachedSyncClient is a cluster's agent client and what it was made for.
type cachedSyncClient struct {
	key    string
	client *datasync.AgentClient
}

// pushSync sends every sync agent the config live placement calls for
// (only where it differs from the one it runs) and reads their status.
func (r *Reconciler) pushSync(ctx context.Context, c *api.MqttCluster, m credentials.Material, v *passView) error {
	agentTasks, err := r.Swarm.Tasks(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, datasync.ComponentAgent))
	if err != nil {
		return err
	}
	brokerTasks, err := r.Swarm.Tasks(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, broker.ComponentSvc))
	if err != nil {
		return err
	}
	brokerSvcs, err := r.Swarm.Services(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, broker.ComponentSvc))
	if err != nil {
		return err
	}
	nodes, err := r.Swarm.Nodes(ctx)
	if err != nil {
		return err
	}
	names := map[string]string{}
	stopped := map[string]string{}
	var brokers []string
	for _, s := range brokerSvcs {
		names[s.ID] = s.Spec.Name
		brokers = append(brokers, s.Spec.Name)
		if n := s.Spec.Labels[LabelRetiringNode]; n != "" {
			stopped[s.Spec.Name] = n
		}
	}
	for i := 0; i < int(*c.Spec.Replicas); i++ {
		brokers = append(brokers, api.BrokerService(c.Name, i))
	}
	v.tasks = map[string][]dswarm.Task{}
	for _, t := range brokerTasks {
		if n := names[t.ServiceID]; n != "" {
			v.tasks[n] = append(v.tasks[n], t)
		}
	}
	v.Hostname = map[string]string{}
	for _, n := range nodes {
		v.Hostname[n.ID] = n.Description.Hostname
	}
	delay, _ := c.Spec.Sync.Delay.Parse()
	in := datasync.PlanInput{
		Cluster: c.Name, Delay: delay, Brokers: brokers, BrokerTasks: v.tasks,
		AgentTasks: agentTasks, Nodes: nodes, Network: r.ControlNetwork, Stopped: stopped,
	}
	// The node watch asks every agent, those of nodes found lost too (it
	// hears them come back); the plan leaves the lost ones out.
	cl := r.syncClient(c, m)
	r.watchTarget(c, cl, datasync.Plan(in), v.Hostname)
	in.Lost = r.lostNodes(c.Name)
	v.Plan = datasync.Plan(in)
	v.Status, v.Errs = map[string]datasync.Status{}, map[string]string{}
	for _, node := range slices.Sorted(maps.Keys(v.Plan)) {
		cfg := v.Plan[node]
		p, _ := cfg.Peer(node)
		addr := net.JoinHostPort(p.Addr, strconv.Itoa(datasync.AgentPort))
		st, err := cl.Status(ctx, addr)
		if err != nil {
			v.Errs[node] = err.Error()
			continue
		}
		if st.ConfigHash != cfg.Hash() {
			if err := r.fence(); err != nil {
				return err
			}
			if err := cl.Configure(ctx, addr, cfg); err != nil {
				v.Errs[node] = err.Error()
				continue
			}
			r.log().Info("configured sync agent", "cluster", c.Name, "node", p.Hostname, "sources", sourcesOf(cfg, node))
			r.event(c.Name, api.EventNormal, "SyncConfigured", "sync agent on %s: source of [%s], %d peers", p.Hostname, sourcesOf(cfg, node), len(cfg.Peers))
			st.ConfigHash = cfg.Hash()
		}
		v.Status[node] = st
	}
	return nil
}

func sourcesOf(cfg datasync.Config, node string) string {
	var s []string
	for _, b := range cfg.Brokers {
		if b.Source == node {
			s = append(s, b.Name)
		}
	}
	return strings.Join(s, ",")
}

// retire stops a broker that is to be removed (a clean stop: Mosquitto
// saves its state) and lets the removal go once the agent on its node has
// synced that state to every target, or after RetireTimeout.
func (r *Reconciler) retire(ctx context.Context, c *api.MqttCluster, v *passView, s dswarm.Service) (bool, error) {
	log := r.log().With("cluster", c.Name, "broker", s.Spec.Name)
	tasks := v.tasks[s.Spec.Name]
	if rep := s.Spec.Mode.Replicated; rep != nil && rep.Replicas != nil && *rep.Replicas != 0 {
		// Drained first: no new client is sent to it, and its clients
		// are moved a few at a time, not all at once when it stops.
		if i, err := strconv.Atoi(s.Spec.Labels[broker.LabelIndex]); err == nil && v.roll != nil {
			if err := v.roll.Drain(ctx, i); err != nil {
				return false, err
			}
		}
		if !v.enabled {
			return true, nil // nothing to sync: removed now
		}
		return false, r.stopForRetirement(ctx, c, v, s)
	}
	since, err := time.Parse(time.RFC3339Nano, s.Spec.Labels[LabelRetiring])
	if err != nil || r.now().Sub(since) > RetireTimeout {
		log.Warn("removing broker without confirming its last sync", "waited", RetireTimeout.String())
		r.event(c.Name, api.EventWarning, "BrokerRemovedUnsynced", "%s removed without confirming its last sync after %s", s.Spec.Name, RetireTimeout)
		return true, nil
	}
	for _, t := range tasks {
		if !datasync.Stopped(t) {
			return false, nil // still stopping
		}
	}
	src := s.Spec.Labels[LabelRetiringNode]
	if src == "" {
		log.Warn("removing broker: it ran on no node, nothing to sync")
		return true, nil
	}
	var targets []string
	for _, b := range v.Plan[src].Brokers {
		if b.Name == s.Spec.Name {
			targets = b.Targets
		}
	}
	st, ok := v.Status[src]
	if !ok {
		return false, nil // its node's agent is not reachable (yet)
	}
	if cp := st.Copies[api.BrokerVolume(s.Spec.Name)]; cp.Running {
		return false, nil // the container has not exited yet
	}
	if syncedSince(st, s.Spec.Name, since) < len(targets) {
		return false, nil
	}
	log.Info("the stopped broker's last state reached every target", "targets", len(targets))
	r.event(c.Name, api.EventNormal, "BrokerSynced", "%s's last state reached %d nodes", s.Spec.Name, len(targets))
	return true, nil
}

// stopForRetirement scales a removed broker to zero, labelled with when
// and where it ran, so its last state is synced before it goes.
func (r *Reconciler) stopForRetirement(ctx context.Context, c *api.MqttCluster, v *passView, s dswarm.Service) error {
	spec := s.Spec
	zero := uint64(0)
	spec.Mode.Replicated = &dswarm.ReplicatedService{Replicas: &zero}
	spec.Labels = maps.Clone(spec.Labels)
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
	spec.Labels[LabelRetiring] = r.now().UTC().Format(time.RFC3339Nano)
	spec.Labels[LabelRetiringNode] = datasync.SourceNode(v.tasks[s.Spec.Name])
	if err := r.fence(); err != nil {
		return err
	}
	if err := r.Swarm.UpdateService(ctx, s.ID, s.Version, spec); err != nil {
		return err
	}
	r.log().Info("stopping broker before removing it: its last state is synced first", "cluster", c.Name, "broker", s.Spec.Name, "node", v.Hostname[spec.Labels[LabelRetiringNode]])
	r.event(c.Name, api.EventNormal, "BrokerStopping", "%s stopped before its removal, its last state is synced first", s.Spec.Name)
	return nil
}

// syncedSince counts the targets of broker whose copy began after since
// with nothing changed after: they hold the state saved at the stop.
func syncedSince(st datasync.Status, broker string, since time.Time) int {
	synced := 0
	for _, ss := range st.Sources {
		if ss.Broker != broker {
			continue
		}
		for _, t := range ss.Targets {
			if !t.Pending && t.LastSync.After(since) {
				synced++
			}
		}
	}
	return synced
}
