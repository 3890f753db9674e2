//go:build e2e_ha

// Package ha tests the operator's control plane on a real three-manager
// Swarm of docker-in-docker nodes (make up MANAGERS=3): raft across the
// managers, failover on a stopped, paused or cut-off leader, fencing, a
// restart of every manager, backup and restore. hack/e2e-ha.sh runs it.
package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/client"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

const (
	net     = "mqtt-dind"
	stack   = "mqtt-operator"
	cluster = "quickstart"
)

var nodes = []string{"mqtt-m1", "mqtt-m2", "mqtt-m3"}

func root() string { p, _ := filepath.Abs("../.."); return p }

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// onNode runs the docker CLI on a node.
func onNode(t *testing.T, node string, args ...string) string {
	t.Helper()
	return sh(t, "docker", append([]string{"exec", node, "docker"}, args...)...)
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < timeout {
		if err = f(); err == nil {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, err)
	return 0
}

type env struct {
	ip    map[string]string // node -> address
	id    map[string]string // node -> Swarm node id
	token string
	c     *client.Client // every manager's API, with failover
	// loopsGone tells the loop sampler every operator was seen gone.
	loopsGone chan struct{}
}

func setup(t *testing.T) *env {
	t.Helper()
	e := &env{ip: map[string]string{}, id: map[string]string{}, loopsGone: make(chan struct{}, 1)}
	for _, n := range nodes {
		e.ip[n] = sh(t, "docker", "inspect", "-f", `{{(index .NetworkSettings.Networks "`+net+`").IPAddress}}`, n)
		e.id[n] = onNode(t, n, "info", "-f", "{{.Swarm.NodeID}}")
	}
	tok, err := os.ReadFile(filepath.Join(root(), ".local", "api-token"))
	if err != nil {
		t.Fatal(err)
	}
	e.token = strings.TrimSpace(string(tok))
	var servers []string
	for _, n := range nodes {
		servers = append(servers, e.api(n))
	}
	e.c, err = client.New(client.Options{Server: strings.Join(servers, ","), Token: e.token, CAFile: testutil.CAFile(), Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) api(node string) string { return "https://" + e.ip[node] + ":7950" }

// leaderInfo asks one node's operator who leads (nil when it does not
// answer within 300ms).
func (e *env) leaderInfo(node string) *store.LeaderInfo {
	return e.leaderInfoWithin(node, 300*time.Millisecond)
}

// leaderInfoWithin is leaderInfo with another timeout (a new TLS
// connection each time).
func (e *env) leaderInfoWithin(node string, timeout time.Duration) *store.LeaderInfo {
	c, err := client.New(client.Options{Server: e.api(node), CAFile: testutil.CAFile(), Timeout: timeout})
	if err != nil {
		return nil
	}
	li, err := c.Leader(context.Background())
	if err != nil {
		return nil
	}
	return li
}

// leader is the node whose operator says it leads, and that the others
// that answer agree on.
func (e *env) leader(among []string) (string, error) {
	found := ""
	for _, n := range among {
		li := e.leaderInfo(n)
		if li == nil {
			continue
		}
		if li.IsLeader {
			found = n
		}
	}
	if found == "" {
		return "", fmt.Errorf("no leader among %v", among)
	}
	for _, n := range among {
		if li := e.leaderInfo(n); li != nil && li.LeaderID != e.id[found] {
			return "", fmt.Errorf("%s thinks %q leads, %s says it does", n, li.LeaderID, found)
		}
	}
	return found, nil
}

// waitVoters waits until every manager's operator answers and agrees on a
// leader with n voters.
func (e *env) waitVoters(t *testing.T, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d voters and a leader", n), 180*time.Second, func() error {
		if _, err := e.leader(nodes); err != nil {
			return err
		}
		for _, node := range nodes {
			if e.leaderInfo(node) == nil {
				return fmt.Errorf("%s does not answer", node)
			}
		}
		peers, err := e.c.Peers(context.Background())
		if err != nil {
			return err
		}
		if len(peers) != n {
			return fmt.Errorf("%d peers", len(peers))
		}
		return nil
	})
}

func (e *env) waitReady(t *testing.T) {
	t.Helper()
	eventually(t, "quickstart Ready", 240*time.Second, func() error {
		c, err := e.c.GetConsistent(context.Background(), cluster)
		if err != nil {
			return err
		}
		if c.Status.ObservedGeneration < c.Generation || !meta.IsStatusConditionTrue(c.Status.Conditions, api.ConditionReady) {
			return fmt.Errorf("%+v", c.Status.Conditions)
		}
		return nil
	})
}

func others(all []string, not string) []string {
	var out []string
	for _, n := range all {
		if n != not {
			out = append(out, n)
		}
	}
	return out
}

// loopSample is one node's answer: whether its reconcile loop runs, and
// its raft term (ok false: it did not answer within 300 ms).
type loopSample struct {
	loop, term int
	ok         bool
}

var (
	loopRE = regexp.MustCompile(`(?m)^mqttoperator_leader_loop_running (\d+)`)
	termRE = regexp.MustCompile(`(?m)^mqttoperator_raft_term (\d+)`)
)

func (e *env) sampleLoop(node string) loopSample {
	body, err := testutil.Scrape(e.api(node))
	if err != nil {
		return loopSample{}
	}
	l, t := loopRE.FindStringSubmatch(body), termRE.FindStringSubmatch(body)
	if l == nil || t == nil {
		return loopSample{}
	}
	loop, _ := strconv.Atoi(l[1])
	term, _ := strconv.Atoi(t[1])
	return loopSample{loop: loop, term: term, ok: true}
}

// staleWindow is a time in which a node of an older raft term may have
// run its reconcile loop while a newer term's loop ran: the node must have
// written nothing to Swarm then (its fence), which its log proves.
type staleWindow struct {
	node     string
	term     int
	from, to time.Time
	// newer is a node that ran the newer term's loop meanwhile.
	newer string
}

// loopWatch is what watchLoops found: stale windows to prove, and
// samples no fence explains (two loops in one term).
type loopWatch struct {
	windows    []staleWindow
	violations []string
	samples    int
}

// watchLoops samples every node's loop and term every 100 ms until stop,
// with no blind spot: a node that does not answer keeps the state it last
// reported (a leader frozen or cut off may still be running its loop).
// Whenever two nodes may run their loops at once, the one of the older
// term is in a stale window; two in the same term is a violation outright.
func (e *env) watchLoops(stop <-chan struct{}) <-chan loopWatch {
	out := make(chan loopWatch, 1)
	go func() {
		var w loopWatch
		last := map[string]loopSample{}
		open := map[string]*staleWindow{}
		reset := e.loopsGone
		closeAll := func(keep map[string]bool) {
			for n, win := range open {
				if !keep[n] {
					w.windows = append(w.windows, *win)
					delete(open, n)
				}
			}
		}
		for {
			select {
			case <-stop:
				closeAll(nil)
				out <- w
				return
			case <-reset:
				// Every operator was seen gone (their state destroyed): what
				// they last reported is void, and a restored cluster's terms
				// start again.
				last = map[string]loopSample{}
				closeAll(nil)
				continue
			case <-time.After(100 * time.Millisecond):
			}
			now := time.Now()
			cur := map[string]loopSample{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for _, n := range nodes {
				wg.Add(1)
				go func(n string) {
					defer wg.Done()
					s := e.sampleLoop(n)
					mu.Lock()
					cur[n] = s
					mu.Unlock()
				}(n)
			}
			wg.Wait()
			w.samples++
			var maybe []string
			maxTerm := 0
			for _, n := range nodes {
				if cur[n].ok {
					last[n] = cur[n]
				}
				if l := last[n]; l.loop == 1 {
					maybe = append(maybe, n)
					maxTerm = max(maxTerm, l.term)
				}
			}
			keep := map[string]bool{}
			if len(maybe) > 1 {
				newest := 0
				var newer string
				for _, n := range maybe {
					if last[n].term == maxTerm {
						newest++
						newer = n
					}
				}
				for _, n := range maybe {
					l := last[n]
					if l.term == maxTerm {
						continue
					}
					keep[n] = true
					if open[n] == nil {
						open[n] = &staleWindow{node: n, term: l.term, from: now.Add(-100 * time.Millisecond), newer: newer}
					}
					open[n].to = now
				}
				if newest > 1 {
					w.violations = append(w.violations, fmt.Sprintf("%s: %d reconcile loops in raft term %d (%s)", now.Format(time.StampMilli), newest, maxTerm, strings.Join(maybe, "+")))
				}
			}
			closeAll(keep)
		}
	}()
	return out
}

// checkLoops fails the test on two loops in one term, and on any Swarm
// write a stale leader logged while a newer term's loop ran: every time a
// stale leader may have run (frozen, cut off, unreachable, or about to
// step down), its own log must show its fence held.
func (e *env) checkLoops(t *testing.T, w loopWatch) {
	t.Helper()
	for _, v := range w.violations {
		t.Errorf("two operators ran their reconcile loop at once: %s", v)
	}
	var spans []string
	for _, win := range w.windows {
		// The samples see the newer loop up to a sampling round late (or,
		// a node answering slowly, early): the newer leader's own log says
		// when its term's work began, and a write logged by the stale one
		// before that did not overlap it.
		if at, ok := e.leadingSince(t, win.newer, win.from, win.to); ok {
			win.from = at
		}
		if wr := e.writesIn(t, win.node, win.from, win.to.Add(500*time.Millisecond)); len(wr) > 0 {
			t.Errorf("%s (term %d) wrote to Swarm while a newer term's leader ran (%s .. %s):\n%s", win.node, win.term,
				win.from.Format(time.StampMilli), win.to.Format(time.StampMilli), strings.Join(wr, "\n"))
		}
		spans = append(spans, fmt.Sprintf("%s %s", win.node, win.to.Sub(win.from).Round(100*time.Millisecond)))
	}
	t.Logf("%d samples of every operator's loop and term, none blind: %d windows where a stale leader may have run (%s), none with a Swarm write", w.samples, len(w.windows), strings.Join(spans, ", "))
}

var logTimeRE = regexp.MustCompile(`"time":"([^"]+)"`)

// logTime is the time a JSON log line was written at.
func logTime(l string) (time.Time, bool) {
	m := logTimeRE.FindStringSubmatch(l)
	if m == nil {
		return time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	return at, err == nil
}

// allOperatorLogs are a node's operator logs since t, of every operator
// container on it (a stopped one's too).
func (e *env) allOperatorLogs(t *testing.T, node string, since time.Time) string {
	t.Helper()
	logs, err := operatorLogs(node, since)
	if err != nil {
		t.Fatal(err)
	}
	return logs
}

// operatorLogs is allOperatorLogs for callers that must not stop the test
// (failure diagnostics, where a node may be unreachable).
func operatorLogs(node string, since time.Time) (string, error) {
	ids, err := exec.Command("docker", "exec", node, "docker", "ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+stack+"_operator").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("operator containers on %s: %v\n%s", node, err, ids)
	}
	var logs strings.Builder
	for _, id := range strings.Fields(string(ids)) {
		b, _ := exec.Command("docker", "exec", node, "docker", "logs", "--since", since.Format(time.RFC3339Nano), id).CombinedOutput()
		logs.Write(b)
		logs.WriteString("\n")
	}
	return logs.String(), nil
}

// writesIn are a node's Swarm writes logged between from and to.
func (e *env) writesIn(t *testing.T, node string, from, to time.Time) []string {
	var out []string
	for _, l := range writes(e.allOperatorLogs(t, node, from.Add(-time.Second))) {
		if at, ok := logTime(l); ok && !at.Before(from) && !at.After(to) {
			out = append(out, l)
		}
	}
	return out
}

// leadingLine: the leader package's line when a term's leader-only work
// begins (after its barrier, before anything it writes).
var leadingLine = regexp.MustCompile(`"msg":"leading: `)

// leadingSince is when node last began leading at or before to (looked
// for from a minute before from); ok is false when its log does not say.
func (e *env) leadingSince(t *testing.T, node string, from, to time.Time) (time.Time, bool) {
	if node == "" {
		return time.Time{}, false
	}
	var last time.Time
	for _, l := range strings.Split(e.allOperatorLogs(t, node, from.Add(-time.Minute)), "\n") {
		if !leadingLine.MatchString(l) {
			continue
		}
		if at, ok := logTime(l); ok && !at.After(to) && at.After(last) {
			last = at
		}
	}
	return last, !last.IsZero()
}

// operatorLogs are a node's operator logs since t.
func (e *env) operatorLogs(t *testing.T, node string, since time.Time) string {
	t.Helper()
	id := onNode(t, node, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+stack+"_operator")
	if id == "" {
		return ""
	}
	out, _ := exec.Command("docker", "exec", node, "docker", "logs", "--since", since.Format(time.RFC3339Nano), strings.Fields(id)[0]).CombinedOutput()
	return string(out)
}

// waitLog polls a node's operator logs since t until they hold want (for
// at most 15 s), and returns them: the caller asserts on what they hold.
func (e *env) waitLog(t *testing.T, node string, since time.Time, want string) string {
	t.Helper()
	var logs string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if logs = e.operatorLogs(t, node, since); strings.Contains(logs, want) {
			break
		}
	}
	return logs
}

// writeLine: a log line of a write to Swarm or to a HAProxy task's
// runtime API (certificates, and which brokers get clients).
var writeLine = regexp.MustCompile(`"msg":"(created|created network|created secret|updated|removed|pruned secret|pushed certificate into HAProxy|broker ready in HAProxy|broker held out of HAProxy[^"]*|broker lost: drained in HAProxy[^"]*|moved clients off a drained broker)"`)

func writes(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if writeLine.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

func (e *env) quickstart(t *testing.T) *api.MqttCluster {
	t.Helper()
	var c *api.MqttCluster
	eventually(t, "reading quickstart", 20*time.Second, func() error {
		var err error
		c, err = e.c.GetConsistent(context.Background(), cluster)
		return err
	})
	return c
}

// applyWith applies quickstart's stored spec with one label changed (a
// store write that changes nothing in Swarm), or with a balance mode.
func (e *env) applyWith(ctx context.Context, c *api.MqttCluster, label string, balance api.BalanceMode) error {
	doc := c.DeepCopy()
	doc.ResourceVersion, doc.UID, doc.Generation, doc.CreationTimestamp = "", "", 0, metav1.Time{}
	doc.Status = api.MqttClusterStatus{}
	if doc.Labels == nil {
		doc.Labels = map[string]string{}
	}
	if label != "" {
		doc.Labels["ha-seq"] = label
	}
	if balance != "" {
		doc.Spec.LoadBalancer.Balance = balance
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	_, err = e.c.Apply(ctx, b)
	return err
}

func TestControlPlane(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	stopWatch := make(chan struct{})
	watched := e.watchLoops(stopWatch)
	defer func() {
		close(stopWatch)
		e.checkLoops(t, <-watched)
	}()

	t.Run("three voters, one leader, any manager takes writes", func(t *testing.T) {
		peers, err := e.c.Peers(ctx)
		if err != nil || len(peers) != 3 {
			t.Fatalf("peers: %+v %v", peers, err)
		}
		for _, p := range peers {
			if p.Suffrage != "Voter" {
				t.Errorf("%s is a %s", p.ID, p.Suffrage)
			}
		}
		if _, err := e.leader(nodes); err != nil {
			t.Fatal(err)
		}
		qs := e.quickstart(t)
		for i, n := range nodes {
			one, _ := client.New(client.Options{Server: e.api(n), Token: e.token, CAFile: testutil.CAFile(), Timeout: 5 * time.Second})
			e1 := *e
			e1.c = one
			if err := e1.applyWith(ctx, qs, fmt.Sprintf("via-%d", i), ""); err != nil {
				t.Fatalf("apply through %s: %v", n, err)
			}
		}
	})

	t.Run("leader stopped during an apply loop", func(t *testing.T) {
		e.waitVoters(t, 3)
		old, err := e.leader(nodes)
		if err != nil {
			t.Fatal(err)
		}
		qs := e.quickstart(t)
		var acked atomic.Int64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 1; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				actx, cancel := context.WithTimeout(ctx, 3*time.Second)
				if err := e.applyWith(actx, qs, strconv.Itoa(i), ""); err == nil {
					acked.Store(int64(i))
				}
				cancel()
				time.Sleep(30 * time.Millisecond)
			}
		}()
		eventually(t, "the apply loop running", 10*time.Second, func() error {
			if acked.Load() < 5 {
				return errStr("fewer than 5 applies acknowledged")
			}
			return nil
		})
		start := time.Now()
		sh(t, "docker", "stop", "-t", "1", old)
		dead := time.Now()
		restarted := false
		t.Cleanup(func() {
			if !restarted {
				exec.Command("docker", "start", old).Run()
				e.waitVoters(t, 3)
			}
		})
		eventually(t, "a new leader", 15*time.Second, func() error {
			l, err := e.leader(others(nodes, old))
			if err != nil {
				return err
			}
			if l == old {
				return fmt.Errorf("still %s", l)
			}
			return nil
		})
		t.Logf("leader %s stopped: new leader %v after docker stop began, %v after the node was gone", old,
			time.Since(start).Round(time.Millisecond), time.Since(dead).Round(time.Millisecond))
		if took := time.Since(dead); took > 3*time.Second {
			t.Errorf("new leader %v after the node was gone (target 3s)", took)
		}
		// The loop goes on through the new leader.
		atFailover := acked.Load()
		eventually(t, "applies acknowledged after the failover", 15*time.Second, func() error {
			if acked.Load() < atFailover+5 {
				return errStr("fewer than 5 applies acknowledged since the failover")
			}
			return nil
		})
		close(stop)
		<-done
		last := acked.Load()
		got := e.quickstart(t)
		if seq, _ := strconv.Atoi(got.Labels["ha-seq"]); int64(seq) < last {
			t.Errorf("acknowledged apply %d lost: stored %d", last, seq)
		}
		t.Logf("%d applies acknowledged through the failover", last)
		// The new leader reconciles: a broker service removed by hand is
		// made again.
		survivor := others(nodes, old)[0]
		// Swarm elects its own new leader too (about 10 s when its leader's
		// node went): retry until it takes the removal.
		eventually(t, "Swarm removing a broker service", 60*time.Second, func() error {
			out, err := exec.Command("docker", "exec", survivor, "docker", "service", "rm", cluster+"-broker-2").CombinedOutput()
			if err != nil && !strings.Contains(string(out), "not found") {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
		eventually(t, "the removed broker service made again", 60*time.Second, func() error {
			out, err := exec.Command("docker", "exec", survivor, "docker", "service", "inspect", cluster+"-broker-2").CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
		sh(t, "docker", "start", old)
		restarted = true
		eventually(t, "the stopped manager back as a follower", 120*time.Second, func() error {
			li := e.leaderInfo(old)
			if li == nil || li.LeaderID == "" || li.IsLeader {
				return fmt.Errorf("%+v", li)
			}
			return nil
		})
	})

	t.Run("leader paused past its lease makes no write after it resumes", func(t *testing.T) {
		e.waitVoters(t, 3)
		var old string
		// The leader, asked again right before the pause: a leadership
		// that moved meanwhile would pause a follower.
		eventually(t, "a settled leader", 30*time.Second, func() error {
			l, err := e.leader(nodes)
			if err != nil {
				return err
			}
			if li := e.leaderInfo(l); li == nil || !li.IsLeader {
				return fmt.Errorf("%s no longer leads", l)
			}
			old = l
			return nil
		})
		qs := e.quickstart(t)
		// The leader's operator process is frozen (docker pause of its
		// container, on its node): a stop-the-world pause past its lease.
		// (Pausing the whole docker-in-docker node would not do it: the
		// node's containers live in the host's cgroups, not the node's.)
		op := strings.Fields(onNode(t, old, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+stack+"_operator"))[0]
		onNode(t, old, "pause", op)
		paused := true
		defer func() {
			if paused {
				exec.Command("docker", "exec", old, "docker", "unpause", op).Run()
			}
		}()
		eventually(t, "a new leader while the old one is paused", 10*time.Second, func() error {
			l, err := e.leader(others(nodes, old))
			if err != nil {
				return err
			}
			_ = l
			return nil
		})
		// A change the paused leader does not know of: if it wrote on
		// resuming, it would write the old load-balancer configuration back.
		want := api.BalanceLeastConn
		if qs.Spec.LoadBalancer.Balance == api.BalanceLeastConn {
			want = api.BalanceClientID
		}
		eventually(t, "the change applied", 10*time.Second, func() error { return e.applyWith(ctx, qs, "", want) })
		eventually(t, "the new leader reconciling the change", 15*time.Second, func() error {
			c, err := e.c.GetConsistent(ctx, cluster)
			if err != nil {
				return err
			}
			if c.Status.ObservedGeneration < c.Generation {
				return fmt.Errorf("observed generation %d of %d", c.Status.ObservedGeneration, c.Generation)
			}
			return nil
		})
		resumed := time.Now()
		onNode(t, old, "unpause", op)
		paused = false
		eventually(t, "the old leader following", 15*time.Second, func() error {
			li := e.leaderInfo(old)
			if li == nil || li.IsLeader || li.LeaderID == "" {
				return fmt.Errorf("%+v", li)
			}
			return nil
		})
		logs := e.waitLog(t, old, resumed, "leader loop stopped")
		if w := writes(logs); len(w) > 0 {
			t.Errorf("the old leader wrote to Swarm after resuming:\n%s", strings.Join(w, "\n"))
		}
		if !strings.Contains(logs, "leader loop stopped") {
			var ours []string // the operator's own lines (not raft's), from before the pause
			for _, l := range strings.Split(e.operatorLogs(t, old, resumed.Add(-time.Minute)), "\n") {
				if strings.HasPrefix(l, "{") {
					ours = append(ours, l)
				}
			}
			t.Errorf("the old leader's log does not show its loop stopping after the pause:\n%s\nits own lines from a minute before the resume:\n%s", logs, strings.Join(ours, "\n"))
		}
	})

	t.Run("partitioned leader: the majority goes on, healing converges", func(t *testing.T) {
		e.waitVoters(t, 3)
		old, err := e.leader(nodes)
		if err != nil {
			t.Fatal(err)
		}
		ip := e.ip[old]
		cut := time.Now()
		sh(t, "docker", "network", "disconnect", net, old)
		connected := false
		defer func() {
			if !connected {
				exec.Command("docker", "network", "connect", "--ip", ip, net, old).Run()
			}
		}()
		var newLeader string
		eventually(t, "a leader in the majority", 10*time.Second, func() error {
			l, err := e.leader(others(nodes, old))
			newLeader = l
			return err
		})
		qs := e.quickstart(t)
		label := "partition-" + strconv.FormatInt(time.Now().Unix(), 10)
		eventually(t, "a write in the majority", 10*time.Second, func() error { return e.applyWith(ctx, qs, label, "") })
		// The cut-off leader steps down (its lease runs out) and writes
		// nothing from then on.
		logs := e.waitLog(t, old, cut, "leader loop stopped")
		if !strings.Contains(logs, "leader loop stopped") {
			t.Errorf("the cut-off leader did not stop its loop:\n%s", logs)
		}
		if w := writes(e.operatorLogs(t, old, cut.Add(time.Second))); len(w) > 0 {
			t.Errorf("the cut-off leader wrote to Swarm:\n%s", strings.Join(w, "\n"))
		}
		sh(t, "docker", "network", "connect", "--ip", ip, net, old)
		connected = true
		eventually(t, "the healed node has the majority's write", 60*time.Second, func() error {
			one, _ := client.New(client.Options{Server: e.api(old), Token: e.token, CAFile: testutil.CAFile(), Timeout: 2 * time.Second})
			got, err := one.Get(ctx, cluster)
			if err != nil {
				return err
			}
			if got.Labels["ha-seq"] != label {
				return fmt.Errorf("label %q", got.Labels["ha-seq"])
			}
			return nil
		})
		if l, err := e.leader(nodes); err != nil {
			t.Fatalf("after healing: %v (leader in the majority was %s)", err, newLeader)
		} else {
			t.Logf("leader after healing: %s", l)
		}
	})

	t.Run("every manager restarted: every object intact", func(t *testing.T) {
		e.waitVoters(t, 3)
		before, err := e.c.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		sh(t, "docker", append([]string{"restart", "-t", "5"}, nodes...)...)
		eventually(t, "a leader after restarting every manager", 180*time.Second, func() error {
			_, err := e.leader(nodes)
			return err
		})
		var after *api.MqttClusterList
		eventually(t, "the objects readable", 60*time.Second, func() error {
			after, err = e.c.List(ctx, "")
			return err
		})
		if !reflect.DeepEqual(userView(before), userView(after)) {
			t.Fatalf("objects differ after restarting every manager:\nbefore %+v\nafter  %+v", userView(before), userView(after))
		}
	})

	t.Run("backup, every operator's state destroyed, restore", func(t *testing.T) {
		e.waitVoters(t, 3)
		// The stored object as make up applies it, so that make up's own
		// apply after the restore is "unchanged" when nothing was lost.
		doc, err := os.ReadFile(filepath.Join(root(), ".local", "quickstart-3.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Apply(ctx, doc); err != nil {
			t.Fatal(err)
		}
		// A settled cluster (every task running), so that any task replaced
		// from here on shows.
		e.waitReady(t)
		backup, err := e.c.Backup(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before, err := e.c.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		svcBefore := services(t, nodes[0])
		first := nodes[0]
		// The image the stack runs, by digest (pulled by digest, the node
		// has it under no tag): the restore runs it with no registry login.
		op := onNode(t, first, "service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", stack+"_operator")
		if i := strings.Index(op, "@sha256:"); i > 0 {
			if j := strings.LastIndex(op[:i], ":"); j > 0 && !strings.Contains(op[j:i], "/") {
				op = op[:j] + op[i:] // repo:tag@digest -> repo@digest
			}
		}
		// The stack's control network stays while the clusters' HAProxy
		// services use it: stack rm says so, and the redeploy reuses it.
		exec.Command("docker", "exec", first, "docker", "stack", "rm", stack).Run()
		for _, n := range nodes {
			n := n
			eventually(t, "the operator gone from "+n, 60*time.Second, func() error {
				if out := onNode(t, n, "ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+stack+"_operator"); out != "" {
					exec.Command("docker", "exec", n, "docker", "rm", "-f", out).Run()
					return fmt.Errorf("containers left")
				}
				return nil
			})
			eventually(t, "the operator's volume removed on "+n, 30*time.Second, func() error {
				out, err := exec.Command("docker", "exec", n, "docker", "volume", "rm", "-f", stack+"_data").CombinedOutput()
				if err != nil {
					return fmt.Errorf("%s", out)
				}
				return nil
			})
		}
		select { // every operator is gone: none runs a loop
		case e.loopsGone <- struct{}{}:
		default:
		}
		// Restore on one manager, then deploy the stack as make up does.
		cmd := exec.Command("docker", "exec", "-i", first, "docker", "run", "--rm", "-i", "-v", stack+"_data:/data", op,
			"restore", "--data-dir", "/data", "--node-id", e.id[first], "--raft-advertise", e.ip[first]+":7951")
		cmd.Stdin = strings.NewReader(string(backup))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("restore: %v\n%s", err, out)
		} else {
			t.Logf("%s", strings.TrimSpace(string(out)))
		}
		up := exec.Command(filepath.Join(root(), "hack", "up.sh"))
		up.Env = append(os.Environ(), "MANAGERS=3")
		if out, err := up.CombinedOutput(); err != nil {
			t.Fatalf("make up MANAGERS=3 after the restore: %v\n%s", err, out)
		}
		after, err := e.c.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(userView(before), userView(after)) {
			t.Fatalf("objects differ after the restore:\nbefore %+v\nafter  %+v", userView(before), userView(after))
		}
		peers, err := e.c.Peers(ctx)
		if err != nil || len(peers) != 3 {
			t.Fatalf("peers after the restore: %+v %v", peers, err)
		}
		// The running broker clusters were adopted: nothing updated or
		// restarted.
		if now := services(t, first); !reflect.DeepEqual(svcBefore, now) {
			t.Fatalf("services changed by the restore:\nbefore %v\nafter  %v", svcBefore, now)
		}
		obj := e.quickstart(t)
		if !meta.IsStatusConditionTrue(obj.Status.Conditions, api.ConditionReady) {
			t.Logf("quickstart conditions after the restore: %+v", obj.Status.Conditions)
		}
	})
}

// services maps each of quickstart's services to its spec hash and running
// tasks: either moves when a service is updated or restarted.
func services(t *testing.T, node string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range strings.Fields(onNode(t, node, "service", "ls", "--filter", "label=mqtt.swarm/cluster="+cluster, "--format", "{{.Name}}")) {
		hash := onNode(t, node, "service", "inspect", n, "--format", `{{index .Spec.Labels "mqtt.swarm/spec-hash"}}`)
		out[n] = hash + " " + strings.Join(strings.Fields(onNode(t, node, "service", "ps", "-q", "--filter", "desired-state=running", n)), ",")
	}
	return out
}

func userView(l *api.MqttClusterList) []api.MqttCluster { return testutil.UserView(l) }

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type errStr string

func (e errStr) Error() string { return string(e) }

// explainOnFailure, when t fails, logs what the cluster's containers and
// the operators said since now: every container of the cluster on every
// node (stopped ones too) with its last lines, and the operators' lines
// naming the cluster. A rare failure is then explained by its own run.
func (e *env) explainOnFailure(t *testing.T, cluster string) {
	since := time.Now()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		hosts, _ := exec.Command("docker", "ps", "--format", "{{.Names}}", "--filter", "name=^mqtt-m").Output()
		for _, n := range strings.Fields(string(hosts)) {
			ps, _ := exec.Command("docker", "exec", n, "docker", "ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}}", "--filter", "name="+cluster+"-").Output()
			for _, row := range strings.Split(strings.TrimSpace(string(ps)), "\n") {
				f := strings.Fields(row)
				if len(f) < 2 || !strings.HasPrefix(f[1], cluster+"-") {
					continue
				}
				out, _ := exec.Command("docker", "exec", n, "docker", "logs", "-t", "--tail", "40", f[0]).CombinedOutput()
				t.Logf("on %s: %s\n%s", n, row, out)
			}
			if !slices.Contains(nodes, n) {
				continue
			}
			logs, err := operatorLogs(n, since)
			if err != nil {
				t.Logf("%v", err)
				continue
			}
			for _, l := range strings.Split(logs, "\n") {
				if strings.Contains(l, `"`+cluster+`"`) || strings.Contains(l, cluster+"-") {
					t.Logf("operator on %s: %s", n, l)
				}
			}
		}
	})
}
