package status

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/bridges"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/credentials"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Input is what a pass saw. Cluster is defaulted and carries the previous
// status (kept where nothing changed: a broker's since, a condition's
// transition time).
type Input struct {
	Cluster *api.MqttCluster
	// Now is the pass's time; StableAfter how long a task must have run
	// to count (one that crashes at start is not taken for a working one).
	Now         time.Time
	StableAfter time.Duration
	// Services, Tasks and Nodes are the cluster's, as the pass left them.
	Services []dswarm.Service
	Tasks    []dswarm.Task
	Nodes    []dswarm.Node
	// Links are the bridges the brokers logged (nil: none seen).
	Links Links
	// Serving is where the current certificate is served.
	Serving Serving
	// Material is the cluster's credentials (nil: none stored yet).
	Material *credentials.Material
	// Rollout is what a rolling update waits for.
	Rollout Rollout
	// SyncEnabled: spec.sync is on; Sync is what the agents reported (nil
	// when the pass stopped before asking them: the condition is kept).
	SyncEnabled bool
	Sync        *SyncView
	// Failure is what stopped the pass (nil: nothing).
	Failure *Failure
	// Auth is where the users and ACL rules stand (nil: the pass stopped
	// before pushing them: the condition is kept).
	Auth *AuthView
	// LoadBalancerAlerts are the [ALERT] lines HAProxy logged in the latest
	// load-balancer task, when none runs and that one failed (its config
	// refused: an HAProxy too old or without the Prometheus exporter).
	LoadBalancerAlerts []string
	// SyncContract is what the latest sync agent logged of its image when
	// it stopped at start (zero: nothing).
	SyncContract bridges.Problem
}

// LoadBalancerContract is what a load-balancer image must offer: the
// operator runs it with its own default command and the configuration at
// /usr/local/etc/haproxy/haproxy.cfg (as the official haproxy images do).
const LoadBalancerContract = "a load-balancer image needs HAProxy 2.4 or later, built with the Prometheus exporter (haproxy -vv lists prometheus-exporter), whose default command runs haproxy with /usr/local/etc/haproxy/haproxy.cfg"

// imageErrors are task errors that say the image cannot run as a load
// balancer (Docker's words when creating or starting its container).
var imageErrors = []string{"No command specified", "executable file not found", "no such file or directory", "exec format error"}

// AuthView is a cluster's users and rules as the brokers have them.
type AuthView struct {
	Version string
	Rules   int
	// Enforced: the operator pushes them (a control network and TLS);
	// Applied lists the brokers serving Version, of Brokers.
	Enforced bool
	Applied  []int
	Brokers  int
	// Parked brokers (PerNode) are not expected to serve them.
	Parked map[int]bool
}

// Want is how many brokers should serve the users and rules: all but the
// parked ones.
func (a *AuthView) Want() int { return a.Brokers - len(a.Parked) }

// Links is a cluster's bridge topology, and what the brokers' starts said
// of their image (bridges.Tracker).
type Links interface {
	Link(i int) bridges.Link
	Problem(i int) bridges.Problem
}

// contractWindow: a broker that is not running and said within this long
// that its image does not meet the contract is reported (a task in a
// restart loop says it again at every start).
const contractWindow = time.Minute

// Serving is where the current certificate is served (HAProxy's runtime
// API, read or pushed by the pass).
type Serving struct {
	Enabled bool
	// Serving of Running HAProxy tasks serve the current certificate; Why
	// the others do not (yet).
	Serving, Running int
	Why              []string
	// Young: a task not serving it yet started in the last 10 s (being
	// pushed to: worth coming back soon).
	Young bool
	// User is what HAProxy says of a user-supplied certificate.
	User *Served
}

// Served is a certificate as HAProxy serves it.
type Served struct {
	Serial   string
	NotAfter time.Time
}

// All: every running HAProxy task serves the current certificate.
func (s Serving) All() bool { return !s.Enabled || s.Serving == s.Running }

// Rollout is a rolling update's state: Message says what it waits for
// ("" when nothing), Held whether brokers wait for an approval.
type Rollout struct {
	Message string
	Held    bool
}

// Failure is the error that stopped a pass. Reason is the Degraded
// condition's reason; Waiting marks an error that is not a fault (a
// signer job still running): Degraded stays False.
type Failure struct {
	Err     error
	Reason  string
	Waiting bool
}

// Output is the computed status. Settle is how long until the next
// running task has run StableAfter (0: none is waiting); Events are what
// the status saw happen (the hub moving).
type Output struct {
	Status api.MqttClusterStatus
	Ready  bool
	Settle time.Duration
	Events []api.Event
}

// Compute is the cluster's status.
func Compute(in Input) Output {
	c := in.Cluster
	st := c.Status
	st.Conditions = slices.Clone(st.Conditions)
	st.ObservedGeneration = c.Generation
	if !c.Spec.Scaling.Auto() && !c.Spec.Scaling.PerNode() {
		st.Scaling = nil
	}
	v := newView(in)
	st.Brokers = v.brokers(c.Status.Brokers)
	var out Output
	prevHub := st.Hub
	var unbridged []string
	st.Hub, unbridged = v.hub()
	if st.Hub != prevHub && prevHub != "" && st.Hub != "" {
		out.Events = append(out.Events, api.Event{Type: api.EventNormal, Reason: "HubMoved",
			Message: fmt.Sprintf("the bridges' hub moved from %s to %s", prevHub, st.Hub)})
	}
	st.Endpoints = v.endpoints()
	certificateStatus(in, &st)
	out.Ready = ready(in, v, unbridged)
	set := conditionSetter(&st, c.Generation, in.Now)
	progress := v.progress(unbridged)
	switch {
	case in.Rollout.Held:
		// The brokers run the old spec, as they should until approved.
		set(api.ConditionReady, v.running == v.want() && len(v.lbRunning) >= v.lbWant, "AwaitingApproval", progress)
		set(api.ConditionProgressing, true, "AwaitingApproval", in.Rollout.Message)
	case out.Ready:
		set(api.ConditionReady, true, "AllRunning", progress)
		set(api.ConditionProgressing, false, "Reconciled", "the cluster matches its spec")
	default:
		set(api.ConditionReady, false, "NotAllRunning", progress)
		set(api.ConditionProgressing, in.Failure == nil, "Reconciling", progress)
	}
	st.Sync = syncConditions(in, &st, set)
	authCondition(in, &st, set)
	if f := v.contract(); f != nil && in.Failure == nil {
		in.Failure = f
	}
	degraded(in.Failure, set)
	out.Status, out.Settle = st, v.settle
	return out
}

// certificateStatus sets the certificate, CA fingerprint and CA rotation
// figures from the cluster's certificate material.
func certificateStatus(in Input, st *api.MqttClusterStatus) {
	st.Certificate, st.CARotation = nil, nil
	m := in.Material
	if m == nil {
		return
	}
	c := in.Cluster
	st.CAFingerprint = caFingerprint(*m, st.CAFingerprint)
	if *c.Spec.LoadBalancer.Ports.MQTTS != 0 {
		st.Certificate = certificate(*m, c, in.Serving)
	}
	st.CARotation = caRotation(*m, c)
}

// ready: no failure, every broker and load balancer running, every broker
// bridged, every task serving the current certificate and credentials, and
// no rolling update under way (a broker being replaced, or the next one
// waiting for the last to be stable is not Ready, even at a moment when
// every task runs its service's current spec: the next broker's service is
// not updated yet).
func ready(in Input, v *view, unbridged []string) bool {
	rolling := in.Rollout.Message != "" && !in.Rollout.Held
	return in.Failure == nil && v.want() > 0 && v.running == v.want() && len(v.lbRunning) >= v.lbWant &&
		len(unbridged) == 0 && in.Serving.All() && in.Auth.all() && !rolling
}

// setFunc sets one condition.
type setFunc func(typ string, ok bool, reason, msg string)

func conditionSetter(st *api.MqttClusterStatus, gen int64, now time.Time) setFunc {
	return func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg,
			ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(now.UTC().Truncate(time.Second))})
	}
}

// syncConditions sets SyncHealthy from the agents' reports (removes it
// when sync is off) and returns the sync status.
func syncConditions(in Input, st *api.MqttClusterStatus, set setFunc) *api.SyncStatus {
	if !in.SyncEnabled {
		meta.RemoveStatusCondition(&st.Conditions, api.ConditionSyncHealthy)
		return nil
	}
	if in.Sync == nil {
		return nil
	}
	s, healthy, msg := Sync(in.Cluster, *in.Sync, in.Now)
	reason := "Synced"
	if !healthy {
		reason = "NotSynced"
	}
	set(api.ConditionSyncHealthy, healthy, reason, msg)
	return s
}

func degraded(f *Failure, set setFunc) {
	switch {
	case f == nil:
		set(api.ConditionDegraded, false, "NoErrors", "the last reconcile succeeded")
	case f.Waiting:
		set(api.ConditionDegraded, false, f.Reason, f.Err.Error())
	default:
		set(api.ConditionDegraded, true, f.Reason, f.Err.Error())
	}
}

// view is the pass's tasks sorted out by service.
type view struct {
	in      Input
	n       int
	svcName map[string]string
	svcByID map[string]dswarm.Service
	nodes   map[string]dswarm.Node
	// latest is the newest task of each broker service, preferring those
	// meant to run.
	latest    map[string]dswarm.Task
	lbRunning []dswarm.Task
	lbLatest  dswarm.Task
	lbWant    int
	settle    time.Duration
	// running counts the brokers whose current task counts; runningIdx
	// says which.
	running    int
	runningIdx map[int]bool
	// parked are the PerNode brokers whose node does not admit them.
	parked map[int]bool
}

// want is how many brokers should run: all but the parked ones.
func (v *view) want() int { return v.n - len(v.parked) }

func newView(in Input) *view {
	c := in.Cluster
	v := &view{in: in, n: int(*c.Spec.Replicas), lbWant: int(*c.Spec.LoadBalancer.Replicas), parked: api.Parked(c),
		svcName: map[string]string{}, svcByID: map[string]dswarm.Service{}, nodes: map[string]dswarm.Node{},
		runningIdx: map[int]bool{}}
	for _, s := range in.Services {
		v.svcName[s.ID] = s.Spec.Name
		v.svcByID[s.ID] = s
	}
	for _, n := range in.Nodes {
		v.nodes[n.ID] = n
	}
	lb := api.LoadBalancerService(c.Name)
	v.latest = Latest(in.Services, in.Tasks, lb)
	for _, t := range in.Tasks {
		name := v.svcName[t.ServiceID]
		if name == "" {
			continue
		}
		if w := UntilStable(t, in.Now, in.StableAfter); w > 0 && (v.settle == 0 || w < v.settle) {
			v.settle = w
		}
		if name != lb {
			continue
		}
		if v.current(t) {
			v.lbRunning = append(v.lbRunning, t)
		}
		if v.lbLatest.ID == "" || Newer(t, v.lbLatest) {
			v.lbLatest = t
		}
	}
	slices.SortFunc(v.lbRunning, func(a, b dswarm.Task) int { return cmp.Compare(a.NodeID, b.NodeID) })
	return v
}

// current: the task runs its service's current spec (in a rolling update
// the old task runs on for a while) and has run long enough.
func (v *view) current(t dswarm.Task) bool {
	return swarm.RunsCurrentSpec(t, v.svcByID[t.ServiceID]) && Stable(t, v.in.Now, v.in.StableAfter)
}

func (v *view) link(i int) bridges.Link {
	if v.in.Links == nil {
		return bridges.Link{Child: i, Parent: -1}
	}
	return v.in.Links.Link(i)
}

// brokers is each wanted broker's status; prev is the previous list (a
// broker whose state and node did not change keeps its since).
func (v *view) brokers(prev []api.BrokerStatus) []api.BrokerStatus {
	c := v.in.Cluster
	var out []api.BrokerStatus
	for i := 0; i < v.n; i++ {
		name := api.BrokerService(c.Name, i)
		bs := api.BrokerStatus{Name: name, State: "missing"}
		if v.parked[i] {
			bs.State, bs.Node = "parked", parkedOn(c, i)
		} else if t, found := v.latest[name]; found {
			bs.State = string(t.Status.State)
			bs.Node = v.nodes[t.NodeID].Description.Hostname
			bs.Since = truncated(t.Status.Timestamp)
			if v.current(t) {
				v.running++
				v.runningIdx[i] = true
			}
		}
		if i > 0 && !v.parked[i] {
			bs.Bridge = v.bridge(i)
		}
		if p := findBroker(prev, name); p != nil && p.State == bs.State && p.Node == bs.Node {
			bs.Since = p.Since // unchanged: keep the first time seen
		}
		out = append(out, bs)
	}
	return out
}

// parkedOn is the host name of the node parked broker i is tied to.
func parkedOn(c *api.MqttCluster, i int) string {
	for _, b := range c.Status.Scaling.Nodes {
		if int(b.Broker) == i {
			return b.Hostname
		}
	}
	return ""
}

// contract is a failure naming every broker that is not running and
// whose image does not meet the contract (nil: none).
func (v *view) contract() *Failure {
	var why []string
	for i := 0; i < v.n && v.in.Links != nil; i++ {
		p := v.in.Links.Problem(i)
		if v.runningIdx[i] || p.Text == "" || v.in.Now.Sub(p.At) > contractWindow {
			continue
		}
		why = append(why, api.BrokerService(v.in.Cluster.Name, i)+": "+p.Text)
	}
	if p := v.loadBalancerContract(); p != "" {
		why = append(why, p)
	}
	if p := v.in.SyncContract; v.in.SyncEnabled && p.Text != "" && v.in.Now.Sub(p.At) <= contractWindow {
		why = append(why, api.SyncService(v.in.Cluster.Name)+": "+p.Text)
	}
	if len(why) == 0 {
		return nil
	}
	return &Failure{Err: errors.New(strings.Join(why, "; ")), Reason: "ImageContract"}
}

// loadBalancerContract says why no load-balancer task runs when its image
// is the cause (its latest task, within contractWindow): Docker could not
// run it, or HAProxy refused the configuration ("": not that).
func (v *view) loadBalancerContract() string {
	t := v.lbLatest
	if v.lbWant == 0 || len(v.lbRunning) > 0 || t.ID == "" || v.in.Now.Sub(t.Status.Timestamp) > contractWindow {
		return ""
	}
	name := api.LoadBalancerService(v.in.Cluster.Name)
	if len(v.in.LoadBalancerAlerts) > 0 {
		return name + ": HAProxy refused its configuration: " + v.in.LoadBalancerAlerts[0] + " (" + LoadBalancerContract + ")"
	}
	for _, e := range imageErrors {
		if strings.Contains(t.Status.Err, e) {
			return name + ": " + t.Status.Err + " (" + LoadBalancerContract + ")"
		}
	}
	return ""
}

func (v *view) bridge(i int) *api.BridgeStatus {
	l := v.link(i)
	b := &api.BridgeStatus{Connected: l.Connected}
	if l.Parent >= 0 {
		b.Parent = api.BrokerService(v.in.Cluster.Name, l.Parent)
		b.Since = truncated(l.Since)
	}
	return b
}

// hub is the root of the bridge tree: the lowest-numbered running broker
// with no bridge up (broker 0 has none); unbridged are the other running
// brokers with no bridge up.
func (v *view) hub() (hub string, unbridged []string) {
	for i := 0; i < v.n; i++ {
		if !v.runningIdx[i] || (i > 0 && v.link(i).Connected) {
			continue
		}
		if hub == "" {
			hub = api.BrokerService(v.in.Cluster.Name, i)
		} else {
			unbridged = append(unbridged, api.BrokerService(v.in.Cluster.Name, i))
		}
	}
	return hub, unbridged
}

// endpoints are the load balancer's addresses clients connect to.
func (v *view) endpoints() []string {
	ports := v.in.Cluster.Spec.LoadBalancer.Ports
	var out []string
	for _, t := range v.lbRunning {
		addr := v.nodes[t.NodeID].Status.Addr
		if addr == "" {
			continue
		}
		if p := *ports.MQTT; p != 0 {
			out = append(out, "mqtt://"+net.JoinHostPort(addr, strconv.Itoa(int(p))))
		}
		if p := *ports.MQTTS; p != 0 {
			out = append(out, "mqtts://"+net.JoinHostPort(addr, strconv.Itoa(int(p))))
		}
	}
	return out
}

// progress is the Ready condition's message: the counts, and why not all
// run, when Swarm or the pass says it.
func (v *view) progress(unbridged []string) string {
	c := v.in.Cluster
	msg := fmt.Sprintf("%d/%d brokers running, %d/%d load balancer tasks running", v.running, v.want(), len(v.lbRunning), v.lbWant)
	if len(v.parked) > 0 {
		msg = fmt.Sprintf("%d/%d brokers running (%d parked: their nodes do not admit them), %d/%d load balancer tasks running", v.running, v.want(), len(v.parked), len(v.lbRunning), v.lbWant)
	}
	var why []string
	for i := 0; i < v.n; i++ {
		name := api.BrokerService(c.Name, i)
		if t, found := v.latest[name]; found && t.Status.Err != "" && !v.current(t) {
			why = append(why, name+": "+t.Status.Err)
		}
	}
	if len(v.lbRunning) < v.lbWant && v.lbLatest.Status.Err != "" {
		why = append(why, api.LoadBalancerService(c.Name)+": "+v.lbLatest.Status.Err)
	}
	if len(unbridged) > 0 {
		why = append(why, "not bridged to the hub yet: "+strings.Join(unbridged, ", "))
	}
	if v.want() == 0 {
		why = append(why, "no node admits a broker (scaling PerNode: a node must be ready, active and match spec.placement)")
	}
	if s := v.in.Serving; !s.All() {
		why = append(why, fmt.Sprintf("current certificate served by %d/%d load balancer tasks: %s", s.Serving, s.Running, strings.Join(s.Why, "; ")))
	}
	if m := v.in.Rollout.Message; m != "" {
		why = append(why, m)
	}
	if a := v.in.Auth; !a.all() {
		why = append(why, "users and ACL rules not served yet by "+strings.Join(a.missing(c.Name), ", "))
	}
	if len(why) > 0 {
		msg += " (" + strings.Join(why, "; ") + ")"
	}
	return msg
}

// Latest is the newest task of each service but skip (by service name),
// preferring the tasks meant to run.
func Latest(svcs []dswarm.Service, tasks []dswarm.Task, skip string) map[string]dswarm.Task {
	names := map[string]string{}
	for _, s := range svcs {
		names[s.ID] = s.Spec.Name
	}
	latest := map[string]dswarm.Task{}
	for _, t := range tasks {
		name := names[t.ServiceID]
		if name == "" || name == skip {
			continue
		}
		if prev, ok := latest[name]; !ok || Newer(t, prev) {
			latest[name] = t
		}
	}
	return latest
}

// Stable: meant to run, running, and for at least after.
func Stable(t dswarm.Task, now time.Time, after time.Duration) bool {
	return t.DesiredState == dswarm.TaskStateRunning && t.Status.State == dswarm.TaskStateRunning &&
		now.Sub(t.Status.Timestamp) >= after
}

// UntilStable is how long until a running task counts as stable (0 when
// it is not running or already stable).
func UntilStable(t dswarm.Task, now time.Time, after time.Duration) time.Duration {
	if t.DesiredState != dswarm.TaskStateRunning || t.Status.State != dswarm.TaskStateRunning {
		return 0
	}
	if w := t.Status.Timestamp.Add(after).Sub(now); w > 0 {
		return w + 20*time.Millisecond
	}
	return 0
}

// Newer: a is meant to run and b not, or both or neither and a is newer.
func Newer(a, b dswarm.Task) bool {
	ar, br := a.DesiredState == dswarm.TaskStateRunning, b.DesiredState == dswarm.TaskStateRunning
	if ar != br {
		return ar
	}
	return a.Meta.CreatedAt.After(b.Meta.CreatedAt)
}

func findBroker(list []api.BrokerStatus, name string) *api.BrokerStatus {
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// truncated is v to the second (a zero v too).
func truncated(v time.Time) *metav1.Time {
	mt := metav1.NewTime(v.UTC().Truncate(time.Second))
	return &mt
}

// metaTime is v to the second, nil when zero.
func metaTime(v time.Time) *metav1.Time {
	if v.IsZero() {
		return nil
	}
	mt := metav1.NewTime(v.UTC().Truncate(time.Second))
	return &mt
}

// authCondition sets ACLsApplied: the brokers serve the cluster's current
// users and rules. Without rules and with no pusher it is left out.
func authCondition(in Input, st *api.MqttClusterStatus, set setFunc) {
	a := in.Auth
	if a == nil {
		return
	}
	switch {
	case !a.Enforced && a.Rules == 0:
		meta.RemoveStatusCondition(&st.Conditions, api.ConditionACLsApplied)
	case !a.Enforced:
		set(api.ConditionACLsApplied, false, "NotEnforced", fmt.Sprintf("%d rules are not enforced: the operator runs without a control network or control-plane TLS, so it cannot push them to the brokers", a.Rules))
	case a.all():
		set(api.ConditionACLsApplied, true, "Applied", fmt.Sprintf("users and rules %s (%d rules) served by %d/%d brokers", a.Version, a.Rules, len(a.Applied), a.Want()))
	default:
		set(api.ConditionACLsApplied, false, "Applying", fmt.Sprintf("users and rules %s served by %d/%d brokers; not yet by %s (a broker refuses clients until it has them)", a.Version, len(a.Applied), a.Want(), strings.Join(a.missing(in.Cluster.Name), ", ")))
	}
}

// all: every broker serves the current users and rules (or they are not
// pushed: nothing to wait for).
func (a *AuthView) all() bool { return a == nil || !a.Enforced || len(a.missing("")) == 0 }

// missing names the brokers that do not serve the current users and
// rules yet.
func (a *AuthView) missing(cluster string) []string {
	var out []string
	for i := 0; i < a.Brokers; i++ {
		if !slices.Contains(a.Applied, i) && !a.Parked[i] {
			out = append(out, api.BrokerService(cluster, i))
		}
	}
	return out
}
