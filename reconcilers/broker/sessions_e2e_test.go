//go:build e2e

package broker

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// TestMovedSessionsOnRealBrokers: two brokers of the real image, configured
// as the operator configures them (rendered mosquitto.conf, broker-1's
// bridge to broker-0, the cluster plugin with catch-up), and a persistent
// QoS 1 subscriber that moves between them the ways HAProxy moves clients.
//
//   - returning: a subscriber that left broker-1 for broker-0 and comes
//     back gets what was published while it was offline, and not a second
//     time what it got on broker-0 (its old session on broker-1 queued
//     nothing while broker-0 held it);
//   - half open: a subscriber whose connection to broker-0 stalls (a path
//     cut off: broker-0 still thinks it online) and that connects to
//     broker-1 gets everything published since it stopped receiving, not
//     only the last 2 s (broker-0 never says it left, and is still heard);
//   - half open, expired: the same, but broker-0 ends the stalled
//     connection (its keepalive runs out) before the client arrives on
//     broker-1: broker-0 says it left 1.5 keepalives after it stopped
//     receiving;
//   - half open, back again: the same as half open, but the subscriber
//     leaves broker-1 before its catch-up there learnt where to start,
//     and comes back: the catch-up goes on;
//   - restarted, its client elsewhere: broker-1 restarts from its
//     persistence with the session of a subscriber that moved to broker-0
//     meanwhile: the messages its bridge is caught up on are not queued
//     for that session (its client got them on broker-0), and are for a
//     restored session whose client is offline;
//   - home gone: a subscriber online on broker-0 when broker-0 is killed
//     gets on broker-1, where its old session is, everything published
//     there meanwhile (broker-1 queues for it again once broker-0 is
//     silent, and catches up the moment before).
func TestMovedSessionsOnRealBrokers(t *testing.T) {
	b0, b1 := bridgedPair(t, ephemeral)
	dir := watchDir(t, b1)

	// stalled: a subscriber online on broker-0 through a proxy that then
	// stalls (broker-0 still thinks it online, until its keepalive runs
	// out).
	stalled := func(t *testing.T, id, topic string, keepalive int) {
		p := newStallProxy(t, b0)
		s := newSub(t, p.addr(), id, topic, keepalive)
		dir.waitOnline(t, id, 0)
		publishN(t, b0, topic, "w", 5, 0)
		s.wait(t, "w", 5)
		p.stall()
	}

	t.Run("returning", func(t *testing.T) {
		id, topic := "ret", "sess/ret"
		// A keepalive of 2 s: coming back, it is caught up from 1.5
		// keepalives and the 2 s margin before it left broker-0 (5 s).
		newSub(t, b1, id, topic, 2).close() // a session on broker-1, offline
		s := newSub(t, b0, id, topic, 2)
		dir.waitOnline(t, id, 0)
		publishN(t, b0, topic, "a", 100, 0)
		s.wait(t, "a", 100)
		// More than those 5 s before it leaves broker-0: the workload's
		// shape, not a readiness wait.
		time.Sleep(6 * time.Second)
		s.close()
		publishN(t, b0, topic, "b", 10, 0)
		back := newSub(t, b1, id, topic, 2)
		back.wait(t, "b", 10)
		// A live message after the session's queue: once it is here, so is
		// whatever the queue held.
		publishN(t, b1, topic, "z", 1, 0)
		back.wait(t, "z", 1)
		if n := back.count("a"); n > 0 {
			t.Errorf("back on broker-1, the subscriber got %d of the 100 messages it had on broker-0 again (its old session queued them)", n)
		}
		back.close()
	})

	t.Run("half open", func(t *testing.T) {
		id, topic := "half", "sess/half"
		stalled(t, id, topic, 10) // broker-0 keeps the connection: the client online there
		publishN(t, b0, topic, "c", 100, 50*time.Millisecond)
		moved := newSub(t, b1, id, topic, 10)
		got := moved.waitUpTo("c", 100, 15*time.Second)
		if got < 100 {
			t.Errorf("moved to broker-1 while its connection to broker-0 was half open, the subscriber got %d of the 100 messages published since it stalled", got)
		}
		moved.close()
	})

	t.Run("half open, expired", func(t *testing.T) {
		id, topic := "expired", "sess/expired"
		stalled(t, id, topic, 2)
		// Broker-0 ends the stalled connection when its keepalive runs out
		// (1.5 x 2 s), while the messages go on for 4 s; the client comes
		// to broker-1 after broker-0 said it left.
		publishN(t, b0, topic, "e", 80, 50*time.Millisecond)
		dir.waitOffline(t, id, 0)
		moved := newSub(t, b1, id, topic, 2)
		if got := moved.waitUpTo("e", 80, 10*time.Second); got < 80 {
			t.Errorf("moved to broker-1 after broker-0 timed out its half-open connection, the subscriber got %d of the 80 messages published since it stalled", got)
		}
		moved.close()
	})

	t.Run("half open, back again", func(t *testing.T) {
		id, topic := "again", "sess/again"
		stalled(t, id, topic, 10)
		publishN(t, b0, topic, "c", 60, 50*time.Millisecond)
		// On broker-1 it waits to learn when it stopped receiving on
		// broker-0; it leaves before that is known, and comes back.
		newSub(t, b1, id, topic, 10).close()
		back := newSub(t, b1, id, topic, 10)
		if got := back.waitUpTo("c", 60, 15*time.Second); got < 60 {
			t.Errorf("back on broker-1 after leaving it while its catch-up waited, the subscriber got %d of the 60 messages published since it stalled", got)
		}
		back.close()
	})

	// Its own pair: broker-0 restarts.
	t.Run("parent restarted", func(t *testing.T) {
		b0, b1 := bridgedPair(t, ephemeral)
		id, topic := "parent", "sess/parent"
		s := newSub(t, b1, id, topic, 60)
		publishN(t, b0, topic, "w", 5, 0)
		s.wait(t, "w", 5)
		// Broker-1 frozen (its bridge cannot reconnect) while broker-0
		// restarts and takes messages: broker-0 starts with no record of
		// broker-1's bridge.
		docker(t, "pause", b1.ctr)
		docker(t, "restart", "-t", "1", b0.ctr)
		b0 = rePort(t, b0)
		waitUp(t, b0)
		publishN(t, b0, topic, "r", 50, 0)
		docker(t, "unpause", b1.ctr)
		if got := s.waitUpTo("r", 50, 15*time.Second); got < 50 {
			t.Errorf("after its parent restarted, broker-1's subscriber got %d of the 50 messages published on the parent before the bridge came back", got)
		}
		s.close()
	})

	// Its own pair, with persistence: broker-1 stops and starts again with
	// the sessions it held.
	t.Run("restarted, its client elsewhere", func(t *testing.T) {
		b0, b1 := bridgedPair(t, "persistence: {enabled: true}")
		id, topic := "restored", "sess/restored"
		idle := newSub(t, b1, "idle", topic, 30) // offline everywhere from here on
		idle.close()
		s := newSub(t, b1, id, topic, 2)
		publishN(t, b0, topic, "w", 5, 0)
		s.wait(t, "w", 5)
		docker(t, "stop", "-t", "5", b1.ctr)
		// Its client moves to broker-0 and gets what is published there
		// while broker-1 is down.
		s = newSub(t, b0, id, topic, 2)
		publishN(t, b0, topic, "d", 50, 0)
		s.wait(t, "d", 50)
		// Broker-1 comes back with both sessions; its bridge is caught up
		// on the 50 (broker-0 replays what broker-1 missed), before
		// broker-0 has told it where the moved client is. Broker-1 keeps
		// them as arrived then; it admits clients once its bridge is up.
		docker(t, "start", b1.ctr)
		b1 = rePort(t, b1)
		waitUp(t, b1)
		kept := time.Now()
		// The client leaves broker-0 more than 1.5 keepalives and the 2 s
		// margin (5 s) after broker-1 took the 50 in, so coming back to
		// broker-1 it is caught up on none of them: the workload's shape,
		// not a readiness wait.
		time.Sleep(time.Until(kept.Add(6 * time.Second)))
		s.close()
		back := newSub(t, b1, id, topic, 2)
		publishN(t, b1, topic, "z", 1, 0)
		back.wait(t, "z", 1) // after the session's queue: whatever it held is here
		if n := back.count("d"); n > 0 {
			t.Errorf("back on broker-1, the subscriber got %d of the 50 messages it had on broker-0 again (its restored session queued them)", n)
		}
		back.close()
		// The session whose client is nowhere else gets them all.
		idle = newSub(t, b1, "idle", topic, 30)
		if got := idle.waitUpTo("d", 50, 15*time.Second); got < 50 {
			t.Errorf("the session restored on broker-1 whose client was offline got %d of the 50 messages published while broker-1 was down", got)
		}
		idle.close()
	})

	// Its own pair, keeping 2 s of messages: the subscriber comes back
	// after more than that, so what it gets is its session's queue.
	t.Run("home gone", func(t *testing.T) {
		b0, b1 := bridgedPair(t, ephemeral+", catchUp: {window: 2s}")
		dir := watchDir(t, b1)
		id, topic := "gone", "sess/gone"
		newSub(t, b1, id, topic, 30).close()
		s := newSub(t, b0, id, topic, 30)
		dir.waitOnline(t, id, 0)
		publishN(t, b1, topic, "w", 5, 0)
		s.wait(t, "w", 5)
		if out, err := exec.Command("docker", "kill", b0.ctr).CombinedOutput(); err != nil {
			t.Fatalf("docker kill: %v %s", err, out)
		}
		// The workload's shape, not readiness waits: messages from 3 s
		// after the kill (broker-0 silent for longer than the gossip's
		// 1.5 s), and the subscriber back 4 s after the last (longer than
		// the 2 s kept, and the 2 s margin).
		time.Sleep(3 * time.Second)
		publishN(t, b1, topic, "d", 60, 50*time.Millisecond)
		time.Sleep(4 * time.Second)
		back := newSub(t, b1, id, topic, 30)
		if got := back.waitUpTo("d", 60, 10*time.Second); got < 60 {
			t.Errorf("back on broker-1 after broker-0 was killed, the subscriber got %d of the 60 messages published there meanwhile (its session there did not queue them)", got)
		}
		back.close()
	})
}

func docker(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
		t.Fatalf("docker %s: %v %s", strings.Join(args, " "), err, out)
	}
}

// rePort is b after its container restarted (a new host port).
func rePort(t *testing.T, b realBroker) realBroker {
	t.Helper()
	out, err := exec.Command("docker", "port", b.ctr, strconv.Itoa(Port)+"/tcp").Output()
	if err != nil {
		t.Fatalf("docker port: %v", err)
	}
	_, b.port, _ = net.SplitHostPort(strings.TrimSpace(strings.Split(string(out), "\n")[0]))
	return b
}

// waitUp returns once b takes a connection (at most 15 s).
func waitUp(t *testing.T, b realBroker) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := connect(b.String(), "", true, 30, nil)
		if err == nil {
			c.Disconnect(0)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not up: %v", b.ctr, err)
		}
		time.Sleep(100 * time.Millisecond) // the retry interval
	}
}

// brokerImage is the broker image under test: BROKER_IMAGE, as make up
// takes it, or the one make up builds.
func brokerImage() string {
	if img := os.Getenv("BROKER_IMAGE"); img != "" {
		return img
	}
	return "swarm-mqtt/mosquitto:local"
}

// realBroker is a broker container and its client port on loopback.
type realBroker struct {
	ctr  string
	port string
}

func (b realBroker) String() string { return "127.0.0.1:" + b.port }

// ephemeral is a spec.broker without persistence: a broker that stops
// loses its sessions.
const ephemeral = "persistence: {enabled: false}"

// bridgedPair runs broker-0 and broker-1 of cluster "iot" (broker: the
// fields of its spec.broker) on a network of their own (broker-0 under the name broker-1's bridge dials), without TLS,
// anonymous clients allowed, and returns once a message crosses the bridge
// both ways.
func bridgedPair(t *testing.T, broker string) (realBroker, realBroker) {
	t.Helper()
	c := cluster(t, "spec: {auth: {allowAnonymous: true}, broker: {"+broker+"}}\n")
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	network := "swarm-mqtt-e2e-sessions-" + run
	if out, err := exec.Command("docker", "network", "create", network).CombinedOutput(); err != nil {
		t.Fatalf("docker network create: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", network).Run() })
	var bs [2]realBroker
	for i := range bs {
		dir := t.TempDir()
		os.Chmod(dir, 0o755)
		cfg, err := Render(c, i, Options{})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "mosquitto.conf"), cfg, 0o644)
		setup := "mkdir -p /run/secrets && touch /run/secrets/mosquitto-internal-passwd && chmod 0700 /run/secrets/mosquitto-internal-passwd && " +
			"mosquitto_passwd -b /run/secrets/mosquitto-internal-passwd " + BridgeUser + " b && chown mosquitto /run/secrets/mosquitto-internal-passwd && " +
			"cp /x/mosquitto.conf " + ConfigPath + " && "
		if i > 0 {
			bridge, err := RenderBridge(c.Name, i, "b", Options{})
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "bridge.conf"), bridge, 0o644)
			setup += "mkdir -p " + BridgeDir + " && cp /x/bridge.conf " + BridgeDir + "/bridge.conf && "
		}
		ctr := fmt.Sprintf("swarm-mqtt-e2e-sessions-%s-%d", run, i)
		args := []string{"run", "-d", "--name", ctr, "--network", network, "--network-alias", "tasks." + c.Name + "-broker-" + strconv.Itoa(i),
			"-p", "127.0.0.1::" + strconv.Itoa(Port), "-v", dir + ":/x:ro", brokerImage(), "sh", "-c",
			setup + StartScript(false, SharedPlugin(c, i, false))}
		if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
			t.Fatalf("docker run: %v\n%s", err, out)
		}
		t.Cleanup(func() {
			if t.Failed() {
				logs, _ := exec.Command("docker", "logs", ctr).CombinedOutput()
				t.Logf("%s:\n%s", ctr, logs)
			}
			_ = exec.Command("docker", "rm", "-f", ctr).Run()
		})
		out, err := exec.Command("docker", "port", ctr, strconv.Itoa(Port)+"/tcp").Output()
		if err != nil {
			t.Fatalf("docker port: %v", err)
		}
		_, port, _ := net.SplitHostPort(strings.TrimSpace(strings.Split(string(out), "\n")[0]))
		bs[i] = realBroker{ctr: ctr, port: port}
	}
	// The bridge carries messages both ways (and with them the plugin's
	// gossip: each broker hears the other).
	for _, dir := range [][2]realBroker{{bs[0], bs[1]}, {bs[1], bs[0]}} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			if crosses(t, dir[0], dir[1]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no message from %s reached %s within 30 s", dir[0].ctr, dir[1].ctr)
			}
		}
	}
	return bs[0], bs[1]
}

// crosses: a message published on from reaches a subscriber on to within
// a second.
func crosses(t *testing.T, from, to realBroker) bool {
	topic := "sess/probe/" + strconv.FormatInt(time.Now().UnixNano(), 36)
	sub, err := connect(to.String(), "", true, 30, nil)
	if err != nil {
		time.Sleep(100 * time.Millisecond) // the broker still starting: the retry interval
		return false
	}
	defer sub.Disconnect(0)
	got := make(chan struct{}, 1)
	if tok := sub.Subscribe(topic, 1, func(mqtt.Client, mqtt.Message) {
		select {
		case got <- struct{}{}:
		default:
		}
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return false
	}
	pub, err := connect(from.String(), "", true, 30, nil)
	if err != nil {
		return false
	}
	defer pub.Disconnect(0)
	pub.Publish(topic, 1, false, "probe").WaitTimeout(5 * time.Second)
	select {
	case <-got:
		return true
	case <-time.After(time.Second):
		return false
	}
}

func connect(addr, id string, clean bool, keepalive int, on mqtt.MessageHandler) (mqtt.Client, error) {
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).
		SetKeepAlive(time.Duration(keepalive) * time.Second).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).SetOrderMatters(false)
	if on != nil {
		o.SetDefaultPublishHandler(on)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, fmt.Errorf("connect to %s timed out", addr)
	}
	return c, tok.Error()
}

// sub is a persistent QoS 1 subscriber (clean session off), counting the
// messages it gets by payload.
type sub struct {
	c   mqtt.Client
	mu  sync.Mutex
	got map[string]int
}

func newSub(t *testing.T, addr fmt.Stringer, id, topic string, keepalive int) *sub {
	t.Helper()
	s := &sub{got: map[string]int{}}
	c, err := connect(addr.String(), id, false, keepalive, func(_ mqtt.Client, m mqtt.Message) {
		s.mu.Lock()
		s.got[string(m.Payload())]++
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("%s connect to %s: %v", id, addr, err)
	}
	if tok := c.Subscribe(topic, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("%s subscribe: %v", id, tok.Error())
	}
	s.c = c
	return s
}

// close disconnects cleanly: the session stays on its broker.
func (s *sub) close() { s.c.Disconnect(100) }

// count is how many distinct messages with the prefix it got.
func (s *sub) count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for p := range s.got {
		if strings.HasPrefix(p, prefix) {
			n++
		}
	}
	return n
}

// waitUpTo waits until the subscriber has n distinct messages with the
// prefix, or d passed, and returns how many it has.
func (s *sub) waitUpTo(prefix string, n int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for s.count(prefix) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return s.count(prefix)
}

func (s *sub) wait(t *testing.T, prefix string, n int) {
	t.Helper()
	if got := s.waitUpTo(prefix, n, 10*time.Second); got < n {
		t.Fatalf("got %d of %d %q messages", got, n, prefix)
	}
}

// publishN publishes n QoS 1 messages prefix0..prefix(n-1), each
// acknowledged, every apart.
func publishN(t *testing.T, addr fmt.Stringer, topic, prefix string, n int, every time.Duration) {
	t.Helper()
	c, err := connect(addr.String(), "", true, 30, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(100)
	for i := 0; i < n; i++ {
		if tok := c.Publish(topic, 1, false, prefix+strconv.Itoa(i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s%d: %v", prefix, i, tok.Error())
		}
		time.Sleep(every) // the workload's pace
	}
}

// dirWatch reads a broker's catch-up directory gossip (the bridge user's
// $cluster/dir/ topics) and keeps, as the plugin does, each session's
// newest entry: the higher version, then the higher broker.
type dirWatch struct {
	mu      sync.Mutex
	entries map[string]dirEntry
}

type dirEntry struct {
	ver    uint64
	home   int
	online bool
}

func watchDir(t *testing.T, b realBroker) *dirWatch {
	t.Helper()
	w := &dirWatch{entries: map[string]dirEntry{}}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + b.String()).SetUsername(BridgeUser).SetPassword("b").
		SetCleanSession(true).SetConnectTimeout(5 * time.Second)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect as the bridge user: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	tok := c.Subscribe("$cluster/dir/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		from, err := strconv.Atoi(strings.TrimPrefix(m.Topic(), "$cluster/dir/"))
		if err != nil {
			return
		}
		// Lines "+<version> <length>\n<id>" (online there) or "-…" (left).
		for p := string(m.Payload()); p != ""; {
			head, rest, ok := strings.Cut(p, "\n")
			var ver uint64
			var n int
			if !ok || len(head) < 2 {
				return
			}
			if _, err := fmt.Sscanf(head[1:], "%d %d", &ver, &n); err != nil || n > len(rest) {
				return
			}
			id := rest[:n]
			p = rest[n:]
			w.mu.Lock()
			e, known := w.entries[id]
			switch {
			case head[0] == '+' && (!known || ver > e.ver || (ver == e.ver && from >= e.home)):
				w.entries[id] = dirEntry{ver: ver, home: from, online: true}
			case head[0] == '-' && known && e.home == from && e.ver == ver:
				e.online = false
				w.entries[id] = e
			}
			w.mu.Unlock()
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe to the directory: %v", tok.Error())
	}
	return w
}

// waitOnline waits until the gossip says id is online on broker i.
func (w *dirWatch) waitOnline(t *testing.T, id string, i int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		e := w.entries[id]
		w.mu.Unlock()
		if e.online && e.home == i {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the directory never said %s is online on broker-%d", id, i)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOffline waits until the gossip says id left broker i.
func (w *dirWatch) waitOffline(t *testing.T, id string, i int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		e, ok := w.entries[id]
		w.mu.Unlock()
		if ok && !e.online && e.home == i {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the directory never said %s left broker-%d", id, i)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stallProxy forwards TCP connections to a broker until stalled: then it
// forwards nothing more and closes nothing, as a path cut off does (the
// broker keeps the connection and its client online).
type stallProxy struct {
	ln      net.Listener
	stalled chan struct{}
	done    chan struct{}
	once    sync.Once
}

func newStallProxy(t *testing.T, to fmt.Stringer) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, stalled: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() {
		close(p.done)
		ln.Close()
	})
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to.String())
			if err != nil {
				in.Close()
				continue
			}
			go p.pipe(in, out)
			go p.pipe(out, in)
		}
	}()
	return p
}

func (p *stallProxy) addr() fmt.Stringer { return p.ln.Addr() }

func (p *stallProxy) stall() { p.once.Do(func() { close(p.stalled) }) }

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer func() {
		<-p.done // never closed before the test ends: a cut path sends no FIN
		dst.Close()
		src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		select {
		case <-p.stalled:
			return
		default:
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}
