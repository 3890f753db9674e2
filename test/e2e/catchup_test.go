//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
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
	persistent := func(cp *paho.Connect) {
		cp.CleanStart = false
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: u32(600)}
	}

	// The subscriber: connect, subscribe, read until the connection ends,
	// again (every 100 ms while it cannot connect), until stopped.
	var (
		mu       sync.Mutex
		got      = map[int]int{}
		badProps []string
		conns    []time.Time
		alive    bool
	)
	stop := make(chan struct{})
	subscribed := make(chan struct{}, 16)
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s, _, err := tryDial5(t, e, subID, persistent)
			if err != nil {
				time.Sleep(100 * time.Millisecond) // the client's retry interval
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err = s.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic + "/#", QoS: 1}}})
			cancel()
			if err != nil {
				continue
			}
			mu.Lock()
			conns = append(conns, time.Now())
			alive = true
			mu.Unlock()
			select {
			case subscribed <- struct{}{}:
			default:
			}
			for open := true; open; {
				select {
				case p := <-s.got:
					n, _ := strconv.Atoi(string(p.Payload))
					mu.Lock()
					got[n]++
					if p.Properties == nil || p.Properties.User.Get("n") != string(p.Payload) || p.Properties.ContentType != "text/plain" {
						badProps = append(badProps, string(p.Payload))
					}
					mu.Unlock()
				case <-s.lost:
					mu.Lock()
					alive = false
					mu.Unlock()
					open = false
				case <-stop:
					_ = s.Disconnect(&paho.Disconnect{})
					return
				}
			}
		}
	}()
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber did not subscribe")
	}

	// The publisher, on another broker: numbered QoS 1 messages, each
	// acknowledged before the next, 200 a second at most.
	p, _ := dial5(t, e, pubID, nil)
	var sent atomic.Int64
	pubErr := make(chan error, 1)
	pubStop := make(chan struct{})
	go func() {
		defer close(pubErr)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-pubStop:
				return
			case <-tick.C:
			}
			body := strconv.Itoa(n)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := p.Publish(ctx, &paho.Publish{Topic: topic + "/m", QoS: 1, Payload: []byte(body),
				Properties: &paho.PublishProperties{ContentType: "text/plain", User: paho.UserProperties{{Key: "n", Value: body}}}})
			cancel()
			if err != nil {
				pubErr <- fmt.Errorf("publish #%d: %v", n, err)
				return
			}
			sent.Store(int64(n + 1))
		}
	}()
	eventually(t, "the subscriber receiving", 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < 100 {
			return fmt.Errorf("%d messages so far", len(got))
		}
		return nil
	})

	// Its broker stopped as Swarm stops a task.
	svc := quickstartCluster + "-broker-1"
	container := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+svc)
	docker(t, "kill", "-s", "TERM", container)
	stopped := time.Now()
	docker(t, "wait", container)
	var again time.Time
	eventually(t, "the subscriber subscribed again after its broker's exit", 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		again = conns[len(conns)-1]
		if !alive || len(conns) < 2 {
			return errStr("not subscribed again yet")
		}
		return nil
	})
	where := brokerOf(t, quickstartCluster, 3, []string{subID})[subID]
	// Two more seconds of traffic, then every acknowledged message must
	// arrive.
	<-time.After(time.Until(again.Add(2 * time.Second))) // the workload's length, not a readiness wait
	close(pubStop)
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	total := int(sent.Load())
	missing := func() []int {
		mu.Lock()
		defer mu.Unlock()
		var m []int
		for n := 0; n < total; n++ {
			if got[n] == 0 {
				m = append(m, n)
			}
		}
		return m
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	<-subDone
	m := missing()
	mu.Lock()
	dup := 0
	for _, k := range got {
		dup += k - 1
	}
	t.Logf("broker-1 stopped; the subscriber subscribed again %v later (now on %s); %d messages published, %d missing, %d duplicated",
		again.Sub(stopped).Round(time.Millisecond), where, total, len(m), dup)
	if len(m) > 0 {
		t.Errorf("%d of %d acknowledged messages never reached the moved subscriber: %v", len(m), total, span(m))
	}
	if len(badProps) > 0 {
		t.Errorf("%d messages arrived without their properties (user property n, content type): %v", len(badProps), badProps[:min(10, len(badProps))])
	}
	mu.Unlock()
	waitReady(t, c, quickstartCluster, 60*time.Second)
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
