//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

// TestMovedSubscriberCatchesUp: a persistent subscriber whose broker is
// stopped the way a rolling update, a drain or a scale-down stops it
// (SIGTERM) reconnects through HAProxy, lands where it has no session, and
// subscribes again, as MQTT clients do. Every message published meanwhile
// still reaches it, with its properties: the broker it lands on replays
// what it missed (the cluster plugin's catch-up), or, if it lands on its
// restarted broker, that broker's bridge was caught up on its downtime.
func TestMovedSubscriberCatchesUp(t *testing.T) {
	e := quickstart(t)
	c := newClient(t)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	subID, pubID := idsOn(t, e, "cu-sub-"+run)[1], idsOn(t, e, "cu-pub-"+run)[2]
	topic := "e2e/catchup/" + run
	s := startMovingSubscriber(t, e, subID, topic+"/#", 30)
	p := startNumbered(t, e, pubID, topic+"/m")
	s.waitGot(t, 100)

	// Its broker stopped as Swarm stops a task.
	stopped := stopBroker(t, quickstartCluster+"-broker-1")
	again := s.subscribedAgain(t, 2)
	where := brokerOf(t, quickstartCluster, 3, []string{subID})[subID]
	// Two more seconds of traffic, then every acknowledged message must
	// arrive.
	<-time.After(time.Until(again.Add(2 * time.Second))) // the workload's length, not a readiness wait
	total := p.finish(t)
	m, dup, badProps := s.finish(total)
	t.Logf("broker-1 stopped; the subscriber subscribed again %v later (now on %s); %d messages published, %d missing, %d duplicated",
		again.Sub(stopped).Round(time.Millisecond), where, total, len(m), dup)
	if len(m) > 0 {
		t.Errorf("%d of %d acknowledged messages never reached the moved subscriber: %v", len(m), total, span(m))
	}
	if len(badProps) > 0 {
		t.Errorf("%d messages arrived without their properties (user property n, content type): %v", len(badProps), badProps[:min(10, len(badProps))])
	}
	waitReady(t, c, quickstartCluster, 60*time.Second)
}

// TestReturningSubscriberGetsNoStaleCopies: a persistent subscriber moved
// off its broker when that broker stopped comes back to it once it runs
// again (HAProxy sends a client id to the same broker). The restarted
// broker restored the subscriber's old session from its data; had it
// queued for that session while the client was online on the other
// broker, the client would get, on its return, everything published
// since the restart a second time (up to max_queued_messages, held in the
// broker meanwhile). It gets what it missed and no such copies.
func TestReturningSubscriberGetsNoStaleCopies(t *testing.T) {
	e := quickstart(t)
	c := newClient(t)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	subID, pubID := idsOn(t, e, "rs-sub-"+run)[1], idsOn(t, e, "rs-pub-"+run)[2]
	topic := "e2e/return/" + run
	svc := quickstartCluster + "-broker-1"
	// A keepalive of 2 s: coming back, it is caught up from 1.5
	// keepalives and the 2 s margin before it left the other broker (5 s).
	s := startMovingSubscriber(t, e, subID, topic+"/#", 2)
	p := startNumbered(t, e, pubID, topic+"/m")
	s.waitGot(t, 100)

	old := stopBroker(t, svc)
	s.subscribedAgain(t, 2)
	eventually(t, svc+" running again", 60*time.Second, func() error {
		if strings.TrimSpace(testutil.RunningLogs(svc)) == "" {
			return errStr("no running container yet")
		}
		return nil
	})
	waitReady(t, c, quickstartCluster, 60*time.Second)
	back := time.Now()
	// Twelve seconds of traffic while the client is elsewhere and its
	// broker runs again (the workload's length, not a readiness wait).
	<-time.After(12 * time.Second)
	left := time.Now()
	s.reconnect()
	s.subscribedAgain(t, 3)
	if !regexp.MustCompile(` as ` + regexp.QuoteMeta(subID) + ` \(`).MatchString(testutil.RunningLogs(svc)) {
		t.Fatalf("the subscriber did not come back to %s (its log does not show it connecting)", svc)
	}
	<-time.After(2 * time.Second) // the workload's length
	total := p.finish(t)
	m, _, _ := s.finish(total)
	// Copies: messages published while the client was online elsewhere
	// and its broker ran again, received twice. The window leaves out 2 s
	// after the broker was back (the directory's gossip reaching it) and
	// 6 s before the client left (the catch-up replays 1.5 keepalives and
	// 2 s before it left).
	s.mu.Lock()
	stale, in := 0, 0
	for n := 0; n < total; n++ {
		if at := p.sentAt(n); at.After(back.Add(2*time.Second)) && at.Before(left.Add(-6*time.Second)) {
			in++
			if s.got[n] > 1 {
				stale++
			}
		}
	}
	s.mu.Unlock()
	t.Logf("%s stopped at %s, back and Ready at %s; the subscriber came back to it at %s: %d messages published, %d missing; of the %d published while it was elsewhere, %d arrived twice",
		svc, old.Format("15:04:05.000"), back.Format("15:04:05.000"), left.Format("15:04:05.000"), total, len(m), in, stale)
	if len(m) > 0 {
		t.Errorf("%d of %d acknowledged messages never reached the returning subscriber: %v", len(m), total, span(m))
	}
	if in == 0 {
		t.Fatal("no message published in the window the check looks at")
	}
	if stale > 0 {
		t.Errorf("%d of %d messages the subscriber got on the other broker arrived again when it came back: the restarted broker queued them for its old session", stale, in)
	}
}

// stopBroker stops a broker's container as Swarm stops a task (SIGTERM)
// and waits for it to exit; it returns when it was stopped.
func stopBroker(t *testing.T, svc string) time.Time {
	t.Helper()
	container := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc)
	docker(t, "kill", "-s", "TERM", container)
	stopped := time.Now()
	docker(t, "wait", container)
	return stopped
}

// movingSubscriber is a persistent MQTT 5 subscriber through HAProxy: it
// connects (every 100 ms while it cannot), subscribes, reads until the
// connection ends, and again, as MQTT clients do, counting the numbered
// messages it gets and checking their properties.
type movingSubscriber struct {
	mu       sync.Mutex
	got      map[int]int
	badProps []string
	conns    []time.Time
	alive    bool

	again      chan struct{}
	stop, done chan struct{}
}

func startMovingSubscriber(t *testing.T, e endpoint, id, filter string, keepalive uint16) *movingSubscriber {
	t.Helper()
	s := &movingSubscriber{got: map[int]int{}, again: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	subscribed := make(chan struct{}, 16)
	persistent := func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.KeepAlive = keepalive
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: u32(600)}
	}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			c, _, err := tryDial5(t, e, id, persistent)
			if err != nil {
				time.Sleep(100 * time.Millisecond) // the client's retry interval
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
			cancel()
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.conns = append(s.conns, time.Now())
			s.alive = true
			s.mu.Unlock()
			select {
			case subscribed <- struct{}{}:
			default:
			}
			for open := true; open; {
				select {
				case p := <-c.got:
					n, _ := strconv.Atoi(string(p.Payload))
					s.mu.Lock()
					s.got[n]++
					if p.Properties == nil || p.Properties.User.Get("n") != string(p.Payload) || p.Properties.ContentType != "text/plain" {
						s.badProps = append(s.badProps, string(p.Payload))
					}
					s.mu.Unlock()
				case <-c.lost:
					open = false
				case <-s.again:
					// A clean DISCONNECT: the session stays where it was.
					_ = c.Disconnect(&paho.Disconnect{})
					open = false
				case <-s.stop:
					_ = c.Disconnect(&paho.Disconnect{})
					return
				}
			}
			s.mu.Lock()
			s.alive = false
			s.mu.Unlock()
		}
	}()
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber did not subscribe")
	}
	return s
}

// reconnect has the subscriber leave with a clean DISCONNECT (its session
// kept) and connect again.
func (s *movingSubscriber) reconnect() { s.again <- struct{}{} }

// waitGot waits until the subscriber has received n messages.
func (s *movingSubscriber) waitGot(t *testing.T, n int) {
	t.Helper()
	eventually(t, "the subscriber receiving", 10*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.got) < n {
			return fmt.Errorf("%d messages so far", len(s.got))
		}
		return nil
	})
}

// subscribedAgain waits until the subscriber's nth subscription (1: the
// first) and returns when it was made.
func (s *movingSubscriber) subscribedAgain(t *testing.T, n int) time.Time {
	t.Helper()
	var at time.Time
	eventually(t, fmt.Sprintf("the subscriber's subscription #%d", n), 30*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.alive || len(s.conns) < n {
			return errStr("not subscribed again yet")
		}
		at = s.conns[len(s.conns)-1]
		return nil
	})
	return at
}

// finish waits (15 s at most) until every one of the total messages
// arrived, stops the subscriber, and returns the missing ones, the
// duplicates, and the messages that came without their properties.
func (s *movingSubscriber) finish(total int) (missing []int, dup int, badProps []string) {
	miss := func() []int {
		s.mu.Lock()
		defer s.mu.Unlock()
		var m []int
		for n := 0; n < total; n++ {
			if s.got[n] == 0 {
				m = append(m, n)
			}
		}
		return m
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(miss()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	close(s.stop)
	<-s.done
	missing = miss()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.got {
		dup += k - 1
	}
	return missing, dup, s.badProps
}

// numbered publishes numbered QoS 1 messages with properties (user
// property n, content type), each acknowledged before the next, 200 a
// second at most, and records when each was sent.
type numbered struct {
	mu   sync.Mutex
	sent []time.Time
	stop chan struct{}
	err  chan error
}

func startNumbered(t *testing.T, e endpoint, id, topic string) *numbered {
	p, _ := dial5(t, e, id, nil)
	n := &numbered{stop: make(chan struct{}), err: make(chan error, 1)}
	go func() {
		defer close(n.err)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-n.stop:
				return
			case <-tick.C:
			}
			body := strconv.Itoa(i)
			at := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := p.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(body),
				Properties: &paho.PublishProperties{ContentType: "text/plain", User: paho.UserProperties{{Key: "n", Value: body}}}})
			cancel()
			if err != nil {
				n.err <- fmt.Errorf("publish #%d: %v", i, err)
				return
			}
			n.mu.Lock()
			n.sent = append(n.sent, at)
			n.mu.Unlock()
		}
	}()
	return n
}

// finish stops the publisher and returns how many messages it had
// acknowledged.
func (n *numbered) finish(t *testing.T) int {
	t.Helper()
	close(n.stop)
	if err := <-n.err; err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.sent)
}

// sentAt is when message i was sent.
func (n *numbered) sentAt(i int) time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent[i]
}

// span prints a sorted list of numbers as ranges.
func span(ns []int) string {
	out := ""
	for i := 0; i < len(ns); {
		j := i
		for j+1 < len(ns) && ns[j+1] == ns[j]+1 {
			j++
		}
		if out != "" {
			out += ","
		}
		if i == j {
			out += strconv.Itoa(ns[i])
		} else {
			out += fmt.Sprintf("%d-%d", ns[i], ns[j])
		}
		i = j + 1
	}
	return out
}
