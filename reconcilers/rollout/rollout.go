package rollout

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/broker"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/loadbalancer"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/status"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Runtime is HAProxy's runtime API as a rollout uses it.
type Runtime interface {
	DrainedServers(ctx context.Context, addr string) (map[string]bool, error)
	SetServerState(ctx context.Context, addr, server, state string) error
	ShutdownSessions(ctx context.Context, addr, server string, rate int, budget time.Duration, fence func() error) (int, error)
	ShutdownYoungSessions(ctx context.Context, addr, server string, maxAge time.Duration, fence func() error) (int, error)
	Connections(ctx context.Context, addr string) (int64, error)
}

// Gate is one pass's rolling update of a cluster's brokers, the broker
// reconciler's MayUpdate: a change that replaces brokers' tasks goes one
// broker at a time, the next only once every broker runs its current spec
// and has run StableAfter; each is drained in HAProxy (no new connection,
// its clients moved a few at a time) before it is replaced, and made ready
// again (Admit) once its new task is stable and has joined the bridge
// tree. With updatePolicy.approval manual, nothing rolls until the
// generation is approved. The same Gate admits brokers in HAProxy after
// every pass (Admit) and drains a broker found gone (Lost).
type Gate struct {
	Swarm      swarm.Client
	OperatorID string
	Cluster    *api.MqttCluster
	// Control is the operator's control network (nil: HAProxy's runtime
	// API is out of reach, nothing is drained).
	Control *loadbalancer.ControlNetwork
	Runtime Runtime
	// LostNodes are nodes the operator found lost: their HAProxy tasks are not
	// asked (each would cost the runtime API's timeout).
	LostNodes map[string]bool
	// Fence runs before every write.
	Fence       func() error
	Now         func() time.Time
	StableAfter time.Duration
	// Joined, when set, says whether broker i's current task has joined
	// the bridge tree (Admit). Nil: every broker has.
	Joined func(i int) bool
	// Gone, when set, says whether broker i was found gone (Lost) and not
	// reached since: Swarm may still list its dead task as running, and
	// HAProxy's checks may still see it up (Admit). Nil: none is.
	Gone func(i int) bool
	// Answers, when set, says whether a broker task accepts a connection
	// at its control-network address now (readdress marks such a server
	// up in HAProxy at once). Nil: HAProxy's own checks alone.
	Answers func(ctx context.Context, ip string) bool
	Log     *slog.Logger
	// Events are what the gate did, for the caller to record.
	Events []api.Event

	loaded   bool
	answered map[string]bool // Answers, by address, this gate
	services map[int]dswarm.Service
	latest   map[string]dswarm.Task // by service id
	// started: the broker this pass replaces; held: waiting for approval;
	// waiting: the broker the rollout waits for.
	started, waiting string
	held             []string
}

// Held: brokers wait for an approval.
func (g *Gate) Held() bool { return len(g.held) > 0 }

func (g *Gate) approved() bool {
	c := g.Cluster
	return c.Spec.UpdatePolicy.Approval != api.ApprovalManual || c.Annotations[api.ApprovedGenerationAnnotation] == strconv.FormatInt(c.Generation, 10)
}

func (g *Gate) loadBrokers(ctx context.Context) error {
	c := g.Cluster
	if g.loaded {
		return nil
	}
	svcs, err := g.Swarm.Services(ctx, swarm.OwnedComponent(g.OperatorID, c.Name, broker.ComponentSvc))
	if err != nil {
		return err
	}
	tasks, err := g.Swarm.Tasks(ctx, swarm.OwnedComponent(g.OperatorID, c.Name, broker.ComponentSvc))
	if err != nil {
		return err
	}
	g.services, g.latest = map[int]dswarm.Service{}, map[string]dswarm.Task{}
	for _, s := range svcs {
		if i, err := strconv.Atoi(s.Spec.Labels[broker.LabelIndex]); err == nil {
			g.services[i] = s
		}
	}
	for _, t := range tasks {
		if prev, ok := g.latest[t.ServiceID]; !ok || status.Newer(t, prev) {
			g.latest[t.ServiceID] = t
		}
	}
	g.loaded = true
	return nil
}

// healthy: the broker's newest task runs its service's current spec, is
// running and has run StableAfter.
func (g *Gate) healthy(s dswarm.Service) bool {
	t, ok := g.latest[s.ID]
	return ok && t.Status.State == dswarm.TaskStateRunning && t.DesiredState == dswarm.TaskStateRunning && swarm.RunsCurrentSpec(t, s) && status.Stable(t, g.Now(), g.StableAfter)
}

// stopped: the service is scaled to 0 on purpose (a parked PerNode
// broker, or one being removed): nothing to wait for.
func stopped(s dswarm.Service) bool {
	r := s.Spec.Mode.Replicated
	return r != nil && r.Replicas != nil && *r.Replicas == 0
}

// MayUpdate is the broker reconciler's MayUpdate: whether broker i may be
// replaced now (drained first).
func (g *Gate) MayUpdate(ctx context.Context, i int, cur dswarm.Service) (bool, error) {
	if err := g.Fence(); err != nil {
		return false, err
	}
	if !g.approved() {
		g.held = append(g.held, cur.Spec.Name)
		return false, nil
	}
	if g.started != "" {
		return false, nil // one at a time
	}
	if err := g.loadBrokers(ctx); err != nil {
		return false, err
	}
	// A broker that does not run well anyway is replaced at once: waiting
	// could not make the cluster more available (and a fix must roll).
	if g.healthy(cur) {
		for j, s := range g.services {
			if j != i && !g.healthy(s) && !stopped(s) {
				g.waiting = s.Spec.Name
				return false, nil
			}
		}
		if err := g.drain(ctx, i); err != nil {
			return false, err
		}
	}
	g.started = cur.Spec.Name
	g.Events = append(g.Events, api.Event{Type: api.EventNormal, Reason: "RollingUpdate", Message: fmt.Sprintf("replacing %s's task (one broker at a time)", cur.Spec.Name)})
	return true, nil
}

// Drain is drain for a broker about to be removed (a scale-down): no new
// client, its clients moved a few at a time before it stops.
func (g *Gate) Drain(ctx context.Context, i int) error {
	if err := g.Fence(); err != nil {
		return err
	}
	return g.drain(ctx, i)
}

// drain puts broker i in drain on every running HAProxy task, so no new
// client is sent to it; its clients are disconnected when Swarm stops it
// and reconnect to the others (HAProxy's hash skips a drained server).
// Each write is fenced: a leader that stops leading midway (paused, cut
// off) stops there, with the fence's error.
func (g *Gate) drain(ctx context.Context, i int) error {
	if g.Control == nil {
		return nil
	}
	c := g.Cluster
	server := loadbalancer.ServerName(i)
	addrs := g.lbAdmin(ctx)
	for _, addr := range addrs {
		if err := g.Fence(); err != nil {
			return err
		}
		if err := g.Runtime.SetServerState(ctx, addr, server, "drain"); err != nil {
			g.Log.Warn("drain in HAProxy failed", "cluster", c.Name, "broker", i, "haproxy", addr, "err", err)
		}
	}
	// Then its clients are moved a few at a time (the rest go when Swarm
	// stops it): DrainRate per second per HAProxy task, DrainBudget at most.
	fence, fenced := g.trackedFence()
	for _, addr := range addrs {
		n, err := g.Runtime.ShutdownSessions(ctx, addr, server, DrainRate, DrainBudget/time.Duration(max(len(addrs), 1)), fence)
		if n > 0 {
			g.Log.Info("moved clients off a drained broker", "cluster", c.Name, "broker", i, "haproxy", addr, "sessions", n)
		}
		if err := fenced(); err != nil {
			return err
		}
		if err != nil {
			g.Log.Warn("closing sessions in HAProxy failed", "cluster", c.Name, "broker", i, "haproxy", addr, "err", err)
		}
	}
	return nil
}

// trackedFence is g.Fence for a runtime call that fences each of its own
// writes, and what the last run of it returned: the caller tells a lost
// leadership from a failed write.
func (g *Gate) trackedFence() (fence func() error, fenced func() error) {
	var last error
	return func() error { last = g.Fence(); return last }, func() error { return last }
}

// DrainRate and DrainBudget bound how a drained broker's clients are moved
// before it restarts: sessions closed per second, and the time spent.
const (
	DrainRate   = 100
	DrainBudget = 10 * time.Second
)

// admitted: broker i's newest task runs its service's current spec, has
// run StableAfter, and has joined the bridge tree.
func (g *Gate) admitted(i int) bool {
	s, ok := g.services[i]
	return ok && g.healthy(s) && !g.gone(i) && (g.Joined == nil || g.Joined(i))
}

func (g *Gate) gone(i int) bool { return g.Gone != nil && g.Gone(i) }

// Admit sets, on every running HAProxy task, which brokers get new
// clients: ready, a broker that is admitted (it runs its current spec, has
// run StableAfter and has joined the bridge tree); drained, one that is
// not. A broker that has just started is an island until a bridge links
// it to the others: a client sent there would publish to nobody else and
// miss what the others' clients publish. HAProxy's own checks only say its
// port answers. When no broker is admitted at all, the stable ones are,
// and failing those all (see admission): HAProxy always has somewhere to
// send a client. It reads the states from HAProxy and changes only what
// differs, so a drain left by an operator that died mid-way is undone
// too, and a settled cluster writes nothing.
func (g *Gate) Admit(ctx context.Context) error {
	if g.Control == nil {
		return nil
	}
	c := g.Cluster
	g.loaded = false // after this pass's writes
	if err := g.loadBrokers(ctx); err != nil {
		return err
	}
	want := g.admission()
	rt := g.Runtime
	for _, addr := range g.lbAdmin(ctx) {
		drained, err := rt.DrainedServers(ctx, addr)
		if err != nil {
			continue
		}
		for _, name := range changes(want, drained) {
			state := "ready"
			if !want[name] && !drained[name] {
				state = "drain"
			}
			if err := g.Fence(); err != nil {
				return err
			}
			if err := rt.SetServerState(ctx, addr, name, state); err != nil {
				g.Log.Warn("setting a broker's state in HAProxy failed", "cluster", c.Name, "server", name, "state", state, "err", err)
				continue
			}
			if state == "ready" {
				g.Log.Info("broker ready in HAProxy", "cluster", c.Name, "server", name, "haproxy", addr)
			} else {
				g.Log.Info("broker held out of HAProxy until it runs its current spec, is stable, reachable and joined to the bridge tree", "cluster", c.Name, "server", name, "haproxy", addr)
			}
		}
		if ra, ok := rt.(Readdresser); ok {
			if _, err := g.readdress(ctx, ra, addr); err != nil {
				return err
			}
		}
	}
	return nil
}

// Readdresser is the part of HAProxy's runtime API that says and sets
// where a broker server's connections go, and marks one up.
type Readdresser interface {
	ServerStates(ctx context.Context, addr string) (map[string]loadbalancer.ServerState, error)
	SetServerAddr(ctx context.Context, addr, server, ip string) error
	SetServerHealthUp(ctx context.Context, addr, server string) error
}

// Readdress is readdress on every reachable HAProxy task, for the node
// watch right after it moved brokers off a lost node (a pass may be held
// up by timeouts toward that node); done: every broker server points at
// its running task.
func (g *Gate) Readdress(ctx context.Context) (done bool, err error) {
	ra, ok := g.Runtime.(Readdresser)
	if g.Control == nil || !ok {
		return true, nil
	}
	g.loaded = false
	if err := g.loadBrokers(ctx); err != nil {
		return false, err
	}
	done = true
	for _, addr := range g.lbAdmin(ctx) {
		ok, err := g.readdress(ctx, ra, addr)
		if err != nil {
			return false, err
		}
		done = done && ok
	}
	return done, nil
}

// readdress points every broker server of one HAProxy task at the
// address of the broker's running task, where HAProxy has none of its
// addresses: after a move Swarm's DNS can keep naming the previous task
// for seconds (until Swarm marks a lost node down), and HAProxy keeps an
// address its DNS answer still holds. A server HAProxy has down while its
// task, started less than FreshTask ago, answers the operator (Answers) is
// marked up at once: HAProxy checks a server it has down only once a
// second. ok: every
// broker with a running task is pointed at it and up. It fails only when
// leadership is lost.
func (g *Gate) readdress(ctx context.Context, ra Readdresser, addr string) (ok bool, err error) {
	cur, err := ra.ServerStates(ctx, addr)
	if err != nil {
		return false, nil
	}
	ok = true
	for i, s := range g.services {
		t, running := g.latest[s.ID]
		// A task on a lost node is not the running task, even while Swarm
		// still lists it as running (and as the newest until the move's
		// task is made): not done until the new one runs.
		if !running || t.Status.State != dswarm.TaskStateRunning || t.DesiredState != dswarm.TaskStateRunning || g.LostNodes[t.NodeID] {
			ok = false
			continue
		}
		name := loadbalancer.ServerName(i)
		// HAProxy shares the cluster's and the control network with the
		// brokers: Swarm's DNS names a task by either address.
		ip, controlIP := swarm.TaskAddress(t, api.NetworkName(g.Cluster.Name)), swarm.TaskAddress(t, g.Control.Name)
		have, known := cur[name]
		if ip == "" || !known {
			continue
		}
		if have.Addr != ip && have.Addr != controlIP {
			if err := g.Fence(); err != nil {
				return false, err
			}
			if err := ra.SetServerAddr(ctx, addr, name, ip); err != nil {
				g.Log.Warn("pointing a broker server at its running task failed", "cluster", g.Cluster.Name, "server", name, "haproxy", addr, "err", err)
				ok = false
				continue
			}
			g.Log.Info("broker server pointed at its running task (Swarm's DNS still named another)", "cluster", g.Cluster.Name, "server", name, "from", have.Addr, "to", ip, "haproxy", addr)
		}
		up, err := g.markUp(ctx, ra, addr, name, have.Up, t, controlIP)
		if err != nil {
			return false, err
		}
		ok = ok && up
	}
	return ok, nil
}

// markUp marks server name up in one HAProxy task when HAProxy has it down
// and its task has just started and answers the operator; up: the server
// is up or left to HAProxy's checks. Only a task that has just started:
// one HAProxy has not checked since. A broker its checks took down later
// (a storm filling its accept queue) is left to them: marked up by force
// it would be marked down again, cutting every session sent back to it.
// It fails only when leadership is lost.
func (g *Gate) markUp(ctx context.Context, ra Readdresser, addr, name string, isUp bool, t dswarm.Task, controlIP string) (up bool, err error) {
	if isUp || g.Now().Sub(t.Status.Timestamp) > FreshTask {
		return true, nil
	}
	if !g.answers(ctx, controlIP) {
		return false, nil // not done: marked up once it answers
	}
	if err := g.Fence(); err != nil {
		return false, err
	}
	if err := ra.SetServerHealthUp(ctx, addr, name); err != nil {
		g.Log.Warn("marking a broker server up failed", "cluster", g.Cluster.Name, "server", name, "haproxy", addr, "err", err)
		return false, nil
	}
	g.Log.Info("broker server marked up: its running task answers (ahead of HAProxy's next check)", "cluster", g.Cluster.Name, "server", name, "haproxy", addr)
	return true, nil
}

// FreshTask is how long after its task started readdress may mark a
// broker server up ahead of HAProxy's checks.
const FreshTask = 10 * time.Second

// answers: the broker task at ip (its control-network address) accepts a
// connection now, asked once per address per gate.
func (g *Gate) answers(ctx context.Context, ip string) bool {
	if g.Answers == nil || ip == "" {
		return false
	}
	if a, ok := g.answered[ip]; ok {
		return a
	}
	if g.answered == nil {
		g.answered = map[string]bool{}
	}
	a := g.Answers(ctx, ip)
	g.answered[ip] = a
	return a
}

// admission is, by server name, whether each broker gets new clients:
// the admitted ones; when none is (every bridge down at once, as when the
// hub dies and its spokes have not found another parent yet), the ones
// that run their current spec and are stable (and not gone); when none is
// either, all but the broker this pass replaces.
func (g *Gate) admission() map[string]bool {
	tiers := []func(i int, s dswarm.Service) bool{
		func(i int, _ dswarm.Service) bool { return g.admitted(i) },
		func(i int, s dswarm.Service) bool { return g.healthy(s) && !g.gone(i) },
		func(_ int, s dswarm.Service) bool { return s.Spec.Name != g.started },
	}
	want := map[string]bool{}
	n := api.Brokers(g.Cluster)
	for _, admit := range tiers {
		anyone := false
		for i, s := range g.services {
			a := i < n && admit(i, s) // one past the count is being removed
			want[loadbalancer.ServerName(i)] = a
			anyone = anyone || a
		}
		if anyone {
			break
		}
	}
	return want
}

// changes lists, in order, the servers whose drain state differs from
// want (by name: ready): drained ones that should be ready, and ready ones
// that should be drained. A drained server with no broker (scaled away)
// stays drained: its container may still be stopping, reachable at the
// address HAProxy resolved, and a client sent there would move twice. A
// broker added at that index later is made ready once admitted.
func changes(want, drained map[string]bool) []string {
	var out []string
	for name := range drained {
		if want[name] {
			out = append(out, name)
		}
	}
	for name, w := range want {
		if !w && !drained[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// LostAge bounds the streams Lost closes: younger than this, they were
// made after the broker died (its own sessions ended with it).
const LostAge = 2 * time.Second

// Lost takes broker i out of every running HAProxy task of the cluster at
// once, when the operator's own connection to it broke (the broker's
// process closed it: killed, crashed or stopped): drained, so that no new
// client is sent there, and the streams younger than LostAge closed —
// clients that came straight back and were sent to it again, waiting out
// the connect timeout on an address that answers nothing; they try again
// and land on another broker. HAProxy's checks need a second or more to
// see the broker gone. A later pass makes it ready again once the
// operator reaches it again (Gone) and its task has joined the bridge tree
// (Admit). Every write is fenced: a leader that stops leading midway
// (paused past its lease, cut off) writes nothing more. It returns how
// many streams it closed.
func (g *Gate) Lost(ctx context.Context, i int) (int, error) {
	if g.Control == nil {
		return 0, nil
	}
	if err := g.Fence(); err != nil {
		return 0, err
	}
	addrs := g.lbAdmin(ctx)
	server := loadbalancer.ServerName(i)
	for _, addr := range addrs {
		if err := g.Fence(); err != nil {
			return 0, err
		}
		if err := g.Runtime.SetServerState(ctx, addr, server, "drain"); err != nil {
			g.Log.Warn("drain of a lost broker in HAProxy failed", "cluster", g.Cluster.Name, "server", server, "haproxy", addr, "err", err)
		}
	}
	closed := 0
	fence, fenced := g.trackedFence()
	for _, addr := range addrs {
		n, err := g.Runtime.ShutdownYoungSessions(ctx, addr, server, LostAge, fence)
		closed += n
		if err := fenced(); err != nil {
			return closed, err
		}
		if err != nil {
			g.Log.Warn("closing streams to a lost broker failed", "cluster", g.Cluster.Name, "server", server, "haproxy", addr, "err", err)
		}
	}
	return closed, nil
}

// Connections is how many clients the cluster's running HAProxy tasks
// hold toward its brokers, together; ok is false when a task did not
// answer (or none runs, or HAProxy's runtime API is out of reach).
func (g *Gate) Connections(ctx context.Context) (n int64, ok bool) {
	if g.Control == nil {
		return 0, false
	}
	addrs := g.lbAdmin(ctx)
	for _, addr := range addrs {
		c, err := g.Runtime.Connections(ctx, addr)
		if err != nil {
			g.Log.Debug("reading HAProxy's connections failed", "cluster", g.Cluster.Name, "haproxy", addr, "err", err)
			return 0, false
		}
		n += c
	}
	return n, len(addrs) > 0
}

// lbAdmin lists the runtime API addresses of a cluster's running HAProxy
// tasks.
func (g *Gate) lbAdmin(ctx context.Context) []string {
	tasks, err := g.Swarm.Tasks(ctx, swarm.OwnedComponent(g.OperatorID, g.Cluster.Name, loadbalancer.ComponentSvc))
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range tasks {
		if t.DesiredState != dswarm.TaskStateRunning || t.Status.State != dswarm.TaskStateRunning || g.LostNodes[t.NodeID] {
			continue
		}
		if ip := swarm.TaskAddress(t, g.Control.Name); ip != "" {
			out = append(out, loadbalancer.AdminAddr(ip))
		}
	}
	return out
}

// Message says what the rollout waits for ("" when nothing).
func (g *Gate) Message() string {
	c := g.Cluster
	switch {
	case len(g.held) > 0:
		return fmt.Sprintf("awaiting approval to restart %s (mqttctl diff shows the change; mqttctl approve %s)", strings.Join(g.held, ", "), c.Name)
	case g.started != "":
		return "rolling: replacing " + g.started
	case g.waiting != "":
		return "rolling: waiting for " + g.waiting + " to run its new spec"
	}
	return ""
}
