package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/cluster"
)

// eventRefresh bounds how often a repeated event (a reconcile error that
// stays, say) is written again with its count, as client-go's event
// correlator does: repeats in between are counted in memory. It limits
// the raft log's growth; no reconcile waits on an event write (the
// store's watch says what changed).
const eventRefresh = time.Minute

// Clusters is the ReconcileFunc of the cluster loop: it reads a cluster
// through the objects layer, admits it again (defaults, validation), runs
// the cluster reconciler on it, and stores what the pass returned (status,
// events). A stored object never takes the operator down: one that does
// not decode or validate is reported Degraded (InvalidSpec) and left
// alone, and a panic while reconciling it is recovered, logged with its
// name, reported Degraded (InternalError) and returned as ErrPanicked
// (retried with backoff by the loop); the other clusters are not affected.
type Clusters struct {
	*cluster.Reconciler
	Objects *objects.Objects
	// Defaults are the operator's defaults (images).
	Defaults api.Defaults

	mu sync.Mutex
	// unwritten are the events counted since their last write, by cluster.
	unwritten map[string][]api.Event
}

func (c *Clusters) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Clusters) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.Default()
}

// Reconcile reconciles the cluster name (a deleted one: its Swarm objects
// and its records are removed).
func (c *Clusters) Reconcile(ctx context.Context, name string) (res Result, err error) {
	obj, err := c.Objects.Cluster(name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Result{}, c.delete(ctx, name)
	case err != nil:
		return Result{}, c.Objects.Degrade(name, "InvalidSpec", "the stored spec does not decode: "+err.Error(), c.now())
	}
	defer func() {
		if p := recover(); p != nil {
			c.log().Error("reconcile panicked", "cluster", name, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			msg := "internal error while reconciling: the operator's log has the details (retried with backoff)"
			if werr := c.Objects.Degrade(name, "InternalError", msg, c.now()); werr != nil {
				c.log().Warn("recording the internal error failed", "cluster", name, "err", werr)
			}
			res, err = Result{}, fmt.Errorf("%w: cluster %s: %v", ErrPanicked, name, p)
		}
	}()
	d := c.Defaults
	if d == (api.Defaults{}) {
		d = api.BuiltinDefaults()
	}
	api.Default(obj, d)
	if errs := api.Validate(obj); len(errs) > 0 {
		c.log().Error("stored spec is invalid: not reconciled", "cluster", name, "errors", errs.Error())
		return Result{}, c.Objects.Degrade(name, "InvalidSpec", "the stored spec is invalid, nothing was changed in Swarm: "+errs.Error(), c.now())
	}
	out, err := c.Reconciler.Reconcile(ctx, obj)
	if errors.Is(err, cluster.ErrNotLeaderAnyMore) {
		return Result{}, err
	}
	if out.Status != nil {
		if werr := c.Objects.WriteStatus(obj, *out.Status); werr != nil {
			return Result{}, errors.Join(err, werr)
		}
	}
	for user, st := range out.Users {
		if werr := c.Objects.WriteUserStatus(user, st); werr != nil {
			c.log().Warn("storing a user's status failed", "cluster", name, "user", user, "err", werr)
		}
	}
	if werr := c.recordEvents(name, out.Events); werr != nil {
		c.log().Warn("storing events failed", "cluster", name, "err", werr)
	}
	return Result{RequeueAfter: out.RequeueAfter}, err
}

func (c *Clusters) delete(ctx context.Context, name string) error {
	if err := c.Reconciler.Delete(ctx, name); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.unwritten, name)
	c.mu.Unlock()
	return c.Objects.Forget(name)
}

// MigrateSealing runs the one-time sealing migration (an Establish step).
func (c *Clusters) MigrateSealing(context.Context) error {
	return c.Objects.MigrateSealing(func() error {
		if !c.Leadership.IsLeader() {
			return cluster.ErrNotLeaderAnyMore
		}
		if err := c.Leadership.VerifyLeader(); err != nil {
			return fmt.Errorf("%w (%v)", cluster.ErrNotLeaderAnyMore, err)
		}
		return nil
	}, c.log())
}

// recordEvents stores a pass's events with those counted since their last
// write: at once when one is new or its stored copy is older than
// eventRefresh, otherwise they wait, counted.
func (c *Clusters) recordEvents(name string, evs []api.Event) error {
	c.mu.Lock()
	if c.unwritten == nil {
		c.unwritten = map[string][]api.Event{}
	}
	pending := c.unwritten[name]
	for _, e := range evs {
		if i := slices.IndexFunc(pending, func(p api.Event) bool { return p.Same(e) }); i >= 0 {
			pending[i].Count += e.Count
			pending[i].LastTime = e.LastTime
			continue
		}
		pending = append(pending, e)
	}
	c.unwritten[name] = pending
	c.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	stored, _ := c.Objects.Events(name)
	if !due(pending, stored.Items) {
		return nil
	}
	if err := c.Objects.RecordEvents(name, pending); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.unwritten, name)
	c.mu.Unlock()
	return nil
}

// due: some pending event is new, or repeats one stored eventRefresh ago
// or more.
func due(pending, stored []api.Event) bool {
	for _, e := range pending {
		i := slices.IndexFunc(stored, func(old api.Event) bool { return old.Same(e) })
		if i < 0 || e.LastTime.Sub(stored[i].LastTime.Time) >= eventRefresh {
			return true
		}
	}
	return false
}
