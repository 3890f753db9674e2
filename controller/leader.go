package controller

import (
	"context"
	"log/slog"
	"maps"
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
	timers := map[string]*time.Timer{}
	due := make(chan string, 64)
	known := map[string]bool{}
	defer func() {
		for _, t := range timers {
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
			l.reconcileOne(ctx, n, timers, due)
		}
	}
	// The watch is taken before each full pass, so a change made during a
	// pass is seen by the next one.
	watch, _ := l.Store.Watch()
	reconcileAll()
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-due:
			delete(timers, n)
			l.reconcileOne(ctx, n, timers, due)
			l.Metrics.setQueue(len(due))
			continue
		case <-watch:
		case <-trigger:
		case <-resync.C:
		}
		watch, _ = l.Store.Watch()
		reconcileAll()
		l.Metrics.setQueue(len(due))
	}
}

func (l *Leader) reconcileOne(ctx context.Context, name string, timers map[string]*time.Timer, due chan<- string) {
	start := time.Now()
	res, err := l.Reconcile(ctx, name)
	l.Metrics.observe(start, err)
	after := res.RequeueAfter
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		l.Log.Error("reconcile failed", "cluster", name, "err", err)
		after = l.RetryAfter
	}
	if after <= 0 {
		return
	}
	if t, ok := timers[name]; ok {
		t.Stop()
	}
	timers[name] = time.AfterFunc(after, func() {
		select {
		case due <- name:
		case <-ctx.Done():
		}
	})
}
