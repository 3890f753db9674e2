package main

// The cost of behaving as one broker (issue 16): QoS 0 and QoS 1
// throughput and latency through the cluster (three bridged brokers behind
// HAProxy) against a lone broker of the same image and broker settings,
// in the same run, in alternating rounds, without subscribers and with a
// subscriber on every broker (on the lone broker: the same number of
// subscribers) that must receive everything.

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const (
	obClients  = 10
	obMessages = 2000
	obRounds   = 3
	obPayload  = 100
)

// obSink counts what the subscribers of one target received, by run.
type obSink struct {
	mu    sync.Mutex
	run   string
	got   int
	sumNs int64
	done  chan struct{}
	want  int
}

func (s *obSink) start(run string, want int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.run, s.got, s.sumNs, s.want, s.done = run, 0, 0, want, make(chan struct{})
}

func (s *obSink) handler(_ mqtt.Client, m mqtt.Message) {
	now := time.Now().UnixNano()
	var sent int64
	var run string
	fmt.Sscanf(string(m.Payload()), "%d %s", &sent, &run)
	s.mu.Lock()
	defer s.mu.Unlock()
	if run != s.run {
		return
	}
	s.got++
	s.sumNs += now - sent
	if s.got == s.want {
		close(s.done)
	}
}

func (s *obSink) result() (int, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == 0 {
		return 0, 0
	}
	return s.got, time.Duration(s.sumNs / int64(s.got))
}

type obResult struct {
	sent     int
	elapsed  time.Duration
	ackSumNs int64 // QoS 1: publish -> PUBACK
	received int
	e2e      time.Duration // mean publish -> delivery
}

func (r obResult) rate() float64 { return float64(r.sent) / r.elapsed.Seconds() }

// obLoad publishes obClients x obMessages at qos through addr, one message
// in flight per client at QoS 1. With a sink, the run ends when every
// subscriber has every message (or 30 s later: the rest count as lost).
func obLoad(addr, user, pass string, qos byte, sink *obSink, subscribers int, run string) (obResult, error) {
	conns, closeAll, err := connectAll(addr, user, pass, "ob-"+run, obClients)
	if err != nil {
		return obResult{}, err
	}
	defer closeAll()
	total := obClients * obMessages
	if sink != nil {
		sink.start(run, total*subscribers)
	}
	var ackSum atomic.Int64
	errs := make([]error, obClients)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("bench/ob/%s/%d", run, i)
			var last mqtt.Token
			for j := 0; j < obMessages; j++ {
				t0 := time.Now()
				p := fmt.Sprintf("%d %s ", t0.UnixNano(), run)
				p += strings.Repeat("x", max(0, obPayload-len(p)))
				tok := c.Publish(topic, qos, false, p)
				if qos == 0 {
					last = tok
					continue
				}
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					errs[i] = fmt.Errorf("publish %d of client %d: %v", j, i, tok.Error())
					return
				}
				ackSum.Add(int64(time.Since(t0)))
			}
			if last != nil && (!last.WaitTimeout(10*time.Second) || last.Error() != nil) {
				errs[i] = fmt.Errorf("client %d: %v", i, last.Error())
				return
			}
			// QoS 0: a QoS 1 publish after the others is acknowledged once
			// the broker has read them all.
			if qos == 0 {
				if tok := c.Publish("bench/ob/flush", 1, false, "f"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					errs[i] = fmt.Errorf("flush of client %d: %v", i, tok.Error())
				}
			}
		}()
	}
	wg.Wait()
	r := obResult{sent: total, ackSumNs: ackSum.Load()}
	if sink != nil {
		select {
		case <-sink.done:
		case <-time.After(30 * time.Second):
		}
		r.received, r.e2e = sink.result()
	}
	r.elapsed = time.Since(start)
	return r, errors.Join(errs...)
}

// oneBrokerBench: the cluster against a lone broker (directBroker, which
// must be running), three alternating rounds per load.
func oneBrokerBench(user, pass string) error {
	lone := fmt.Sprintf("127.0.0.1:%d", directMQTT)
	cluster := fmt.Sprintf("127.0.0.1:%d", benchMQTT)
	names := [2]string{"lone broker", "cluster    "}
	fmt.Printf("\nOne logical broker: the cluster (3 brokers, HAProxy) against a lone broker with its settings\n")
	fmt.Printf("%d clients x %d messages of %d bytes, QoS 1 with one message in flight per client, %d rounds alternating\n", obClients, obMessages, obPayload, obRounds)
	sinks := [2]*obSink{{}, {}}
	for _, withSubs := range []bool{false, true} {
		if withSubs {
			stop, err := obSubscribers(lone, user, pass, sinks)
			if err != nil {
				return err
			}
			defer stop()
		}
		for _, qos := range []byte{0, 1} {
			var res [2]obResult
			for round := 0; round < obRounds; round++ {
				for t, addr := range []string{lone, cluster} {
					var sink *obSink
					if withSubs {
						sink = sinks[t]
					}
					r, err := obLoad(addr, user, pass, qos, sink, 3, fmt.Sprintf("q%d%v%d%d", qos, withSubs, t, round))
					if err != nil {
						return fmt.Errorf("%s, QoS %d: %w", names[t], qos, err)
					}
					res[t].sent += r.sent
					res[t].elapsed += r.elapsed
					res[t].ackSumNs += r.ackSumNs
					res[t].received += r.received
					res[t].e2e += r.e2e / obRounds
				}
			}
			what := "no subscriber"
			if withSubs {
				what = "3 subscribers (cluster: one per broker) receiving everything"
			}
			fmt.Printf("QoS %d, %s\n", qos, what)
			for t := range res {
				line := fmt.Sprintf("  %s %8.0f msg/s", names[t], res[t].rate())
				if qos == 1 {
					line += fmt.Sprintf("  publish->PUBACK mean %s", (time.Duration(res[t].ackSumNs / int64(res[t].sent))).Round(time.Microsecond))
				}
				if withSubs {
					line += fmt.Sprintf("  delivered %d/%d  publish->delivery mean %s", res[t].received, 3*res[t].sent, res[t].e2e.Round(time.Microsecond))
				}
				fmt.Println(line)
			}
			line := fmt.Sprintf("  cluster/lone: throughput %.2fx", res[1].rate()/res[0].rate())
			if qos == 1 {
				line += fmt.Sprintf(", PUBACK latency %.2fx", float64(res[1].ackSumNs)/float64(res[0].ackSumNs))
			}
			if withSubs {
				line += fmt.Sprintf(", delivery latency %.2fx", res[1].e2e.Seconds()/res[0].e2e.Seconds())
			}
			if qos == 1 {
				line += "   target: throughput >= 0.5x, latency <= 2x"
			}
			fmt.Println(line)
		}
	}
	return nil
}

// obSubscribers connects the subscribers: one on each of the cluster's
// brokers, three on the lone broker, all on bench/ob/#. The returned
// function disconnects them.
func obSubscribers(lone, user, pass string, sinks [2]*obSink) (func(), error) {
	var all []mqtt.Client
	closeAll := func() {
		for _, c := range all {
			c.Disconnect(0)
		}
	}
	// Subscribers: one on each of the cluster's brokers, three on the lone
	// broker, all on bench/ob/#.
	subscribe := func(c mqtt.Client, s *obSink) error {
		tok := c.Subscribe("bench/ob/#", 1, s.handler)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return fmt.Errorf("subscribe: %v", tok.Error())
		}
		return nil
	}
	for i := 0; i < 3; i++ {
		c, err := connectAddr(lone, user, pass, fmt.Sprintf("ob-sub-lone-%d", i))
		if err != nil {
			closeAll()
			return nil, err
		}
		all = append(all, c)
		if err := subscribe(c, sinks[0]); err != nil {
			closeAll()
			return nil, err
		}
	}
	placed, err := locate(benchMQTT, user, pass, "ob-sub", []int{0, 1, 2}, nil)
	if err != nil {
		closeAll()
		return nil, err
	}
	for _, c := range placed {
		all = append(all, c)
		if err := subscribe(c, sinks[1]); err != nil {
			closeAll()
			return nil, err
		}
	}
	return closeAll, nil
}
