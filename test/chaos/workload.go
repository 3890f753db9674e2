package chaos

import (
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Schedule is a seeded order of n faults: rounds of every kind in a
// random order, so the first len(kinds) cover every kind once.
func Schedule(seed int64, kinds []string, n int) []string {
	r := rand.New(rand.NewPCG(uint64(seed), 0x50a4))
	var out []string
	for len(out) < n {
		round := append([]string(nil), kinds...)
		r.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		out = append(out, round...)
	}
	return out[:n]
}

// Endpoint is one way into the cluster: a load-balancer address, plain or
// TLS.
type Endpoint struct {
	// URL is tcp://host:port or ssl://host:port.
	URL string
	TLS *tls.Config
}

// Workload is the soak's clients. Every client is given every endpoint of
// its kind (plain or TLS), starting from its own, so it reconnects
// through another load balancer when its own is gone, as a device with a
// list of addresses does.
type Workload struct {
	// Run names this run in every client id and topic: a cluster's
	// volumes outlive it, and with them the sessions of an earlier run.
	Run        string
	Plain, TLS []Endpoint
	// Publishers send numbered QoS 1 messages, one at a time, each
	// retried until acknowledged or Budget is spent.
	Publishers  int
	Every       time.Duration
	Budget      time.Duration
	Subscribers int
	// RetainedEvery paces the retained writer.
	RetainedEvery time.Duration
	History       *History

	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	subs []mqtt.Client
}

func (w *Workload) id(kind string, i int) string {
	return fmt.Sprintf("chaos-%s-%s-%d", w.Run, kind, i)
}
func (w *Workload) dataTopic() string     { return "chaos/" + w.Run + "/data/" }
func (w *Workload) retainedTopic() string { return "chaos/" + w.Run + "/retained" }

func (w *Workload) endpoints(i int) []Endpoint {
	eps := w.Plain
	if i%2 == 1 && len(w.TLS) > 0 {
		eps = w.TLS
	}
	out := append([]Endpoint(nil), eps[i%len(eps):]...)
	return append(out, eps[:i%len(eps)]...)
}

func options(id string, eps []Endpoint, clean bool) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(100 * time.Millisecond).
		SetMaxReconnectInterval(500 * time.Millisecond).SetConnectTimeout(2 * time.Second).
		SetKeepAlive(5 * time.Second).SetPingTimeout(2 * time.Second).SetWriteTimeout(2 * time.Second)
	for _, e := range eps {
		o.AddBroker(e.URL)
		if e.TLS != nil {
			o.SetTLSConfig(e.TLS)
		}
	}
	return o
}

// Start connects the subscribers (waiting for each one's subscription),
// then starts the publishers and the retained writer and reader.
func (w *Workload) Start() error {
	w.stop = make(chan struct{})
	for i := range w.Subscribers {
		if err := w.subscriber(i); err != nil {
			return err
		}
	}
	for i := range w.Publishers {
		c, err := connect(options(w.id("pub", i), w.endpoints(i), true))
		if err != nil {
			return err
		}
		w.wg.Add(1)
		go w.publish(c, w.id("pub", i), w.dataTopic()+strconv.Itoa(i), false, w.Every, w.History.Published)
	}
	c, err := connect(options(w.id("retained-writer", 0), w.endpoints(0), true))
	if err != nil {
		return err
	}
	w.wg.Add(2)
	go w.publish(c, "retained", w.retainedTopic(), true, w.RetainedEvery, w.History.RetainedPublished)
	go w.readRetained()
	return nil
}

func connect(o *mqtt.ClientOptions) (mqtt.Client, error) {
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect %s: %v", o.ClientID, tok.Error())
	}
	return c, nil
}

// subscriber is a persistent session (clean session off, QoS 1) that
// subscribes again on every connect: harmless where the session was kept,
// and where the client landed on a broker that does not hold its session
// the messages it misses until then are what the checker counts.
func (w *Workload) subscriber(i int) error {
	id := w.id("sub", i)
	subscribed := make(chan error, 1)
	o := options(id, w.endpoints(i), false).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			pub, seq, ok := parse(m.Payload())
			if ok {
				w.History.Delivered(Delivery{Sub: id, Pub: pub, Seq: seq, At: time.Now()})
			}
		})
	o.SetOnConnectHandler(func(c mqtt.Client) {
		go func() {
			tok := c.Subscribe(w.dataTopic()+"#", 1, nil)
			if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
				w.History.Subscribed(id, time.Now())
				select {
				case subscribed <- nil:
				default:
				}
			}
		}()
	})
	c, err := connect(o)
	if err != nil {
		return err
	}
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		c.Disconnect(0)
		return fmt.Errorf("%s: no subscription within 10s", id)
	}
	w.mu.Lock()
	w.subs = append(w.subs, c)
	w.mu.Unlock()
	return nil
}

func parse(b []byte) (pub string, seq int, ok bool) {
	p, s, ok := strings.Cut(string(b), " ")
	if !ok {
		return "", 0, false
	}
	n, err := strconv.Atoi(s)
	return p, n, err == nil
}

// publish sends numbered messages one at a time, each retried (by the
// same client, reconnecting by itself) until acknowledged or the budget
// is spent, and records each outcome.
func (w *Workload) publish(c mqtt.Client, id, topic string, retain bool, every time.Duration, record func(Publish)) {
	defer w.wg.Done()
	defer c.Disconnect(100)
	t := time.NewTicker(every)
	defer t.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		p := Publish{Pub: id, Seq: seq, Sent: time.Now()}
		for deadline := p.Sent.Add(w.Budget); time.Now().Before(deadline); {
			tok := c.Publish(topic, 1, retain, fmt.Sprintf("%s %d", id, seq))
			if tok.WaitTimeout(time.Second) && tok.Error() == nil {
				p.Acked = time.Now()
				break
			}
			select {
			case <-w.stop:
				record(p)
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		record(p)
	}
}

// readRetained connects a new clean client every second (a new id each
// time, so the load balancer spreads them over the brokers), subscribes to
// the retained topic and records the first message it gets.
func (w *Workload) readRetained() {
	defer w.wg.Done()
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		case <-time.After(time.Second):
		}
		id := w.id("reader", i)
		got := make(chan int, 1)
		o := options(id, w.endpoints(i), true).SetConnectRetry(false).SetAutoReconnect(false)
		c := mqtt.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
			continue // unavailability, which the publishers measure
		}
		asked := time.Now()
		tok := c.Subscribe(w.retainedTopic(), 1, func(_ mqtt.Client, m mqtt.Message) {
			if _, seq, ok := parse(m.Payload()); ok && m.Retained() {
				select {
				case got <- seq:
				default:
				}
			}
		})
		if tok.WaitTimeout(3*time.Second) && tok.Error() == nil {
			seq := -1
			select {
			case seq = <-got:
			case <-time.After(2 * time.Second):
			}
			w.History.Read(RetainedRead{Reader: id, Seq: seq, Asked: asked})
		}
		c.Disconnect(0)
	}
}

// Stop ends the publishers and the retained reader; the subscribers stay
// until Close, so the drain can wait for what they are still owed.
func (w *Workload) Stop() {
	close(w.stop)
	w.wg.Wait()
}

// Drain waits until the subscribers have every message they are owed, or
// the timeout; it returns how many deliveries are still owed.
func (w *Workload) Drain(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		owed := w.History.Owed()
		if owed == 0 || time.Now().After(deadline) {
			return owed
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Close disconnects the subscribers.
func (w *Workload) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.subs {
		c.Disconnect(100)
	}
}
