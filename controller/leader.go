package controller

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
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

var _ LeaderStore = (*store.Store)(nil)

// Result asks for another reconcile of the same object after a delay (a
// certificate's renewal time, say), on top of the periodic resync.
type Result struct {
	RequeueAfter time.Duration
}

// ReconcileFunc brings one cluster's Swarm state to its spec. It is called
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
}

// Leader runs Reconcile while this node leads, as Nomad's
// monitorLeadership/leaderLoop do: work starts after a Barrier (so the
// local state holds every committed write) and stops as soon as leadership
// is lost.
type Leader struct {
	Store     LeaderStore
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
	// Establish, when set, runs once each time this node starts leading,
	// after the barrier and before the first reconcile (Nomad's
	// establishLeadership): one-time migrations. An error is logged; the
	// loop goes on.
	Establish func(ctx context.Context) error
	// Metrics, when set, counts and times reconciles.
	Metrics *Metrics

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

// Run watches leadership until ctx ends.
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
	var stop context.CancelFunc
	var done chan struct{}
	stopLoop := func() {
		if stop != nil {
			stop()
			<-done
			stop = nil
			l.Log.Info("leader loop stopped")
		}
	}
	startLoop := func() {
		if stop != nil {
			return
		}
		var lctx context.Context
		lctx, stop = context.WithCancel(ctx)
		done = make(chan struct{})
		go func() {
			defer close(done)
			l.leaderLoop(lctx)
		}()
	}
	if l.Store.IsLeader() {
		startLoop()
	}
	for {
		select {
		case <-ctx.Done():
			stopLoop()
			return
		case isLeader := <-l.Store.LeaderCh():
			if isLeader {
				startLoop()
			} else {
				stopLoop()
			}
		}
	}
}

func (l *Leader) leaderLoop(ctx context.Context) {
	// Reads after the barrier see every write committed before we led.
	for {
		if err := l.Store.Barrier(10 * time.Second); err == nil {
			break
		} else if !l.Store.IsLeader() {
			return
		} else {
			l.Log.Warn("barrier failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	if l.Establish != nil {
		if err := l.Establish(ctx); err != nil {
			l.Log.Error("establishing leadership", "err", err)
		}
	}
	l.Log.Info("leader loop started")
	l.Metrics.setLeading(true)
	defer l.Metrics.setLeading(false)
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
	due := ls.due
	known := map[string]bool{}
	defer func() {
		for _, t := range ls.timers {
			t.Stop()
		}
	}()

	// Level-triggered: any change reconciles every cluster, plus those that
	// just disappeared (once more, to clean up).
	reconcileAll := func() {
		objs, _ := l.Store.List(api.KindMqttCluster)
		names := map[string]bool{}
		for _, o := range objs {
			names[o.Name] = true
		}
		targets := maps.Clone(names)
		maps.Copy(targets, known)
		if l.Discover != nil {
			found, err := l.Discover(ctx)
			if err != nil {
				l.Log.Warn("listing clusters in Swarm failed", "err", err)
			}
			for _, n := range found {
				targets[n] = true
			}
		}
		known = names
		for _, n := range slices.Sorted(maps.Keys(targets)) {
			if ctx.Err() != nil {
				return
			}
			if time.Now().Before(ls.holdUntil[n]) {
				continue // backing off after a panic: its timer brings it back
			}
			l.reconcileOne(ctx, n, ls)
		}
	}
	// The watch is taken before each pass, so a change made during a pass
	// is seen by the next one. A change wakes only the cluster whose spec,
	// labels or annotations it touched (or that it created or deleted): a
	// status, event, credentials or git-sync write wakes nothing. When the
	// store no longer remembers every change since the last look (a
	// snapshot restore, a long pause), every cluster is reconciled.
	watch, seen := l.Store.Watch()
	reconcileAll()
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-due:
			delete(ls.timers, n)
			l.reconcileOne(ctx, n, ls)
			l.Metrics.setQueue(len(due))
			continue
		case <-watch:
			watch, _ = l.Store.Watch()
			changes, now, complete := l.Store.Changes(seen)
			seen = now
			if !complete {
				break // to the full pass below
			}
			for _, n := range changedClusters(changes) {
				if ctx.Err() != nil {
					return
				}
				if time.Now().Before(ls.holdUntil[n]) {
					continue
				}
				l.reconcileOne(ctx, n, ls)
			}
			l.Metrics.setQueue(len(due))
			continue
		case <-trigger:
		case <-resync.C:
		}
		watch, seen = l.Store.Watch()
		reconcileAll()
		l.Metrics.setQueue(len(due))
	}
}

// changedClusters are the clusters whose spec, labels or annotations the
// changes touched, or that they created or deleted, sorted.
func changedClusters(changes []store.Change) []string {
	names := map[string]bool{}
	for _, c := range changes {
		if c.Kind == api.KindMqttCluster && c.Spec {
			names[c.Name] = true
		}
	}
	return slices.Sorted(maps.Keys(names))
}

// loopState is one leader loop's per-cluster bookkeeping.
type loopState struct {
	timers map[string]*time.Timer
	due    chan string
	// panics counts consecutive panicking reconciles of a cluster;
	// holdUntil keeps it out of full passes until its backoff ends.
	panics    map[string]int
	holdUntil map[string]time.Time
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
	l.Metrics.observe(start, err)
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
