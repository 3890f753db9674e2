//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

const bridgeCluster = "e2ebridge"

func bridgeSpec(replicas int) []byte {
	return testSpec(bridgeCluster, replicas, 22883, 27883, "")
}

// inbox records what one subscriber received, by topic and payload.
type inbox struct {
	mu   sync.Mutex
	got  map[string]int // "topic payload" -> deliveries
	when map[string]time.Time
	n    int
}

func newInbox() *inbox { return &inbox{got: map[string]int{}, when: map[string]time.Time{}} }

func (b *inbox) handler(_ mqtt.Client, m mqtt.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := m.Topic() + " " + string(m.Payload())
	if b.got[k] == 0 {
		b.when[k] = time.Now()
	}
	b.got[k]++
	b.n++
}

func (b *inbox) count(k string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got[k]
}

func (b *inbox) total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// pinned connects clients until one sits on each of the cluster's
// brokers, by client id under balance: clientid; it returns them by broker
// index and closes the others.
func pinned(t *testing.T, e endpoint, replicas int, prefix string, onConnect func(*conn)) map[int]*conn {
	return pinnedOn(t, bridgeCluster, e, replicas, prefix, onConnect)
}

// pinnedOn is pinned for any cluster.
func pinnedOn(t *testing.T, cluster string, e endpoint, replicas int, prefix string, onConnect func(*conn)) map[int]*conn {
	t.Helper()
	out := map[int]*conn{}
	for round := 0; len(out) < replicas; round++ {
		if round > 5 {
			t.Fatalf("could not place a %s client on every broker: have %d", prefix, len(out))
		}
		var cands []*conn
		var ids []string
		for i := 0; i < 4*replicas; i++ {
			id := fmt.Sprintf("%s-%d-%d", prefix, round, i)
			c, err := dial(e, id, nil, e.user, e.pass)
			if err != nil {
				t.Fatal(err)
			}
			cands, ids = append(cands, c), append(ids, id)
		}
		var where map[string]string
		eventually(t, "candidates located", 15*time.Second, func() error {
			where = brokerOf(t, cluster, replicas, ids)
			if len(where) < len(ids) {
				return fmt.Errorf("%d of %d", len(where), len(ids))
			}
			return nil
		})
		for _, c := range cands {
			var idx int
			fmt.Sscanf(strings.TrimPrefix(where[c.id], cluster+"-broker-"), "%d", &idx)
			if _, taken := out[idx]; taken {
				c.Disconnect(0)
				continue
			}
			out[idx] = c
			if onConnect != nil {
				onConnect(c)
			}
			t.Cleanup(func() { c.Disconnect(0) })
		}
	}
	return out
}

func subscribe(t *testing.T, c *conn, topic string, qos byte, box *inbox) {
	t.Helper()
	if tok := c.Subscribe(topic, qos, box.handler); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s on %s: %v", topic, c.id, tok.Error())
	}
}

func publish(t *testing.T, c *conn, topic string, qos byte, retained bool, payload string) {
	t.Helper()
	if tok := c.Publish(topic, qos, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s on %s: %v", topic, c.id, tok.Error())
	}
}

// bridgeParents reads, from each broker's log, which broker the bridge of
// each broker i >= 1 last connected to ("New client connected ... as
// <cluster>-broker-i-bridge"), with -1 when none is seen.
func bridgeParents(t *testing.T, replicas int) map[int]int {
	t.Helper()
	last := map[int]string{}
	parent := map[int]int{}
	for j := 0; j < replicas; j++ {
		logs := testutil.ServiceLogs(fmt.Sprintf("%s-broker-%d", bridgeCluster, j), "--timestamps")
		for _, line := range strings.Split(logs, "\n") {
			for i := 1; i < replicas; i++ {
				if (strings.Contains(line, "New bridge connected from") || strings.Contains(line, "New client connected from")) && strings.Contains(line, fmt.Sprintf(" as %s-broker-%d-bridge ", bridgeCluster, i)) {
					ts := strings.Fields(line)[0]
					if ts > last[i] {
						last[i], parent[i] = ts, j
					}
				}
			}
		}
	}
	for i := 1; i < replicas; i++ {
		if _, ok := parent[i]; !ok {
			parent[i] = -1
		}
	}
	return parent
}

// admission is a broker server's state in a cluster's HAProxy, read
// between from and to.
type admission struct {
	from, to  time.Time
	op, admin int
}

// admitted: HAProxy sends new clients there (running, no maintenance or
// drain bit).
func (a admission) admitted() bool { return a.op == 2 && a.admin == 0 }

// sampleAdmission reads server's state from the cluster's HAProxy (its
// runtime socket, through docker exec) until stop is closed, and sends
// the samples.
func sampleAdmission(t *testing.T, cluster, server string, stop <-chan struct{}) <-chan []admission {
	lb := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+cluster+"-lb")
	out := make(chan []admission, 1)
	go func() {
		var ss []admission
		defer func() { out <- ss }()
		for n := 0; n < 2000; n++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			from := time.Now()
			b, err := exec.Command("docker", "exec", lb, "sh", "-c", `echo "show servers state brokers" | socat stdio unix-connect:/run/haproxy/admin.sock`).Output()
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				// be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
				if f := strings.Fields(l); len(f) > 6 && f[3] == server {
					a := admission{from: from, to: time.Now()}
					fmt.Sscan(f[5], &a.op)
					fmt.Sscan(f[6], &a.admin)
					ss = append(ss, a)
				}
			}
		}
	}()
	return out
}

// hubAdmittedOnlyOnceJoined: after the hub was killed, HAProxy did not
// send clients to its new task before a bridge had joined it to the
// others (an island: what a client published there reached nobody
// else), and did once one had.
func hubAdmittedOnlyOnceJoined(t *testing.T, ss []admission, killed time.Time) {
	t.Helper()
	var joined time.Time
	logs := testutil.ServiceLogs(bridgeCluster+"-broker-0", "--timestamps")
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "New bridge connected from") && !strings.Contains(line, "New client connected from") || !strings.Contains(line, "-bridge ") {
			continue
		}
		if ts, err := time.Parse(time.RFC3339Nano, strings.Fields(line)[0]); err == nil && ts.After(killed) && (joined.IsZero() || ts.Before(joined)) {
			joined = ts
		}
	}
	if joined.IsZero() {
		t.Fatal("no bridge joined the hub's new task")
	}
	held, after := 0, 0
	for _, a := range ss {
		switch {
		case a.to.Before(joined) && a.from.After(killed) && a.admitted():
			t.Errorf("HAProxy admitted clients to the hub at %s, before a bridge joined it (%s)", a.to.Format("15:04:05.000"), joined.Format("15:04:05.000"))
		case a.to.Before(joined) && a.op == 2:
			held++ // up by its checks, held back
		case a.from.After(joined) && a.admitted():
			after++
		}
	}
	if after == 0 {
		t.Errorf("the hub never admitted again after it joined (%d samples)", len(ss))
	}
	t.Logf("hub: joined %v after the kill; %d of %d samples up but held back before that", joined.Sub(killed).Round(time.Millisecond), held, len(ss))
}

// maxQoS1Dups bounds the QoS 1 duplicates a fault-free run may show (a
// retransmission after a slow PUBACK); a bridge loop makes hundreds.
const maxQoS1Dups = 5

// TestOneLogicalBroker: three bridged brokers behave as one. Every
// subscriber gets every QoS 2 message from every broker exactly once and
// every QoS 1 message at least once; no storm; retained messages cross
// brokers; killing the hub stops cross-broker delivery for under 5 s and
// loses no QoS 1 message; scaling 3 -> 5 -> 3 under traffic restarts no
// staying broker and delivery goes on.
func TestOneLogicalBroker(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	t.Cleanup(func() {
		if os.Getenv("E2E_KEEP") != "" {
			return // leave it for a look after a failure
		}
		_ = c.Delete(ctx, bridgeCluster)
		eventually(t, "the bridge cluster removed", 60*time.Second, func() error {
			if n := docker(t, "service", "ls", "-q", "--filter", "label=mqtt.swarm/cluster="+bridgeCluster); n != "" {
				return errStr("services left")
			}
			return nil
		})
	})
	if _, err := c.Apply(ctx, bridgeSpec(3)); err != nil {
		t.Fatal(err)
	}
	waitReady(t, c, bridgeCluster, 120*time.Second)
	ca, _ := c.CA(ctx, bridgeCluster)
	cr, err := c.Credentials(ctx, bridgeCluster)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(ca.Certificate))
	e := endpoint{host: "127.0.0.1", mqtt: 22883, mqtts: 27883, user: cr.Username, pass: cr.Password, roots: roots}

	// The tree: broker 1 bridges to broker 0, broker 2 to broker 0 or 1
	// (whichever answered first when it started).
	var parents map[int]int
	eventually(t, "brokers 1 and 2 bridged to lower-numbered brokers", 20*time.Second, func() error {
		if parents = bridgeParents(t, 3); parents[1] != 0 || parents[2] < 0 {
			return fmt.Errorf("parents %v", parents)
		}
		return nil
	})

	// The operator sees the same tree: the hub, and each spoke's bridge up.
	eventually(t, "status showing the tree", 20*time.Second, func() error {
		obj, err := c.Get(ctx, bridgeCluster)
		if err != nil {
			return err
		}
		if obj.Status.Hub != bridgeCluster+"-broker-0" {
			return fmt.Errorf("hub %q", obj.Status.Hub)
		}
		for i, b := range obj.Status.Brokers[1:] {
			if b.Bridge == nil || !b.Bridge.Connected || b.Bridge.Parent != fmt.Sprintf("%s-broker-%d", bridgeCluster, parents[i+1]) {
				return fmt.Errorf("%s bridge %+v, its log says parent %d", b.Name, b.Bridge, parents[i+1])
			}
		}
		return nil
	})

	boxes := map[int]*inbox{}
	subs := pinned(t, e, 3, "bsub", nil)
	for i, s := range subs {
		boxes[i] = newInbox()
		subscribe(t, s, "e2e/b/#", 2, boxes[i])
	}
	pubs := pinned(t, e, 3, "bpub", nil)

	const n = 100
	var wg sync.WaitGroup
	for b, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < n; k++ {
				publish(t, p, fmt.Sprintf("e2e/b/q2/from-%d", b), 2, false, fmt.Sprint(k))
				publish(t, p, fmt.Sprintf("e2e/b/q1/from-%d", b), 1, false, fmt.Sprint(k))
			}
		}()
	}
	wg.Wait()
	defer func() {
		if t.Failed() {
			for i, box := range boxes {
				for b := 0; b < 3; b++ {
					var q1, q2 int
					for k := 0; k < n; k++ {
						q1 += min(1, box.count(fmt.Sprintf("e2e/b/q1/from-%d %d", b, k)))
						q2 += min(1, box.count(fmt.Sprintf("e2e/b/q2/from-%d %d", b, k)))
					}
					t.Logf("subscriber on broker %d has %d/%d QoS 1 and %d/%d QoS 2 from broker %d", i, q1, n, q2, n, b)
				}
			}
		}
	}()
	eventually(t, "every subscriber has every message", 30*time.Second, func() error {
		for i, box := range boxes {
			for b := 0; b < 3; b++ {
				for k := 0; k < n; k++ {
					for _, q := range []string{"q1", "q2"} {
						if box.count(fmt.Sprintf("e2e/b/%s/from-%d %d", q, b, k)) == 0 {
							return fmt.Errorf("subscriber on broker %d misses %s from broker %d #%d", i, q, b, k)
						}
					}
				}
			}
		}
		return nil
	})
	// Storm guard. A barrier first, no sleep: a QoS 2 marker from every
	// publisher after its messages. Every path (publisher -> its broker ->
	// bridges -> the subscriber's broker -> subscriber) is one ordered
	// connection at each hop, so once every subscriber has every marker, a
	// copy that a bridge loop made of an earlier message has arrived too.
	for b, p := range pubs {
		publish(t, p, fmt.Sprintf("e2e/b/q2/from-%d", b), 2, false, "end")
	}
	eventually(t, "every subscriber has every publisher's marker", 30*time.Second, func() error {
		for i, box := range boxes {
			for b := 0; b < 3; b++ {
				if box.count(fmt.Sprintf("e2e/b/q2/from-%d end", b)) == 0 {
					return fmt.Errorf("subscriber on broker %d misses broker %d's marker", i, b)
				}
			}
		}
		return nil
	})
	// Then: every QoS 2 message (and marker) exactly once; QoS 1
	// duplicates counted, and only a handful allowed (a retransmission):
	// a loop would copy every message, hundreds of duplicates; and nothing
	// else delivered.
	dups := 0
	for i, box := range boxes {
		for b := 0; b < 3; b++ {
			if got := box.count(fmt.Sprintf("e2e/b/q2/from-%d end", b)); got != 1 {
				t.Errorf("subscriber on broker %d got broker %d's marker %d times", i, b, got)
			}
			for k := 0; k < n; k++ {
				if got := box.count(fmt.Sprintf("e2e/b/q2/from-%d %d", b, k)); got != 1 {
					t.Errorf("subscriber on broker %d got QoS 2 message %d of broker %d %d times", i, k, b, got)
				}
				dups += box.count(fmt.Sprintf("e2e/b/q1/from-%d %d", b, k)) - 1
			}
		}
	}
	deliveries := 0
	for _, box := range boxes {
		deliveries += box.total()
	}
	want := len(boxes) * (2*3*n + 3)
	t.Logf("deliveries: %d for %d subscribers x %d messages and 3 markers; QoS 1 duplicates: %d", deliveries, len(boxes), 2*3*n, dups)
	if dups > maxQoS1Dups {
		t.Errorf("%d QoS 1 duplicates with no fault (at most %d): a storm", dups, maxQoS1Dups)
	}
	if deliveries != want+dups {
		t.Errorf("deliveries %d != subscribers x (messages + markers) (%d) + QoS 1 duplicates (%d): messages from elsewhere", deliveries, want, dups)
	}

	// Retained messages cross brokers, both ways.
	publish(t, pubs[0], "e2e/r/from-0", 1, true, "r0")
	publish(t, pubs[2], "e2e/r/from-2", 1, true, "r2")
	for _, tc := range []struct {
		sub   int
		topic string
		want  string
	}{{2, "e2e/r/from-0", "r0"}, {0, "e2e/r/from-2", "r2"}, {1, "e2e/r/from-0", "r0"}} {
		eventually(t, "retained "+tc.topic+" on broker "+fmt.Sprint(tc.sub), 10*time.Second, func() error {
			box := newInbox()
			subscribe(t, subs[tc.sub], tc.topic, 1, box)
			defer subs[tc.sub].Unsubscribe(tc.topic).WaitTimeout(time.Second)
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				if box.count(tc.topic+" "+tc.want) > 0 {
					return nil
				}
				time.Sleep(20 * time.Millisecond)
			}
			return errStr("not received")
		})
	}

	// Kill the hub. A publisher on broker 2 publishes QoS 1 every 100 ms;
	// the subscriber on broker 1 must get messages published after the
	// kill within 5 s, and every message in the end. And one on broker 1
	// for the subscriber on broker 2: once broker 2's bridge is up again
	// (on broker 1), it never leaves a working parent, so nothing
	// published after that is missed there — the hub's return included.
	failover, kept := newInbox(), newInbox()
	subscribe(t, subs[1], "e2e/f/#", 1, failover)
	subscribe(t, subs[2], "e2e/k/#", 1, kept)
	stop := make(chan struct{})
	sent := make(chan int, 1)
	var published atomic.Int64
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-stop:
				sent <- k
				return
			case <-tick.C:
			}
			published.Store(int64(k + 1))
			if tok := pubs[2].Publish("e2e/f/seq", 1, false, fmt.Sprint(k)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Errorf("failover publish %d: %v", k, tok.Error())
			}
			if tok := pubs[1].Publish("e2e/k/seq", 1, false, fmt.Sprint(k)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Errorf("publish %d on broker 1: %v", k, tok.Error())
			}
		}
	}()
	eventually(t, "failover traffic flowing", 10*time.Second, func() error {
		if failover.total() < 5 {
			return errStr("not yet")
		}
		return nil
	})
	hub := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+bridgeCluster+"-broker-0")
	stopSampling := make(chan struct{})
	hubStates := sampleAdmission(t, bridgeCluster, "broker-0", stopSampling)
	docker(t, "kill", hub)
	killed, killSeq := time.Now(), int(published.Load())
	var resumed time.Duration
	eventually(t, "cross-broker delivery after the hub was killed", 30*time.Second, func() error {
		failover.mu.Lock()
		defer failover.mu.Unlock()
		// The first message published after the kill that arrived.
		first := time.Time{}
		for k, when := range failover.when {
			var seq int
			fmt.Sscanf(strings.TrimPrefix(k, "e2e/f/seq "), "%d", &seq)
			if seq >= killSeq && (first.IsZero() || when.Before(first)) {
				first = when
			}
		}
		if first.IsZero() {
			return errStr("nothing published after the kill arrived yet")
		}
		resumed = first.Sub(killed)
		return nil
	})
	// The status notices: the hub moves to broker 1, or broker 0 comes
	// back and its spokes' bridges are shown reconnecting.
	eventually(t, "status noticing the hub's death", 20*time.Second, func() error {
		obj, err := c.Get(ctx, bridgeCluster)
		if err != nil {
			return err
		}
		if obj.Status.Hub != bridgeCluster+"-broker-0" || meta.IsStatusConditionFalse(obj.Status.Conditions, "Ready") {
			return nil
		}
		return fmt.Errorf("status still shows a healthy star: hub %s", obj.Status.Hub)
	})
	// Parents stay lower-numbered throughout (a tree): sample while the
	// hub comes back, and for 10 s after the cluster is Ready again (twice
	// the 5 s in which a Mosquitto bridge with round_robin false would
	// leave its parent to return to broker 0, and lose what is published
	// meanwhile for its subscribers).
	checkTree := func() {
		for child, parent := range bridgeParents(t, 3) {
			if parent >= child {
				t.Fatalf("broker %d bridged to broker %d: not a tree", child, parent)
			}
		}
	}
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		checkTree()
	}
	waitReady(t, c, bridgeCluster, 60*time.Second)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		checkTree()
	}
	close(stopSampling)
	hubAdmittedOnlyOnceJoined(t, <-hubStates, killed)
	close(stop)
	total := <-sent
	eventually(t, "every failover message delivered", 30*time.Second, func() error {
		for k := 0; k < total; k++ {
			if failover.count(fmt.Sprintf("e2e/f/seq %d", k)) == 0 {
				return fmt.Errorf("message %d of %d missing", k, total)
			}
		}
		return nil
	})
	t.Logf("hub killed: first cross-broker delivery of a later message %v after; %d messages published, none lost", resumed.Round(time.Millisecond), total)
	if resumed > 5*time.Second {
		t.Errorf("cross-broker delivery resumed after %v, want within 5s", resumed)
	}
	// Broker 1 -> broker 2: from the first message published after the kill
	// that arrived (broker 2's bridge up again, on broker 1), every later
	// one arrived, across the hub's return.
	first := -1
	for k := killSeq; k < total && first < 0; k++ {
		if kept.count(fmt.Sprintf("e2e/k/seq %d", k)) > 0 {
			first = k
		}
	}
	if first < 0 {
		t.Fatalf("the subscriber on broker 2 got none of broker 1's %d messages after the kill", total-killSeq)
	}
	eventually(t, "broker 1's messages after the bridge was back delivered on broker 2", 30*time.Second, func() error {
		var missing []int
		for k := first; k < total; k++ {
			if kept.count(fmt.Sprintf("e2e/k/seq %d", k)) == 0 {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of messages %d-%d missing: %v", len(missing), first, total-1, missing)
		}
		return nil
	})
	p := bridgeParents(t, 3)
	t.Logf("hub back: parents %v; broker 1 -> broker 2: %d messages lost in the kill's window (#%d-#%d), none of the %d after", p, first-killSeq, killSeq, first-1, total-first)
	if p[1] != 0 || p[2] < 0 {
		t.Errorf("after the hub's return: parents %v, want broker 1 on broker 0 and broker 2 bridged", p)
	}

	// Scale 3 -> 5 -> 3 with traffic between brokers 1 and 2: the brokers
	// that stay are neither updated nor restarted, no storm, and every
	// message published is delivered.
	stay := serviceVersions(t, bridgeCluster)
	scaleBox := newInbox()
	subscribe(t, subs[1], "e2e/s/#", 1, scaleBox)
	stopScale := make(chan struct{})
	scaleSent := make(chan int, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-stopScale:
				scaleSent <- k
				return
			case <-tick.C:
			}
			if tok := pubs[2].Publish("e2e/s/seq", 1, false, fmt.Sprint(k)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Errorf("publish %d while scaling: %v", k, tok.Error())
			}
		}
	}()
	for _, n := range []int{5, 3} {
		if _, err := c.Apply(ctx, bridgeSpec(n)); err != nil {
			t.Fatal(err)
		}
		waitReady(t, c, bridgeCluster, 90*time.Second)
		if n == 5 {
			// The new brokers join the tree.
			eventually(t, "brokers 3 and 4 bridged", 30*time.Second, func() error {
				if p := bridgeParents(t, 5); p[3] < 0 || p[4] < 0 {
					return fmt.Errorf("parents %v", p)
				}
				return nil
			})
		}
	}
	close(stopScale)
	sentN := <-scaleSent
	eventually(t, "every message published while scaling delivered", 30*time.Second, func() error {
		for k := 0; k < sentN; k++ {
			if scaleBox.count(fmt.Sprintf("e2e/s/seq %d", k)) == 0 {
				return fmt.Errorf("message %d of %d missing", k, sentN)
			}
		}
		return nil
	})
	if got := scaleBox.total(); got > sentN+sentN/10 {
		t.Errorf("%d deliveries for %d messages while scaling: a storm", got, sentN)
	}
	now := serviceVersions(t, bridgeCluster)
	for name, v := range stay {
		if now[name] != v {
			t.Errorf("scaling 3 -> 5 -> 3 updated or restarted %s (%s -> %s)", name, v, now[name])
		}
	}
	t.Logf("scaling 3 -> 5 -> 3: %d messages published, %d deliveries, staying brokers untouched", sentN, scaleBox.total())
}
