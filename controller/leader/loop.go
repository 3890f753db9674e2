package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/metrics"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

var _ LeaderStore = (*store.Store)(nil)

// Result asks for another reconcile of the same object after a delay (a
// certificate's renewal time, say), on top of the periodic resync.
type Result struct {
	RequeueAfter time.Duration
}

// ReconcileFunc brings one cluster's Swarm state to its spec (Clusters.Reconcile). It is called
// with the cluster's name; a deleted cluster is reconciled too (to clean
// up). It must be idempotent.
type ReconcileFunc func(ctx context.Context, name string) (Result, error)

// LeaderStore is what the loop needs of the store.
type LeaderStore interface {
	LeaderCh() <-chan bool
	IsLeader() bool
	Barrier(timeout time.Duration) error
	Watch() (<-chan struct{}, uint64)
	Changes(since uint64) ([]store.Change, uint64, bool)
	List(kind string) ([]*store.Object, uint64)
	Get(kind, name string) *store.Object
}

// Task is a leader-only activity: Run lasts until its ctx ends (leadership
// lost or the operator stopping).
type Task struct {
	Name string
	Run  func(ctx context.Context)
}

// ErrPanicked: a reconcile panicked (and was recovered).
var ErrPanicked = errors.New("reconcile panicked")

// Leader starts every leader-only activity while this node leads, as
// Nomad's monitorLeadership/leaderLoop do: the cluster loop (Reconcile per
// cluster) and the Tasks start after one Barrier (so the local state holds
// every committed write) and all stop as soon as leadership is lost.
type Leader struct {
	Store LeaderStore
	// Reconcile runs the cluster loop (nil: none, the Tasks only).
	Reconcile ReconcileFunc
	// Resync reconciles every cluster this often, catching anything a
	// trigger missed. Default 30s.
	Resync time.Duration
	// RetryAfter is the delay before retrying a failed reconcile. Default 5s.
	RetryAfter time.Duration
	// Discover, when set, names clusters that have objects in Swarm; those
	// no longer stored are reconciled too (to clean up after a delete made
	// while no operator led).
	Discover func(ctx context.Context) ([]string, error)
	Log      *slog.Logger
	// Establish runs each time this node starts leading, after the
	// barrier and before any activity starts (Nomad's
	// establishLeadership): one-time migrations. An error is logged; the
	// term goes on.
	Establish []func(ctx context.Context) error
	// Tasks are the other leader-only activities (git sync, raft
	// membership), run from the barrier until leadership is lost.
	Tasks []Task
	// Metrics, when set, counts and times reconciles.
	Metrics *metrics.Metrics

	mu      sync.Mutex
	trigger chan struct{}
}

// Trigger asks for a reconcile of every cluster (Docker events call it).
func (l *Leader) Trigger() {
	l.mu.Lock()
	ch := l.trigger
	l.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Run watches leadership until ctx ends: on winning it, once a Barrier
// has passed (the local state holds every committed write), it runs the
// Establish steps, then starts every leader-only activity (the cluster
// loop and the Tasks) on one context; on losing it, it cancels that
// context and waits for all of them to stop (Nomad's establishLeadership
// and revokeLeadership).
func (l *Leader) Run(ctx context.Context) {
	if l.Resync == 0 {
		l.Resync = 30 * time.Second
	}
	if l.RetryAfter == 0 {
		l.RetryAfter = 5 * time.Second
	}
	if l.Log == nil {
		l.Log = slog.Default()
	}
	var revoke func()
	var done chan struct{}
	establish := func() {
		if revoke != nil {
			select {
			case <-done:
				// The last term ended by itself (its barrier found this
				// node no longer leading): a new one starts.
				revoke()
			default:
				return // the term runs
			}
		}
		lctx, cancel := context.WithCancel(ctx)
		done = make(chan struct{})
		done := done
		go func() {
			defer close(done)
			l.lead(lctx)
		}()
		revoke = func() {
			cancel()
			<-done
			l.Log.Info("leader loop stopped", "detail", "leadership revoked: every leader-only activity stopped")
		}
	}
	revokeLeadership := func() {
		if revoke != nil {
			revoke()
			revoke = nil
		}
	}
	if l.Store.IsLeader() {
		establish()
	}
	for {
		select {
		case <-ctx.Done():
			revokeLeadership()
			return
		case isLeader := <-l.Store.LeaderCh():
			if isLeader {
				establish()
			} else {
				revokeLeadership()
			}
		}
	}
}

// lead is one term of leadership: the barrier, the Establish steps, then
// the Tasks and the cluster loop until ctx ends.
func (l *Leader) lead(ctx context.Context) {
	if !l.barrier(ctx) {
		return
	}
	// The HA suite's checker reads this line as the start of the term's
	// work: nothing before it writes.
	l.Log.Info("leading: barrier passed, leader-only work starts")
	for _, step := range l.Establish {
		if err := step(ctx); err != nil {
			l.Log.Error("establishing leadership", "err", err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, t := range l.Tasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Log.Info("leader task started", "task", t.Name)
			t.Run(ctx)
		}()
	}
	if l.Reconcile == nil {
		<-ctx.Done() // no cluster loop (--reconcile=false): the Tasks only
		return
	}
	l.clusterLoop(ctx)
}

// barrier waits until the local state holds every write committed before
// this term (false: leadership or ctx ended first).
func (l *Leader) barrier(ctx context.Context) bool {
	for {
		err := l.Store.Barrier(10 * time.Second)
		if err == nil {
			return true
		}
		if !l.Store.IsLeader() {
			return false
		}
		l.Log.Warn("barrier failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// clusterLoop reconciles the clusters: each once at the start, then each
// whose spec changed, each at its requeue time, and all of them at every
// resync and Trigger (Docker events), until ctx ends.
func (l *Leader) clusterLoop(ctx context.Context) {
	l.Log.Info("leader loop started")
	l.Metrics.SetLeading(true)
	defer l.Metrics.SetLeading(false)
	l.mu.Lock()
	l.trigger = make(chan struct{}, 1)
	trigger := l.trigger
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.trigger = nil
		l.mu.Unlock()
	}()

	resync := time.NewTicker(l.Resync)
	defer resync.Stop()
	ls := &loopState{timers: map[string]*time.Timer{}, due: make(chan string, 64), panics: map[string]int{}, holdUntil: map[string]time.Time{}}
	defer func() {
		for _, t := range ls.timers {
			t.Stop()
		}
	}()
	// The watch is taken before each pass, so a change made during a pass
	// is seen by the next one. A change wakes only the cluster whose spec,
	// labels or annotations it touched (or that it created or deleted): a
	// status, event, credentials or git-sync write wakes nothing. When the
	// store no longer remembers every change since the last look (a
	// snapshot restore, a long pause), every cluster is reconciled.
	watch, seen := l.Store.Watch()
	l.reconcileAll(ctx, ls)
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-ls.due:
			delete(ls.timers, n)
			l.reconcileOne(ctx, n, ls)
		case <-watch:
			watch, _ = l.Store.Watch()
			changes, now, complete := l.Store.Changes(seen)
			seen = now
			if complete {
				l.reconcileSome(ctx, changedClusters(changes, ls.usersOf(l.Store)), ls)
			} else {
				l.reconcileAll(ctx, ls)
			}
		case <-trigger:
			watch, seen = l.Store.Watch()
			l.reconcileAll(ctx, ls)
		case <-resync.C:
			watch, seen = l.Store.Watch()
			l.reconcileAll(ctx, ls)
		}
		l.Metrics.SetQueue(len(ls.due))
	}
}

// reconcileAll reconciles every stored cluster, those that just
// disappeared (once more, to clean up) and those Discover finds in Swarm.
func (l *Leader) reconcileAll(ctx context.Context, ls *loopState) {
	names := map[string]bool{}
	for _, n := range objects.ClusterNames(l.Store) {
		names[n] = true
	}
	targets := maps.Clone(names)
	maps.Copy(targets, ls.known)
	if l.Discover != nil {
		found, err := l.Discover(ctx)
		if err != nil {
			l.Log.Warn("listing clusters in Swarm failed", "err", err)
		}
		for _, n := range found {
			targets[n] = true
		}
	}
	ls.known = names
	ls.learnUsers(l.Store)
	l.reconcileSome(ctx, slices.Sorted(maps.Keys(targets)), ls)
}

// reconcileSome reconciles the named clusters in order, but those backing
// off after a panic (their timer brings them back).
func (l *Leader) reconcileSome(ctx context.Context, names []string, ls *loopState) {
	for _, n := range names {
		if ctx.Err() != nil {
			return
		}
		if time.Now().Before(ls.holdUntil[n]) {
			continue
		}
		l.reconcileOne(ctx, n, ls)
	}
}

// changedClusters are the clusters whose spec, labels or annotations the
// changes touched, or that they created or deleted, and the clusters of
// the users they touched (userClusters: a user's cluster now and before),
// sorted.
func changedClusters(changes []store.Change, userClusters func(name string) []string) []string {
	names := map[string]bool{}
	for _, c := range changes {
		switch {
		case c.Kind == api.KindMqttCluster && c.Spec:
			names[c.Name] = true
		case c.Kind == api.KindMqttUser && c.Spec && userClusters != nil:
			for _, n := range userClusters(c.Name) {
				names[n] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(names))
}

// usersOf returns the clusters a user belongs to now and belonged to at
// the last look (a user moved or deleted concerns its old cluster too).
func (ls *loopState) usersOf(s LeaderStore) func(string) []string {
	return func(name string) []string {
		var out []string
		if old, ok := ls.userCluster[name]; ok {
			out = append(out, old)
		}
		delete(ls.userCluster, name)
		if o := s.Get(api.KindMqttUser, name); o != nil {
			if u, err := objects.ToUser(o); err == nil {
				out = append(out, u.Spec.Cluster)
				ls.userCluster[name] = u.Spec.Cluster
			}
		}
		return out
	}
}

// learnUsers records every stored user's cluster.
func (ls *loopState) learnUsers(s LeaderStore) {
	ls.userCluster = map[string]string{}
	objs, _ := s.List(api.KindMqttUser)
	for _, o := range objs {
		if u, err := objects.ToUser(o); err == nil {
			ls.userCluster[u.Name] = u.Spec.Cluster
		}
	}
}

// loopState is one leader loop's per-cluster bookkeeping.
type loopState struct {
	timers map[string]*time.Timer
	due    chan string
	// panics counts consecutive panicking reconciles of a cluster;
	// holdUntil keeps it out of full passes until its backoff ends.
	panics    map[string]int
	holdUntil map[string]time.Time
	// known are the clusters stored at the last full pass.
	known map[string]bool
	// userCluster is each user's cluster, as last seen.
	userCluster map[string]string
}

// maxPanicBackoff caps the retry delay of a cluster whose reconcile panics.
const maxPanicBackoff = 5 * time.Minute

// safeReconcile calls Reconcile, turning a panic into ErrPanicked: one
// cluster must never take the loop (and the operator) down.
func (l *Leader) safeReconcile(ctx context.Context, name string) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			l.Log.Error("reconcile panicked", "cluster", name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			res, err = Result{}, fmt.Errorf("%w: cluster %s: %v", ErrPanicked, name, p)
		}
	}()
	return l.Reconcile(ctx, name)
}

func (l *Leader) reconcileOne(ctx context.Context, name string, ls *loopState) {
	start := time.Now()
	res, err := l.safeReconcile(ctx, name)
	l.Metrics.Observe(start, err)
	after := res.RequeueAfter
	if errors.Is(err, ErrPanicked) {
		// Retried with an exponential backoff (RetryAfter, doubled per
		// consecutive panic, at most maxPanicBackoff), not at every pass.
		ls.panics[name]++
		after = min(l.RetryAfter<<min(ls.panics[name]-1, 16), maxPanicBackoff)
		ls.holdUntil[name] = time.Now().Add(after)
		l.Log.Error("reconcile failed", "cluster", name, "err", err, "retryIn", after.String())
	} else {
		delete(ls.panics, name)
		delete(ls.holdUntil, name)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.Log.Error("reconcile failed", "cluster", name, "err", err)
			after = l.RetryAfter
		}
	}
	if after <= 0 {
		return
	}
	if t, ok := ls.timers[name]; ok {
		t.Stop()
	}
	ls.timers[name] = time.AfterFunc(after, func() {
		select {
		case ls.due <- name:
		case <-ctx.Done():
		}
	})
}
