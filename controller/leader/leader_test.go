package leader

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/metrics"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store/storetest"
)

type recorder struct {
	mu     sync.Mutex
	calls  map[string]int
	result map[string]Result
	fail   map[string]bool
}

func (r *recorder) reconcile(_ context.Context, name string) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[name]++
	if r.fail[name] {
		return Result{}, fmt.Errorf("boom")
	}
	return r.result[name], nil
}

func (r *recorder) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[name]
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func openStore(t *testing.T) *store.Store { return storetest.Open(t) }

func apply(t *testing.T, s *store.Store, name string, replicas int) {
	t.Helper()
	spec, _ := json.Marshal(map[string]int{"replicas": replicas})
	if _, _, err := s.Apply(store.ApplyRequest{Kind: api.KindMqttCluster, Name: name, Spec: spec}); err != nil {
		t.Fatal(err)
	}
}

func TestLeaderLoopReconcilesOnChangeRequeueAndStop(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	apply(t, s, "a", 1)
	r := &recorder{calls: map[string]int{}, result: map[string]Result{"b": {RequeueAfter: 50 * time.Millisecond}}, fail: map[string]bool{"c": true}}
	l := &Leader{Store: s, Reconcile: r.reconcile, Resync: time.Hour, RetryAfter: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()

	// Existing objects are reconciled once leadership (and the barrier) is had.
	waitFor(t, "first reconcile of a", func() bool { return r.count("a") >= 1 })
	// A spec change triggers a pass.
	before := r.count("a")
	apply(t, s, "a", 2)
	waitFor(t, "reconcile after a change", func() bool { return r.count("a") > before })
	// RequeueAfter brings b back without any change.
	apply(t, s, "b", 1)
	waitFor(t, "requeue of b", func() bool { return r.count("b") >= 4 })
	// A failing reconcile is retried.
	apply(t, s, "c", 1)
	waitFor(t, "retries of c", func() bool { return r.count("c") >= 3 })
	// A deleted cluster is reconciled once more, to clean up.
	beforeDel := r.count("a")
	if _, err := s.Delete(store.DeleteRequest{Kind: api.KindMqttCluster, Name: "a"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reconcile of deleted a", func() bool { return r.count("a") > beforeDel })
	// Trigger reconciles everything.
	beforeTrig := r.count("b")
	l.Trigger()
	waitFor(t, "triggered pass", func() bool { return r.count("b") > beforeTrig })

	cancel()
	<-done
	stopped := r.count("b") + r.count("c")
	time.Sleep(300 * time.Millisecond) // let timers that would fire do so: none may reconcile
	if got := r.count("b") + r.count("c"); got != stopped {
		t.Fatalf("reconciles after the loop stopped: %d -> %d", stopped, got)
	}
}

// TestLeaderLoopSurvivesAPanickingReconcile: a reconcile that panics is
// recovered; the other clusters keep being reconciled, and the panicking
// one is retried with a backoff, not at every pass.
func TestLeaderLoopSurvivesAPanickingReconcile(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	apply(t, s, "bad", 1)
	apply(t, s, "good", 1)
	var mu sync.Mutex
	calls := map[string]int{}
	rec := func(_ context.Context, name string) (Result, error) {
		mu.Lock()
		calls[name]++
		mu.Unlock()
		if name == "bad" {
			var m map[string]*int
			_ = *m["nil"] // a nil dereference
		}
		return Result{}, nil
	}
	count := func(n string) int { mu.Lock(); defer mu.Unlock(); return calls[n] }
	l := &Leader{Store: s, Reconcile: rec, Resync: time.Hour, RetryAfter: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)
	waitFor(t, "both clusters reconciled once", func() bool { return count("bad") == 1 && count("good") == 1 })
	// Five triggers: good is reconciled each time, bad waits for its backoff.
	for i := 2; i <= 6; i++ {
		l.Trigger()
		waitFor(t, fmt.Sprintf("good reconciled %d times", i), func() bool { return count("good") >= i })
	}
	if n := count("bad"); n != 1 {
		t.Fatalf("the panicking cluster was reconciled %d times during its backoff", n)
	}
}

// TestLeaderWakesOnlyTheClusterThatChanged: a spec change reconciles that
// cluster alone; a status write, an event or a credentials write wakes no
// cluster. Each absence is read after a later change that does wake one
// (the loop takes changes in order), so no wait stands in for it.
func TestLeaderWakesOnlyTheClusterThatChanged(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	apply(t, s, "a", 1)
	apply(t, s, "b", 1)
	r := &recorder{calls: map[string]int{}, result: map[string]Result{}, fail: map[string]bool{}}
	l := &Leader{Store: s, Reconcile: r.reconcile, Resync: time.Hour, RetryAfter: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)
	waitFor(t, "first pass", func() bool { return r.count("a") == 1 && r.count("b") == 1 })

	// A status write on a, an event and a credentials record of a.
	if _, _, err := s.UpdateStatus(store.StatusRequest{Kind: api.KindMqttCluster, Name: "a", Status: json.RawMessage(`{"hub":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"MqttClusterEvents", "MqttClusterCredentials"} {
		if _, _, err := s.Apply(store.ApplyRequest{Kind: kind, Name: "a", Spec: json.RawMessage(`{"n":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// Then a spec change of b: b alone is reconciled.
	apply(t, s, "b", 2)
	waitFor(t, "b reconciled after its change", func() bool { return r.count("b") == 2 })
	if got := r.count("a"); got != 1 {
		t.Fatalf("a reconciled %d times: a status, event or credentials write woke it", got)
	}
	// An annotation (a renewal or approval request) wakes its cluster.
	if _, _, err := s.Apply(store.ApplyRequest{Kind: api.KindMqttCluster, Name: "a", Spec: json.RawMessage(`{"replicas":1}`), Annotations: map[string]string{"x": "1"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a reconciled after its annotation", func() bool { return r.count("a") == 2 })
	if got := r.count("b"); got != 2 {
		t.Fatalf("b reconciled %d times after a's change", got)
	}
	// A user of b: b alone; its status write: nobody; moved to a: both
	// (a to serve it, b to drop it); deleted: a.
	user := func(cluster string) {
		t.Helper()
		if _, _, err := s.Apply(store.ApplyRequest{Kind: api.KindMqttUser, Name: "u", Spec: json.RawMessage(`{"cluster":"` + cluster + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	user("b")
	waitFor(t, "b reconciled after its user's creation", func() bool { return r.count("b") == 3 })
	if _, _, err := s.UpdateStatus(store.StatusRequest{Kind: api.KindMqttUser, Name: "u", Status: json.RawMessage(`{"brokers":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	user("a")
	waitFor(t, "a and b reconciled after the user moved", func() bool { return r.count("a") == 3 && r.count("b") == 4 })
	if _, err := s.Delete(store.DeleteRequest{Kind: api.KindMqttUser, Name: "u"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a reconciled after its user's deletion", func() bool { return r.count("a") == 4 })
	if r.count("a") != 4 || r.count("b") != 4 {
		t.Fatalf("reconciles a %d b %d: a user's status write or change woke another cluster", r.count("a"), r.count("b"))
	}
}

// switchable is a store whose leadership the test hands out and takes.
type switchable struct {
	*store.Store
	ch      chan bool
	leading atomic.Bool
}

func (s *switchable) LeaderCh() <-chan bool { return s.ch }
func (s *switchable) IsLeader() bool        { return s.leading.Load() }

func (s *switchable) set(v bool) {
	s.leading.Store(v)
	s.ch <- v
}

// TestLeaderStartsAndStopsEveryActivity: on winning leadership the
// Establish steps run, then the Tasks and the cluster loop start; on
// losing it every one of them stops (its context ends) before the next
// term starts them again.
func TestLeaderStartsAndStopsEveryActivity(t *testing.T) {
	t.Parallel()
	s := &switchable{Store: openStore(t), ch: make(chan bool)}
	apply(t, s.Store, "a", 1)
	r := &recorder{calls: map[string]int{}, result: map[string]Result{}, fail: map[string]bool{}}
	var established, running, started atomic.Int32
	task := func(ctx context.Context) {
		if established.Load()*2 <= started.Load() {
			t.Error("a task started before the Establish steps ran")
		}
		started.Add(1)
		running.Add(1)
		<-ctx.Done()
		running.Add(-1)
	}
	reg := prometheus.NewRegistry()
	m, err := metrics.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	loopRunning := func(want string) error {
		return promtestutil.GatherAndCompare(reg, strings.NewReader("# HELP mqttoperator_leader_loop_running 1 while this operator's reconcile loop runs (it leads).\n# TYPE mqttoperator_leader_loop_running gauge\nmqttoperator_leader_loop_running "+want+"\n"), "mqttoperator_leader_loop_running")
	}
	l := &Leader{Store: s, Reconcile: r.reconcile, Resync: time.Hour, RetryAfter: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: m,
		Establish: []func(context.Context) error{func(context.Context) error { established.Add(1); return nil }},
		Tasks:     []Task{{Name: "one", Run: task}, {Name: "two", Run: task}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	if running.Load() != 0 || r.count("a") != 0 {
		t.Fatal("work started before leadership")
	}
	s.set(true)
	waitFor(t, "both tasks and the cluster loop running", func() bool { return running.Load() == 2 && r.count("a") == 1 })
	if err := loopRunning("1"); err != nil {
		t.Fatal(err)
	}
	s.set(false)
	// Run takes the next change only once the last is handled: when this
	// send returns, the revocation is complete.
	s.set(false)
	if running.Load() != 0 {
		t.Fatalf("%d tasks still running after leadership was lost", running.Load())
	}
	if err := loopRunning("0"); err != nil {
		t.Fatalf("the cluster loop outlived leadership: %v", err)
	}
	if r.count("a") != 1 {
		t.Fatalf("a reconciled %d times", r.count("a"))
	}
	apply(t, s.Store, "a", 2)
	s.set(true)
	waitFor(t, "the next term's tasks and pass", func() bool { return running.Load() == 2 && r.count("a") == 2 })
	if started.Load() != 4 || established.Load() != 2 {
		t.Fatalf("started %d tasks and established %d times over two terms", started.Load(), established.Load())
	}
	cancel()
	<-done
	if running.Load() != 0 {
		t.Fatal("a task outlived the operator's context")
	}
}
