package cluster

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/bridges"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/brokerauth"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/brokermetrics"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/certs"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/cleanup"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/datasync"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/issuer"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/loadbalancer"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/network"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/rollout"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/secrets"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/status"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// CredentialStore keeps the clusters' material (the store, sealed): the
// one thing a pass writes outside Swarm before it ends, because a
// certificate must be stored before any task mounts it.
type CredentialStore interface {
	Credentials(cluster string) (*credentials.Material, error)
	SaveCredentials(cluster string, m credentials.Material) error
}

// Leadership is asked before every batch of Swarm writes (see fence).
type Leadership interface {
	IsLeader() bool
	VerifyLeader() error
}

// Metrics count the certificates issued and pushed (nil: none).
type Metrics interface {
	CertificateIssued(reason string)
	CertificatePushed()
}

// Result is what a pass found and wants: the cluster's status (nil when
// the pass stopped before observing), the events of its actions, and when
// to come back (0: at the resync).
type Result struct {
	Status       *api.MqttClusterStatus
	Events       []api.Event
	RequeueAfter time.Duration
	// Users are the statuses of the cluster's MqttUsers, by name (nil:
	// the pass did not get to them).
	Users map[string]api.MqttUserStatus
}

// UserSource lists a cluster's MqttUsers (the objects layer).
type UserSource interface {
	UsersOf(cluster string) ([]api.MqttUser, error)
}

// Reconciler brings one MqttCluster's Swarm state to its spec, in
// order: network, credentials (store), secrets, brokers, load balancer,
// pruning, then status, which it returns (controller/leader's Clusters
// runs it and stores the result).
type Reconciler struct {
	Swarm      swarm.Client
	Leadership Leadership
	// Credentials load and store the clusters' material.
	Credentials CredentialStore
	OperatorID  string
	Log         *slog.Logger
	// Metrics, when set, counts certificates issued and pushed.
	Metrics Metrics
	// Now is the clock (tests inject one). Default time.Now.
	Now func() time.Time
	// StableAfter is how long a task must have been running to count as
	// ready, so a task that crashes at start is not taken for a working
	// one. Default 3s.
	StableAfter time.Duration
	// trackers follow each cluster's bridges from the brokers' logs.
	mu       sync.Mutex
	trackers map[string]*bridges.Tracker
	// trackerBuilt is when each cluster's tracker was (re)built.
	trackerBuilt map[string]time.Time
	// syncClients reach each cluster's sync agents (see syncClient).
	syncClients map[string]cachedSyncClient
	// PollWhileProgressing re-reconciles a cluster that is not Ready yet
	// this often, so its status follows the tasks. Default 2s.
	PollWhileProgressing time.Duration
	// ControlNetwork, when set, is the operator's own overlay network (the
	// operator stack's). HAProxy tasks join it and serve their runtime API
	// to it only; the operator pushes the current certificate into every
	// running HAProxy task through it, so a renewal restarts nothing and
	// drops no client. Empty: a renewed certificate rolls the HAProxy
	// tasks (one at a time), as any spec change does.
	ControlNetwork string
	// Runtime reaches HAProxy's runtime API. Default loadbalancer.Runtime{}.
	Runtime CertRuntime
	// SignerImage is the operator's own image, run as a Swarm job to sign
	// with a cluster's spec.tls.issuerSecret (empty: issuers refused).
	SignerImage string
	// SyncImage runs the sync agents of clusters with spec.sync (lsyncd,
	// rsync and this binary; empty: spec.sync is refused).
	SyncImage string
	// BrokerAnswers says whether a broker task accepts a connection at
	// ip (its control-network address) now. Default: a TCP connection to
	// its MQTT port within BrokerAnswerTimeout.
	BrokerAnswers func(ctx context.Context, ip string) bool
	// NoFence: the sync agents never stop their node's brokers when cut
	// off (with --move-off-lost-nodes=false: nothing moves them ahead of
	// Swarm).
	NoFence bool
	// SyncAgents reaches the sync agents (default: their HTTP API).
	SyncAgents SyncAgentClient
	// BrokerMetrics runs each cluster's broker exporter (SignerImage,
	// on the control network).
	BrokerMetrics bool
	// Identity is the operator's own certificate (control-plane CA): with
	// a control network, each cluster's HAProxy runtime API is served over
	// mutual TLS with an admin certificate from the same CA, and only this
	// certificate's holder gets a command through. Nil: the runtime API is
	// guarded by the control network's subnet only.
	Identity *tlsutil.Node
	// Auth, with a control network and Identity, pushes every cluster's
	// users and ACL rules to its brokers at runtime (the brokers join the
	// control network, and refuse clients until they have them). Nil:
	// spec.auth.acls is not enforced (the ACLsApplied condition says so).
	Auth *brokerauth.Pusher
	// Users lists each cluster's MqttUsers (nil: none).
	Users UserSource
	// pending are the events of the passes in progress, by cluster.
	pending map[string][]api.Event
	// lost are the brokers found gone (BrokerLost) and not reached since,
	// by cluster.
	lost map[string]map[int]bool
	// bridgeStates are what brokers last said of their own bridges
	// (BridgeState), by cluster.
	bridgeStates map[string]map[int]bridgeState
	// loads are the brokers' message rates (BrokerLoad), by cluster.
	loads map[string]map[int]brokerLoad
	// nodes is the watch for lost nodes (WatchNodes).
	nodes nodeWatch
}

// CertRuntime is HAProxy's runtime API: the certificate a task serves,
// and the brokers' server states (drained during a rolling update).
type CertRuntime interface {
	ServedCertificate(ctx context.Context, addr string) (loadbalancer.Served, error)
	PushCertificate(ctx context.Context, addr string, pem []byte) error
	DrainedServers(ctx context.Context, addr string) (map[string]bool, error)
	SetServerState(ctx context.Context, addr, server, state string) error
	ShutdownSessions(ctx context.Context, addr, server string, rate int, budget time.Duration, fence func() error) (int, error)
	ShutdownYoungSessions(ctx context.Context, addr, server string, maxAge time.Duration, fence func() error) (int, error)
	Connections(ctx context.Context, addr string) (int64, error)
}

// ErrNotLeaderAnyMore stops a pass when leadership is lost half way.
var ErrNotLeaderAnyMore = errors.New("lost raft leadership: stopping before the next Swarm write")

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// issuer is the signer-job reconciler (spec.tls.issuerSecret).
func (r *Reconciler) issuer() *issuer.Reconciler {
	return &issuer.Reconciler{
		Swarm: r.Swarm, OperatorID: r.OperatorID, Image: r.SignerImage, Fence: r.fence, Now: r.Now, Log: r.Log,
		Save: func(c *api.MqttCluster, m credentials.Material) error {
			return r.Credentials.SaveCredentials(c.Name, m)
		},
		Issued: r.metrics().CertificateIssued,
	}
}

// saveMaterial stores a cluster's material, fenced.
func (r *Reconciler) saveMaterial(c *api.MqttCluster, m credentials.Material) error {
	if err := r.fence(); err != nil {
		return err
	}
	return r.Credentials.SaveCredentials(c.Name, m)
}

// noMetrics counts nothing.
type noMetrics struct{}

func (noMetrics) CertificateIssued(string) {}
func (noMetrics) CertificatePushed()       {}

func (r *Reconciler) metrics() Metrics {
	if r.Metrics == nil {
		return noMetrics{}
	}
	return r.Metrics
}

func (r *Reconciler) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

// fence runs before every batch of Swarm writes (and certificate pushes):
// this node must lead, and a quorum must confirm it (VerifyLeader), so a
// leader that was paused or cut off, and resumes thinking it leads, learns
// otherwise before it writes. What is left is the time between that check
// and the write itself (a Docker API call): see the README.
func (r *Reconciler) fence() error {
	if !r.Leadership.IsLeader() {
		return ErrNotLeaderAnyMore
	}
	if err := r.Leadership.VerifyLeader(); err != nil {
		return fmt.Errorf("%w (%v)", ErrNotLeaderAnyMore, err)
	}
	return nil
}

// Discover lists the clusters that own objects in Swarm, so that a cluster
// deleted while no operator led is still cleaned up.
func (r *Reconciler) Discover(ctx context.Context) ([]string, error) {
	svcs, err := r.Swarm.Services(ctx, map[string]string{swarm.LabelOwner: r.OperatorID})
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, s := range svcs {
		if n := s.Spec.Labels[swarm.LabelCluster]; n != "" {
			names[n] = true
		}
	}
	// A cleanup cut short leaves a network (it is removed last).
	nets, err := r.Swarm.Networks(ctx, map[string]string{swarm.LabelOwner: r.OperatorID})
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if c := n.Labels[swarm.LabelCluster]; c != "" {
			names[c] = true
		}
	}
	return slices.Sorted(maps.Keys(names)), nil
}

// Reconcile brings c's Swarm state to its spec and returns its status,
// the events of the pass and when to come back. c is defaulted and valid
// (the leader admits a stored object again before each pass); c.Status is
// the stored status (kept where nothing changed).
func (r *Reconciler) Reconcile(ctx context.Context, c *api.MqttCluster) (res Result, err error) {
	if err := r.fence(); err != nil {
		return Result{}, err
	}
	defer func() { res.Events = r.takeEvents(c.Name) }()
	if c, err = r.scaled(ctx, c); err != nil {
		return Result{}, err
	}
	var sv passView
	res, keep, push, recErr := r.apply(ctx, c, &sv)
	if errors.Is(recErr, ErrNotLeaderAnyMore) {
		return Result{}, recErr
	}
	// One list of the services, as the writes left them, serves the
	// pruning and the status.
	svcs, err := r.Swarm.Services(ctx, swarm.Owned(r.OperatorID, c.Name))
	if err != nil {
		return Result{}, errors.Join(recErr, err)
	}
	if keep != nil {
		recErr = r.prune(ctx, c.Name, keep, svcs)
		if errors.Is(recErr, ErrNotLeaderAnyMore) {
			return Result{}, recErr
		}
	}
	out, err := r.observe(ctx, c, svcs, push, &sv, recErr)
	if err != nil {
		return Result{}, errors.Join(recErr, err)
	}
	ready, settle := out.Ready, out.Settle
	res.Status = &out.Status
	res.Users = userStatuses(sv.users, sv.secrets, sv.auth, r.now())
	if recErr != nil {
		r.event(c.Name, api.EventWarning, "ReconcileError", "%s", recErr.Error())
	}
	if !ready {
		// Come back when the next task has run long enough to count, or
		// at the polling interval, whichever is first.
		next := r.poll()
		if settle > 0 && settle < next {
			next = settle
		}
		if !push.All() && push.Young {
			// A HAProxy task that just started serves the certificate it
			// started with until the push: come back soon (an older one
			// that does not answer waits for the normal poll).
			next = min(next, 200*time.Millisecond)
		}
		if res.RequeueAfter == 0 || res.RequeueAfter > next {
			res.RequeueAfter = next
		}
	}
	res.RequeueAfter = refresh(res.RequeueAfter, sv.enabled, c.Spec.Scaling.Auto())
	if errors.Is(recErr, broker.ErrMissingSecret) || errors.Is(recErr, issuer.ErrSigning) {
		// Retrying cannot fix it until the user acts (or the signer job
		// ends): the condition says so, and the requeue, the resync and
		// Docker's events try again.
		return res, nil
	}
	return res, recErr
}

// admit sets which brokers HAProxy sends new clients to (rollout's
// Admit), from the bridges and tasks the status read; it fails only when
// leadership is lost.
func (r *Reconciler) admit(ctx context.Context, c *api.MqttCluster, sv *passView) error {
	if sv.roll == nil || sv.bridges == nil {
		return nil // the pass stopped before
	}
	sv.roll.Joined = joined(sv.bridges, c.Name, int(*c.Spec.Replicas), sv.latest)
	sv.roll.Gone = r.gone(c.Name)
	err := sv.roll.Admit(ctx)
	if errors.Is(err, ErrNotLeaderAnyMore) {
		return err
	}
	if err != nil {
		r.log().Warn("admission in HAProxy failed", "cluster", c.Name, "err", err)
	}
	return nil
}

// refresh is the requeue delay with the periodic passes a cluster needs:
// its sync status follows the agents' syncs, its Auto count the load.
func refresh(after time.Duration, syncing, auto bool) time.Duration {
	for _, every := range []struct {
		on    bool
		after time.Duration
	}{{syncing, SyncRefresh}, {auto, AutoscaleRefresh}} {
		if every.on && (after == 0 || after > every.after) {
			after = every.after
		}
	}
	return after
}

// SyncRefresh is how often a cluster with spec.sync is reconciled, so its
// sync status (and the age metric) follows the agents.
const SyncRefresh = 5 * time.Second

func (r *Reconciler) poll() time.Duration {
	if r.PollWhileProgressing > 0 {
		return r.PollWhileProgressing
	}
	return time.Second
}

// apply makes the Swarm writes of one pass, then pushes the certificate
// into HAProxy. keep names the secrets in use; it is nil when the pass
// stopped early (then nothing may be pruned).
func (r *Reconciler) apply(ctx context.Context, c *api.MqttCluster, sv *passView) (res Result, keep map[string]bool, push status.Serving, err error) {
	p, res, err := r.begin(ctx, c)
	if err != nil {
		return res, nil, push, err
	}
	sv.material = &p.m // kept current: component certificates land in it
	tlsIn, err := p.tlsInputs()
	if err != nil {
		return res, nil, push, err
	}
	in, err := p.brokerInputs(&tlsIn)
	if err != nil {
		return res, nil, push, err
	}
	// Before the workloads: a later step that fails does not hold back
	// a rule change (new brokers get it when they come up).
	if sv.users, err = p.ensureUsers(); err != nil {
		return res, nil, push, err
	}
	sv.secrets = p.m.Users
	sv.auth = p.pushAuth(in, sv.users)
	if err := p.sideServices(sv, in.ControlCA); err != nil {
		return res, nil, push, err
	}
	if err := p.workloads(sv, in, tlsIn); err != nil {
		return res, nil, push, err
	}
	if tlsIn.Keep != nil && !p.usedCurrent {
		p.inUse[tlsIn.Keep.Spec.Name] = true
	}
	if p.control != nil && *c.Spec.LoadBalancer.Ports.MQTTS != 0 {
		if push, err = r.pushCertificate(ctx, c, p.m, p.control); err != nil {
			return res, nil, push, err
		}
	}
	return res, p.inUse, push, nil
}

// pushAuth gives the brokers the cluster's users and rules (the pusher
// keeps them current between passes) and says which brokers have them.
func (p *pass) pushAuth(in broker.Inputs, users []api.MqttUser) *status.AuthView {
	c := p.c
	st := brokerauth.Render(c, users, p.m.Users)
	v := &status.AuthView{Version: st.Version, Rules: st.Rules, Brokers: int(*c.Spec.Replicas), Parked: api.Parked(c)}
	if !in.Auth() {
		return v
	}
	t := brokerauth.Target{
		Brokers: int(*c.Spec.Replicas), Parked: slices.Sorted(maps.Keys(v.Parked)),
		Addr: func(i int) string {
			return net.JoinHostPort(api.BrokerTaskHost(c.Name, i), strconv.Itoa(broker.InternalPort))
		},
		User: broker.BridgeUser, Password: p.m.BridgePassword, CA: p.r.Identity.CA().CertPEM(),
	}
	v.Enforced = true
	if v.Applied = p.r.Auth.Set(c.Name, t, st); len(v.Applied) < v.Want() {
		// A push takes milliseconds: wait for the answers (not for a
		// broker that is down), so the status says where it stands.
		v.Applied = p.r.Auth.Wait(c.Name, st.Version, 2*time.Second)
	}
	return v
}

// pass is what one pass's writes share: the cluster, its material, the
// control network, and the secrets it made or found in use.
type pass struct {
	r       *Reconciler
	ctx     context.Context
	c       *api.MqttCluster
	log     *slog.Logger
	m       credentials.Material
	control *loadbalancer.ControlNetwork
	sr      *secrets.Reconciler
	inUse   map[string]bool
	comp    *componentSecrets
	// usedCurrent: the current certificate's secret was made this pass.
	usedCurrent bool
}

// begin makes the network, finds the control network, and brings the
// material up to date (issued, signed, stored); res asks to come back
// at the material's next event (a renewal, a CA switch).
func (r *Reconciler) begin(ctx context.Context, c *api.MqttCluster) (*pass, Result, error) {
	var res Result
	p := &pass{r: r, ctx: ctx, c: c, log: r.log().With("cluster", c.Name), inUse: map[string]bool{},
		sr: &secrets.Reconciler{Swarm: r.Swarm, OperatorID: r.OperatorID}}
	nr := &network.Reconciler{Swarm: r.Swarm, OperatorID: r.OperatorID}
	if created, err := nr.Reconcile(ctx, c.Name); err != nil {
		return nil, res, err
	} else if created {
		p.log.Info("created network", "network", api.NetworkName(c.Name))
		r.event(c.Name, api.EventNormal, "Created", "network %s", api.NetworkName(c.Name))
	}
	var err error
	if r.ControlNetwork != "" {
		if p.control, err = r.controlNetwork(ctx); err != nil {
			return nil, res, err
		}
	}
	if p.m, err = r.credentials(c); err != nil {
		return nil, res, err
	}
	if p.m, err = r.issuer().Reconcile(ctx, c, p.m); err != nil {
		if errors.Is(err, issuer.ErrSigning) {
			res.RequeueAfter = time.Second
		}
		return nil, res, err
	}
	if at, err := credentials.NextEvent(p.m, c); err == nil && !at.IsZero() {
		res.RequeueAfter = max(at.Sub(r.now()), time.Second)
	}
	p.comp = &componentSecrets{r: r, c: c, m: &p.m, ensure: p.ensure}
	return p, res, nil
}

// ensure returns the secret holding data (made when missing) and counts
// it in use.
func (p *pass) ensure(component string, data []byte) (*dswarm.Secret, error) {
	if err := p.r.fence(); err != nil {
		return nil, err
	}
	s, created, err := p.sr.Ensure(p.ctx, p.c.Name, component, data)
	if err != nil {
		return nil, err
	}
	if created {
		p.log.Info("created secret", "secret", s.Spec.Name)
		p.r.event(p.c.Name, api.EventNormal, "CreatedSecret", "secret %s", s.Spec.Name)
	}
	p.inUse[s.Spec.Name] = true
	return s, nil
}

// tlsInputs are the load balancer's certificates: the served one (the
// user's secret, or ours made lazily), the one its tasks started with,
// the client CA, and the runtime API's admin certificate.
func (p *pass) tlsInputs() (loadbalancer.TLS, error) {
	var tlsIn loadbalancer.TLS
	c, r, ctx := p.c, p.r, p.ctx
	var err error
	if *c.Spec.LoadBalancer.Ports.MQTTS != 0 {
		if userCert := c.Spec.TLS.CertificateSecret; userCert != "" {
			// Served as is: a new secret name rolls HAProxy.
			s, err := swarm.SecretByName(ctx, r.Swarm, userCert, "spec.tls.certificateSecret", c.Name)
			if err != nil {
				return tlsIn, err
			}
			tlsIn.Current = func() (*dswarm.Secret, error) { return s, nil }
		} else {
			tlsIn.Current = func() (*dswarm.Secret, error) {
				p.usedCurrent = true
				return p.ensure(secrets.ComponentTLS, credentials.HAProxyPEM(p.m))
			}
			if p.control != nil {
				if tlsIn.Keep, err = r.startupCertificate(ctx, c.Name); err != nil {
					return tlsIn, err
				}
			}
		}
		if c.Spec.TLS.ClientAuth != api.ClientAuthNone {
			if tlsIn.ClientCA, err = swarm.SecretByName(ctx, r.Swarm, c.Spec.TLS.ClientCASecret, "spec.tls.clientCASecret", c.Name); err != nil {
				return tlsIn, err
			}
		}
	}
	if p.control != nil && r.Identity != nil {
		if tlsIn.Admin, tlsIn.ControlCA, err = p.comp.get(lbAdminCert); err != nil {
			return tlsIn, err
		}
	}
	return tlsIn, nil
}

// brokerInputs are the brokers' secrets: the password files, the
// data-plane certificate (HAProxy -> brokers, the bridges, the exporter,
// from the control-plane CA) and each broker's bridge section.
func (p *pass) brokerInputs(tlsIn *loadbalancer.TLS) (broker.Inputs, error) {
	c, m := p.c, p.m
	in := broker.Inputs{Bridges: map[int]*dswarm.Secret{}}
	var err error
	if c.Spec.Auth.PasswordFileSecret == "" && !*c.Spec.Auth.AllowAnonymous {
		if in.Passwd, err = p.ensure(secrets.ComponentPasswd, m.PasswordFile); err != nil {
			return in, err
		}
	}
	if in.Internal, err = p.ensure(secrets.ComponentInternal, m.InternalPasswordFile); err != nil {
		return in, err
	}
	if p.r.Identity != nil {
		if in.TLS, in.ControlCA, err = p.comp.get(brokerCert); err != nil {
			return in, err
		}
		tlsIn.ControlCA, tlsIn.BackendTLS = in.ControlCA, true
		if p.r.Auth != nil && p.control != nil {
			in.ControlNetwork = p.control.Name
		}
	}
	for i := 1; i < int(*c.Spec.Replicas); i++ {
		conf, err := broker.RenderBridge(c.Name, i, m.BridgePassword, in.Options())
		if err != nil {
			return in, err
		}
		if in.Bridges[i], err = p.ensure(secrets.ComponentBridge(i), conf); err != nil {
			return in, err
		}
	}
	return in, nil
}

// sideServices are the sync agents (configured through their API) and
// the broker exporter.
func (p *pass) sideServices(sv *passView, controlCA *dswarm.Secret) error {
	r, c, ctx := p.r, p.c, p.ctx
	sv.enabled = datasync.Enabled(c)
	syncSecret, err := r.syncSecrets(sv.enabled, p.control, p.m, p.ensure, p.comp)
	if err != nil {
		return err
	}
	if err := r.fence(); err != nil {
		return err
	}
	dr := &datasync.Reconciler{Swarm: r.Swarm, OperatorID: r.OperatorID, Image: r.SyncImage, ControlNetwork: r.ControlNetwork, NoFence: r.NoFence}
	dout, err := dr.Reconcile(ctx, c, syncSecret)
	r.outcome(c.Name, p.log, "sync", dout)
	if err != nil {
		return err
	}
	if sv.enabled {
		if err := r.pushSync(ctx, c, p.m, sv); err != nil {
			return err
		}
	} else {
		r.forgetNodes(c.Name) // no agents to watch
	}
	var exporterSecret *dswarm.Secret
	if r.BrokerMetrics && p.control != nil && r.SignerImage != "" {
		if exporterSecret, err = p.ensure(brokermetrics.ComponentSecret, []byte(p.m.BridgePassword)); err != nil {
			return err
		}
	}
	if err := r.fence(); err != nil {
		return err
	}
	er := &brokermetrics.Reconciler{Swarm: r.Swarm, OperatorID: r.OperatorID, Image: r.SignerImage, ControlNetwork: r.ControlNetwork, Network: api.NetworkName, ControlCA: controlCA}
	eout, err := er.Reconcile(ctx, c, exporterSecret)
	r.outcome(c.Name, p.log, "exporter", eout)
	return err
}

// workloads are the brokers (rolled one at a time, retired after their
// last sync) and the load balancer.
func (p *pass) workloads(sv *passView, in broker.Inputs, tlsIn loadbalancer.TLS) error {
	r, c, ctx := p.r, p.c, p.ctx
	br := &broker.Reconciler{Swarm: r.Swarm, OperatorID: r.OperatorID, Network: api.NetworkName}
	br.Retire = func(ctx context.Context, s dswarm.Service) (bool, error) { return r.retire(ctx, c, sv, s) }
	sv.roll = &rollout.Gate{Swarm: r.Swarm, OperatorID: r.OperatorID, Cluster: c, Control: p.control, Runtime: r.runtime(c.Name),
		Fence: r.fence, Now: r.now, StableAfter: r.stableAfter(), Log: r.log(), LostNodes: r.lostNodes(c.Name), Answers: r.brokerAnswers}
	br.MayUpdate = sv.roll.MayUpdate
	// Read last: the node watch may have moved a broker during the pass.
	in.Evicted = r.evictedBrokers(c.Name)
	if sv.enabled {
		br.Rendered = func(i int, spec dswarm.ServiceSpec) { r.rendered(c.Name, i, spec) }
	}
	bout, berr := br.Reconcile(ctx, c, in)
	for _, e := range sv.roll.Events {
		r.event(c.Name, e.Type, e.Reason, "%s", e.Message)
	}
	r.outcome(c.Name, p.log, "broker", bout)
	if err := r.fence(); err != nil {
		return err
	}
	lr := &loadbalancer.Reconciler{Swarm: r.Swarm, OperatorID: r.OperatorID, Network: api.NetworkName, Control: p.control}
	lout, lerr := lr.Reconcile(ctx, c, tlsIn)
	r.outcome(c.Name, p.log, "loadbalancer", lout)
	return errors.Join(berr, lerr)
}

// componentLifetime is how long a component certificate (HAProxy admin,
// sync agents, brokers) is valid; it is reissued componentRenewBefore its
// end, or at once when the control-plane CA no longer verifies it (a CA
// rotation). A reissue is a new Docker secret: the component's tasks roll
// one at a time (brokers drained first).
const (
	componentLifetime    = 2 * 365 * 24 * time.Hour
	componentRenewBefore = 30 * 24 * time.Hour
)

// component is one kind of certificate the operator issues a cluster's
// components from the control-plane CA, where it is kept in the material,
// and the secret it goes in.
type component struct {
	kind   tlsutil.Kind
	names  func(cluster string) []string // DNS names (nil: none)
	slot   func(m *credentials.Material) **certs.Pair
	secret string // the secrets component
	reason string // the event's reason
	what   string // for the log and the event
}

var (
	lbAdminCert = component{kind: tlsutil.Admin, slot: func(m *credentials.Material) **certs.Pair { return &m.LBAdmin },
		secret: secrets.ComponentLBAdmin,
		reason: "IssuedAdminCertificate", what: "HAProxy runtime API certificate (mutual TLS with the operator)"}
	brokerCert = component{kind: tlsutil.Broker, names: broker.TLSNames, slot: func(m *credentials.Material) **certs.Pair { return &m.BrokerTLS },
		secret: secrets.ComponentBrokerTLS,
		reason: "IssuedBrokerCertificate", what: "brokers' certificate (TLS from HAProxy and between brokers)"}
	syncCert = component{kind: tlsutil.Sync, slot: func(m *credentials.Material) **certs.Pair { return &m.SyncTLS },
		secret: secrets.ComponentSyncTLS,
		reason: "IssuedSyncCertificate", what: "sync agents' certificate (TLS between agents and with the operator)"}
)

// ensureComponent makes sure m holds a valid certificate of kind k for
// c, issuing and storing (sealed) one when needed.
func (r *Reconciler) ensureComponent(c *api.MqttCluster, m credentials.Material, k component) (credentials.Material, error) {
	ca := r.Identity.CA()
	var names []string
	if k.names != nil {
		names = k.names(c.Name)
	}
	slot := k.slot(&m)
	if *slot != nil && ca.ComponentValid(k.kind, c.Name, names, (*slot).CertPEM, r.now(), componentRenewBefore) {
		return m, nil
	}
	cert, key, err := ca.IssueComponent(k.kind, c.Name, names, componentLifetime, r.now())
	if err != nil {
		return m, err
	}
	*slot = &certs.Pair{CertPEM: cert, KeyPEM: key}
	if err := r.saveMaterial(c, m); err != nil {
		return m, err
	}
	r.log().Info("issued the "+k.what, "cluster", c.Name)
	r.event(c.Name, api.EventNormal, k.reason, "%s", k.what)
	return m, nil
}

// syncSecrets are the secrets a cluster's sync agents mount (none when
// sync is off): the rsync password and, with the control-plane CA, their
// certificate and the CA certificate.
func (r *Reconciler) syncSecrets(enabled bool, control *loadbalancer.ControlNetwork, m credentials.Material,
	ensure func(string, []byte) (*dswarm.Secret, error), comp *componentSecrets) (datasync.Secrets, error) {
	var out datasync.Secrets
	if !enabled {
		return out, nil
	}
	if control == nil || r.SyncImage == "" {
		return out, datasync.ErrNoControlNetwork
	}
	var err error
	if out.Password, err = ensure(datasync.ComponentSecret, []byte(m.SyncPassword)); err != nil {
		return out, err
	}
	if r.Identity != nil {
		out.TLS, out.ControlCA, err = comp.get(syncCert)
	}
	return out, err
}

// componentSecrets hold a pass's component certificates as secrets, and
// the control-plane CA certificate's secret, made once per pass.
type componentSecrets struct {
	r      *Reconciler
	c      *api.MqttCluster
	m      *credentials.Material
	ensure func(component string, data []byte) (*dswarm.Secret, error)
	ca     *dswarm.Secret
}

// get returns kind k's certificate secret (issued when needed) and the
// control-plane CA certificate's secret.
func (cs *componentSecrets) get(k component) (cert, ca *dswarm.Secret, err error) {
	if *cs.m, err = cs.r.ensureComponent(cs.c, *cs.m, k); err != nil {
		return nil, nil, err
	}
	p := *k.slot(cs.m)
	if cert, err = cs.ensure(k.secret, append(append([]byte{}, p.CertPEM...), p.KeyPEM...)); err != nil {
		return nil, nil, err
	}
	if cs.ca == nil {
		if cs.ca, err = cs.ensure(secrets.ComponentControlCA, cs.r.Identity.CA().CertPEM()); err != nil {
			return nil, nil, err
		}
	}
	return cert, cs.ca, nil
}

// controlNetwork looks up the operator's control network and its subnets.
func (r *Reconciler) controlNetwork(ctx context.Context) (*loadbalancer.ControlNetwork, error) {
	nets, err := r.Swarm.Networks(ctx, nil)
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if n.Name != r.ControlNetwork && n.ID != r.ControlNetwork {
			continue
		}
		cn := &loadbalancer.ControlNetwork{Name: n.Name}
		for _, cfg := range n.IPAM.Config {
			if cfg.Subnet != "" {
				cn.Subnets = append(cn.Subnets, cfg.Subnet)
			}
		}
		if len(cn.Subnets) == 0 {
			return nil, fmt.Errorf("control network %s has no subnet", n.Name)
		}
		slices.Sort(cn.Subnets)
		return cn, nil
	}
	return nil, fmt.Errorf("control network %s not found (the operator stack creates it)", r.ControlNetwork)
}

// startupCertificate is the certificate secret the live HAProxy service
// references, when it still exists: what a task starts with before the
// operator pushes the current certificate into it.
func (r *Reconciler) startupCertificate(ctx context.Context, cluster string) (*dswarm.Secret, error) {
	svcs, err := r.Swarm.Services(ctx, swarm.OwnedComponent(r.OperatorID, cluster, loadbalancer.ComponentSvc))
	if err != nil {
		return nil, err
	}
	var id string
	for _, s := range svcs {
		if cs := s.Spec.TaskTemplate.ContainerSpec; s.Spec.Name == api.LoadBalancerService(cluster) && cs != nil {
			for _, ref := range cs.Secrets {
				if ref.File != nil && ref.File.Name == loadbalancer.CertFile {
					id = ref.SecretID
				}
			}
		}
	}
	if id == "" {
		return nil, nil
	}
	have, err := r.Swarm.Secrets(ctx, swarm.OwnedComponent(r.OperatorID, cluster, secrets.ComponentTLS))
	if err != nil {
		return nil, err
	}
	for _, s := range have {
		if s.ID == id {
			return &s, nil
		}
	}
	return nil, nil
}

// BrokerAnswerTimeout bounds the operator's connection to a broker task
// that HAProxy has down: a broker on the overlay answers in a millisecond or
// two, and the cluster loop (one pass at a time, every cluster) waits.
const BrokerAnswerTimeout = 100 * time.Millisecond

func (r *Reconciler) brokerAnswers(ctx context.Context, ip string) bool {
	if r.BrokerAnswers != nil {
		return r.BrokerAnswers(ctx, ip)
	}
	ctx, cancel := context.WithTimeout(ctx, BrokerAnswerTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(loadbalancer.BrokerPort)))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (r *Reconciler) runtime(cluster string) CertRuntime {
	if r.Runtime != nil {
		return r.Runtime
	}
	if r.Identity != nil {
		return loadbalancer.Runtime{TLS: r.Identity.ComponentClientConfig(tlsutil.Admin, cluster)}
	}
	return loadbalancer.Runtime{}
}

// pushCertificate makes every running HAProxy task of c serve the current
// certificate: each task's served certificate is read through the runtime
// API, and the current one pushed (set + commit ssl cert) where it
// differs. A task that does not answer yet (just started) is counted as
// not serving; the pass is requeued soon. With spec.tls.certificateSecret
// nothing is pushed: what the tasks serve is only read, for the status.
func (r *Reconciler) pushCertificate(ctx context.Context, c *api.MqttCluster, m credentials.Material, control *loadbalancer.ControlNetwork) (status.Serving, error) {
	res := status.Serving{Enabled: true}
	user := c.Spec.TLS.CertificateSecret != ""
	var want *x509.Certificate
	if !user {
		var err error
		if want, err = certs.ParseCert(m.Server.CertPEM); err != nil {
			return res, fmt.Errorf("server certificate of %s: %w", c.Name, err)
		}
	}
	tasks, err := r.Swarm.Tasks(ctx, swarm.OwnedComponent(r.OperatorID, c.Name, loadbalancer.ComponentSvc))
	if err != nil {
		return res, err
	}
	slices.SortFunc(tasks, func(a, b dswarm.Task) int { return cmp.Compare(a.ID, b.ID) })
	rt := r.runtime(c.Name)
	for _, t := range tasks {
		if t.DesiredState != dswarm.TaskStateRunning || t.Status.State != dswarm.TaskStateRunning {
			continue
		}
		res.Running++
		// Counted as young until it serves the current certificate.
		young := r.now().Sub(t.Status.Timestamp) < 10*time.Second
		res.Young = res.Young || young
		ip := swarm.TaskAddress(t, control.Name)
		if ip == "" {
			res.Why = append(res.Why, shortID(t.ID)+": no address on "+control.Name)
			continue
		}
		addr := loadbalancer.AdminAddr(ip)
		served, err := rt.ServedCertificate(ctx, addr)
		if err != nil {
			res.Why = append(res.Why, shortID(t.ID)+": "+err.Error())
			continue
		}
		if user {
			// The first task read stands for all: they mount one secret.
			if res.User == nil {
				res.User = &status.Served{Serial: served.Serial.Text(16), NotAfter: served.NotAfter}
			}
			res.Serving++
			continue
		}
		if served.Serial.Cmp(want.SerialNumber) == 0 {
			res.Serving++
			res.Young = res.Young && !young
			continue
		}
		if err := r.fence(); err != nil {
			return res, err
		}
		if err := rt.PushCertificate(ctx, addr, credentials.HAProxyPEM(m)); err != nil {
			res.Why = append(res.Why, shortID(t.ID)+": "+err.Error())
			continue
		}
		res.Serving++
		r.metrics().CertificatePushed()
		r.log().Info("pushed certificate into HAProxy", "cluster", c.Name, "task", shortID(t.ID), "serial", want.SerialNumber.Text(16), "replaced", served.Serial.Text(16))
		r.event(c.Name, api.EventNormal, "CertificatePushed", "certificate %s pushed into HAProxy task %s (replaced %s), no restart", want.SerialNumber.Text(16), shortID(t.ID), served.Serial.Text(16))
	}
	return res, nil
}

func shortID(id string) string { return id[:min(len(id), 12)] }

// prune removes old secret versions, and those of removed brokers, once
// none of the cluster's services references them.
func (r *Reconciler) prune(ctx context.Context, cluster string, keep map[string]bool, svcs []dswarm.Service) error {
	if err := r.fence(); err != nil {
		return err
	}
	sr := &secrets.Reconciler{Swarm: r.Swarm, OperatorID: r.OperatorID}
	removed, err := sr.Prune(ctx, cluster, keep, svcs)
	for _, n := range removed {
		r.log().Info("pruned secret", "cluster", cluster, "secret", n)
		r.event(cluster, api.EventNormal, "Pruned", "secret %s", n)
	}
	return err
}

// outcome logs what a reconciler's pass changed, and records it as events.
func (r *Reconciler) outcome(cluster string, log *slog.Logger, what string, o swarm.Outcome) {
	for _, n := range o.Created {
		log.Info("created", "component", what, "object", n)
		r.event(cluster, api.EventNormal, "Created", "%s %s", what, n)
	}
	for _, n := range o.Updated {
		log.Info("updated", "component", what, "object", n)
		r.event(cluster, api.EventNormal, "Updated", "%s %s (its tasks are replaced)", what, n)
	}
	for _, n := range o.Removed {
		log.Info("removed", "component", what, "object", n)
		r.event(cluster, api.EventNormal, "Removed", "%s %s", what, n)
	}
}

// credentials loads the cluster's material from the store, issuing what is
// missing or due and storing it before anything uses it.
func (r *Reconciler) credentials(c *api.MqttCluster) (credentials.Material, error) {
	cur, err := r.Credentials.Credentials(c.Name)
	if err != nil {
		return credentials.Material{}, err
	}
	next, reason, changed, err := credentials.Next(cur, c, r.now())
	if err != nil {
		return credentials.Material{}, err
	}
	if !changed {
		return next, nil
	}
	if err := r.fence(); err != nil {
		return credentials.Material{}, err
	}
	if err := r.Credentials.SaveCredentials(c.Name, next); err != nil {
		return credentials.Material{}, err
	}
	switch {
	case cur != nil && next.NextCA != nil && (cur.NextCA == nil || !next.CAIssuedAt.Equal(cur.CAIssuedAt)):
		nca, _ := certs.ParseCert(next.NextCA.CertPEM)
		r.log().Info("CA rotation started: the next CA is in the CA bundle", "cluster", c.Name, "reason", string(next.CAReason), "nextFingerprint", certs.Fingerprint(nca), "switchAt", credentials.CASwitchAt(next, c))
		r.event(c.Name, api.EventNormal, "CARotationStarted", "next CA %s in the CA bundle (%s); it signs from %s", certs.Fingerprint(nca), next.CAReason, credentials.CASwitchAt(next, c).UTC().Format(time.RFC3339))
	case cur != nil && cur.NextCA != nil && next.NextCA == nil:
		ca, _ := certs.ParseCert(next.CA.CertPEM)
		r.log().Info("CA rotation completed: the new CA signs", "cluster", c.Name, "fingerprint", certs.Fingerprint(ca))
		r.event(c.Name, api.EventNormal, "CARotated", "CA %s signs from now on", certs.Fingerprint(ca))
	case cur != nil && !next.CAIssuedAt.Equal(cur.CAIssuedAt):
		ca, _ := certs.ParseCert(next.CA.CertPEM)
		r.log().Info("CA replaced with no overlap", "cluster", c.Name, "reason", string(next.CAReason), "fingerprint", certs.Fingerprint(ca))
	}
	if reason != "" {
		r.metrics().CertificateIssued(string(reason))
		cert, _ := certs.ParseCert(next.Server.CertPEM)
		r.log().Info("issued server certificate", "cluster", c.Name, "reason", string(reason), "serial", cert.SerialNumber.Text(16), "notAfter", cert.NotAfter)
		r.event(c.Name, api.EventNormal, "CertificateIssued", "server certificate %s (%s), valid until %s", cert.SerialNumber.Text(16), reason, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return next, nil
}

// observe reads the live state, computes the status from it, and sets
// which brokers HAProxy admits (admit).
func (r *Reconciler) observe(ctx context.Context, c *api.MqttCluster, svcs []dswarm.Service, push status.Serving, sv *passView, recErr error) (status.Output, error) {
	tasks, err := r.Swarm.Tasks(ctx, swarm.Owned(r.OperatorID, c.Name))
	if err != nil {
		return status.Output{}, err
	}
	nodes, err := r.Swarm.Nodes(ctx)
	if err != nil {
		return status.Output{}, err
	}
	latest := status.Latest(svcs, tasks, api.LoadBalancerService(c.Name))
	sv.bridges, sv.latest = r.observeBridges(ctx, c.Name, int(*c.Spec.Replicas), latest), latest
	in := status.Input{
		Cluster: c, Now: r.now(), StableAfter: r.stableAfter(),
		Services: svcs, Tasks: tasks, Nodes: nodes,
		Links:   sv.bridges,
		Serving: push, SyncEnabled: sv.enabled, Failure: failure(recErr),
	}
	in.LoadBalancerAlerts = r.loadBalancerAlerts(ctx, c, svcs, tasks)
	if sv.enabled {
		in.SyncContract = r.syncContract(ctx, c, svcs, tasks)
	}
	in.Material = sv.material
	if in.Material == nil {
		if m, err := r.Credentials.Credentials(c.Name); err == nil {
			in.Material = m
		}
	}
	if sv.roll != nil {
		in.Rollout = status.Rollout{Message: sv.roll.Message(), Held: sv.roll.Held()}
	}
	if sv.enabled && sv.Plan != nil {
		in.Sync = &sv.SyncView
	}
	in.Auth = sv.auth
	out := status.Compute(in)
	for _, e := range out.Events {
		r.event(c.Name, e.Type, e.Reason, "%s", e.Message)
	}
	// Admission reads the same bridges and tasks.
	return out, r.admit(ctx, c, sv)
}

// failure classifies the error that stopped a pass for the Degraded
// condition.
func failure(err error) *status.Failure {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, issuer.ErrSigning):
		return &status.Failure{Err: err, Reason: "Signing", Waiting: true}
	case errors.Is(err, broker.ErrMissingSecret):
		return &status.Failure{Err: err, Reason: "MissingSecret"}
	}
	return &status.Failure{Err: err, Reason: "ReconcileError"}
}

// tracker is cluster's bridge tracker: made on first use, and rebuilt
// (relisted) while it shows a running broker with no bridge.
func (r *Reconciler) tracker(cluster string, n int, latest map[string]dswarm.Task) *bridges.Tracker {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.trackers == nil {
		r.trackers = map[string]*bridges.Tracker{}
	}
	if r.trackerBuilt == nil {
		r.trackerBuilt = map[string]time.Time{}
	}
	tr := r.trackers[cluster]
	// A tracker is a cache of what the logs said, fed from a cursor: a
	// line Swarm could not stream when it was read (its node cut off, or
	// Swarm without a leader) is never read again, and a bridge that
	// connected then looks down for good (a soak saw a cluster "not
	// bridged to the hub yet" for minutes after a node was cut off). So,
	// as an informer relists, a tracker that shows a running broker with
	// no bridge is rebuilt from the current tasks' logs, at most every
	// bridgeRelist.
	if tr != nil && r.now().Sub(r.trackerBuilt[cluster]) >= bridgeRelist && unbridged(tr, cluster, n, latest) {
		tr = nil
	}
	if tr == nil {
		tr = bridges.NewTracker(cluster)
		r.trackers[cluster] = tr
		r.trackerBuilt[cluster] = r.now()
	}
	return tr
}

// observeBridges reads what the brokers logged since the last pass into
// the cluster's bridge tracker.
func (r *Reconciler) observeBridges(ctx context.Context, cluster string, n int, latest map[string]dswarm.Task) *bridges.Tracker {
	tr := r.tracker(cluster, n, latest)
	tr.Forget(n)
	for j := 0; j < n; j++ {
		name := api.BrokerService(cluster, j)
		if _, exists := latest[name]; !exists {
			continue
		}
		// Only the current task's log matters (bridges to an earlier task
		// are gone): a first read starts there, not at the service's
		// beginning (a read over a service's whole history can hang).
		since := tr.Cursor(j)
		if t, ok := latest[name]; ok && since.IsZero() && !t.Meta.CreatedAt.IsZero() {
			since = t.Meta.CreatedAt.Add(-time.Second)
		}
		lines, err := r.Swarm.ServiceLogs(ctx, name, since)
		switch {
		case errors.Is(err, swarm.ErrIncompleteLogs):
			// A node that ran an earlier task could not be read: the current
			// task's lines came from the nodes that answered.
			r.log().Debug("broker logs incomplete", "cluster", cluster, "broker", name, "err", err)
		case err != nil:
			r.log().Warn("reading broker logs failed", "cluster", cluster, "broker", name, "err", err)
			continue
		}
		tr.Feed(j, lines)
		if t, ok := latest[name]; ok {
			// Bridges a broker held before its current task began are gone:
			// a killed broker logs no goodbye. The task's creation time, not
			// its status time: Swarm re-reports a running task's status (a
			// new status time) after a manager failover, with the same
			// container running on.
			tr.Restarted(j, t.Meta.CreatedAt)
		}
	}
	// What the brokers say of their own bridges: read over the operator's
	// connections to them, it does not wait on Swarm streaming a log.
	r.notifyBridges(tr, cluster, n)
	return tr
}

// bridgeRelist is how often at most a cluster's bridge tracker is rebuilt
// while it shows a running broker with no bridge.
const bridgeRelist = 30 * time.Second

// unbridged is whether a running broker other than the tree's root (the
// lowest-numbered running broker with no bridge up) shows no bridge up.
func unbridged(tr *bridges.Tracker, cluster string, n int, latest map[string]dswarm.Task) bool {
	root := true
	for i := 0; i < n; i++ {
		if t, ok := latest[api.BrokerService(cluster, i)]; !ok || t.Status.State != dswarm.TaskStateRunning {
			continue
		}
		if i > 0 && tr.Link(i).Connected {
			continue
		}
		if root {
			root = false
			continue
		}
		return true
	}
	return false
}

// joined says whether broker i's current task has joined the bridge
// tree: a bridge was seen connecting it to another broker (its own, or
// another's to it) since the task began, or no other broker runs. Once
// joined, a task stays so: a broker whose bridge drops (its parent
// restarting, its node cut off for a while) still holds its clients'
// sessions, and a client sent elsewhere would leave its session behind.
func joined(tr *bridges.Tracker, cluster string, n int, latest map[string]dswarm.Task) func(int) bool {
	started := map[int]time.Time{}
	for i := 0; i < n; i++ {
		if t, ok := latest[api.BrokerService(cluster, i)]; ok && t.Status.State == dswarm.TaskStateRunning {
			started[i] = t.Meta.CreatedAt
		}
	}
	return func(i int) bool {
		at, running := started[i]
		if !running {
			return false
		}
		j := tr.JoinedAt(i)
		return len(started) == 1 || (!j.IsZero() && !j.Before(at))
	}
}

// latestFailed is the newest task of service name when none of its tasks
// runs and that one exited with an error (false otherwise).
func latestFailed(name string, svcs []dswarm.Service, tasks []dswarm.Task) (dswarm.Task, bool) {
	id := ""
	for _, s := range svcs {
		if s.Spec.Name == name {
			id = s.ID
		}
	}
	var latest dswarm.Task
	for _, t := range tasks {
		if t.ServiceID != id || id == "" {
			continue
		}
		if t.Status.State == dswarm.TaskStateRunning {
			return dswarm.Task{}, false
		}
		if latest.ID == "" || status.Newer(t, latest) {
			latest = t
		}
	}
	if latest.ID == "" || latest.Status.State != dswarm.TaskStateFailed || latest.Status.ContainerStatus == nil || latest.Status.ContainerStatus.ExitCode == 0 {
		return dswarm.Task{}, false
	}
	return latest, true
}

// failedLines are the lines of a failed task's log that contain marker
// (at most three; read only for a task latestFailed found: one log read
// per failing pass, none while the service works).
func (r *Reconciler) failedLines(ctx context.Context, cluster, service string, t dswarm.Task, marker string) []string {
	lines, err := r.Swarm.ServiceLogs(ctx, service, t.Meta.CreatedAt.Add(-time.Second))
	if err != nil && !errors.Is(err, swarm.ErrIncompleteLogs) {
		r.log().Debug("reading a failed task's log failed", "cluster", cluster, "service", service, "err", err)
		return nil
	}
	var out []string
	for _, l := range lines {
		if i := strings.Index(l.Text, marker); i >= 0 && len(out) < 3 {
			out = append(out, strings.TrimSpace(l.Text[i:]))
		}
	}
	return out
}

// loadBalancerAlerts are the [ALERT] lines HAProxy logged in the latest
// load-balancer task when no task runs and that one exited with an error.
func (r *Reconciler) loadBalancerAlerts(ctx context.Context, c *api.MqttCluster, svcs []dswarm.Service, tasks []dswarm.Task) []string {
	name := api.LoadBalancerService(c.Name)
	t, ok := latestFailed(name, svcs, tasks)
	if !ok {
		return nil
	}
	return r.failedLines(ctx, c.Name, name, t, "[ALERT]")
}

// syncContract is what the latest sync agent said of its image when it
// stopped at start (exit 78, "image contract: ..."), and when.
func (r *Reconciler) syncContract(ctx context.Context, c *api.MqttCluster, svcs []dswarm.Service, tasks []dswarm.Task) bridges.Problem {
	name := api.SyncService(c.Name)
	t, ok := latestFailed(name, svcs, tasks)
	if !ok || t.Status.ContainerStatus.ExitCode != datasync.ContractExit {
		return bridges.Problem{}
	}
	if lines := r.failedLines(ctx, c.Name, name, t, datasync.ContractPrefix); len(lines) > 0 {
		return bridges.Problem{Text: lines[0], At: t.Status.Timestamp}
	}
	return bridges.Problem{}
}

func (r *Reconciler) stableAfter() time.Duration {
	if r.StableAfter > 0 {
		return r.StableAfter
	}
	return 3 * time.Second
}

// Delete removes what the operator made in Swarm for a deleted cluster
// (package cleanup) and forgets what this reconciler kept of it. (The
// store's records of it are the caller's.)
func (r *Reconciler) Delete(ctx context.Context, name string) error {
	if err := r.fence(); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.trackers, name)
	delete(r.trackerBuilt, name)
	delete(r.syncClients, name)
	delete(r.lost, name)
	delete(r.bridgeStates, name)
	delete(r.loads, name)
	r.mu.Unlock()
	r.forgetNodes(name)
	if r.Auth != nil {
		r.Auth.Forget(name)
	}
	cr := &cleanup.Reconciler{Swarm: r.Swarm, OperatorID: r.OperatorID, Fence: r.fence, Log: r.log()}
	if err := cr.Delete(ctx, name); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.pending, name)
	r.mu.Unlock()
	return nil
}
