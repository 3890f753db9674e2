package brokerauth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Target is how to reach a cluster's brokers.
type Target struct {
	// Brokers: the indexes 0 to Brokers-1.
	Brokers int
	// Addr is broker i's internal listener (host:port); the host is the
	// name its certificate carries.
	Addr func(i int) string
	// User and Password are the internal user's.
	User, Password string
	// CA is the PEM certificate the brokers' chain to.
	CA []byte
	// Parked are brokers not running on purpose (PerNode: their node does
	// not admit them), sorted: no connection is kept to them.
	Parked []int
}

func (t Target) same(o Target) bool {
	// Parked is left out: a broker parked or back opens or closes its own
	// connection only (Set).
	return t.Brokers == o.Brokers && t.User == o.User && t.Password == o.Password && bytes.Equal(t.CA, o.CA)
}

// wants says whether broker i is one of the target's running brokers.
func (t Target) wants(i int) bool { return i < t.Brokers && !slices.Contains(t.Parked, i) }

// Pusher keeps a connection to every broker of every cluster it is given
// and pushes each one the cluster's current state: when the state changes,
// and whenever a connection is (re)made (a broker that restarted).
type Pusher struct {
	Log *slog.Logger
	// Retry is the pause after a failed or lost connection (250 ms).
	Retry time.Duration
	// Recheck is how often the state is pushed again on a live
	// connection (10 s): a broker whose state was changed behind the
	// operator's back gets its own back, and OnDrift is told.
	Recheck time.Duration
	// OnDrift, when set, hears of a broker found serving a state this
	// pusher did not give it (found: its version).
	OnDrift func(cluster string, broker int, found string)
	// OnLost, when set, hears at once of a connection the broker's side
	// closed (end of stream or reset: its process exited, was killed or
	// closed it), not of one that went quiet (a keepalive timeout: a
	// network fault, which says nothing of the broker), with the number
	// of the cluster's brokers. It runs on its own goroutine.
	OnLost func(cluster string, broker, brokers int)
	// OnConnected, when set, hears of every connection made to a broker.
	OnConnected func(cluster string, broker int)
	// OnBridge, when set, hears what a broker says of its own bridges
	// (Mosquitto's bridge notifications, BridgeStateTopic): the bridge's
	// remote client id and whether it is connected, on every change and
	// on every connection made to the broker (retained). It runs on the
	// connection's goroutine: it must not block.
	OnBridge func(cluster string, broker int, bridge string, connected bool)
	// OnLoad, when set, hears the broker's one-minute average of the
	// PUBLISH packets it receives, per minute (LoadTopic, every
	// $SYS interval). It runs on the connection's goroutine: it must not
	// block.
	OnLoad func(cluster string, broker int, perMinute float64)

	mu       sync.Mutex
	ctx      context.Context
	clusters map[string]*cluster
	id       string
	// answered is closed (and replaced) whenever a broker answers a push.
	answered chan struct{}
}

type cluster struct {
	target Target
	state  State
	conns  map[int]*conn
}

type conn struct {
	cancel    context.CancelFunc
	wake      chan struct{}
	applied   string
	connected bool
	// given is the last version the broker answered it serves, kept
	// across reconnections (a broker that restarts with its kept state
	// answers it as the one before).
	given string
}

// Run pushes until ctx ends (the leader's term), then closes every
// connection and forgets every cluster: the next term starts from what
// its passes Set.
func (p *Pusher) Run(ctx context.Context) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	p.mu.Lock()
	p.ctx, p.id = ctx, hex.EncodeToString(b)
	for name, c := range p.clusters {
		p.start(name, c) // Set before Run, in the same term
	}
	p.mu.Unlock()
	<-ctx.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clusters {
		for _, k := range c.conns {
			k.cancel()
		}
	}
	p.ctx, p.clusters = nil, nil
}

// Set gives cluster name's brokers state s and returns the brokers that
// have applied it (a Set before Run takes effect when Run starts).
func (p *Pusher) Set(name string, t Target, s State) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clusters == nil {
		p.clusters = map[string]*cluster{}
	}
	c := p.clusters[name]
	if c == nil {
		c = &cluster{conns: map[int]*conn{}}
		p.clusters[name] = c
	}
	if !c.target.same(t) {
		for i, k := range c.conns {
			k.cancel()
			delete(c.conns, i)
		}
	}
	c.target = t
	changed := c.state.Version != s.Version
	c.state = s
	for i, k := range c.conns {
		if !t.wants(i) {
			k.cancel()
			delete(c.conns, i)
		}
	}
	p.start(name, c)
	var applied []int
	for i := 0; i < t.Brokers; i++ {
		k := c.conns[i]
		if k == nil {
			continue
		}
		if changed {
			select {
			case k.wake <- struct{}{}:
			default:
			}
		}
		if k.applied == s.Version {
			applied = append(applied, i)
		}
	}
	return applied
}

// start opens the missing connections of c (p.mu held; nothing before
// Run).
func (p *Pusher) start(name string, c *cluster) {
	if p.ctx == nil || p.ctx.Err() != nil {
		return
	}
	for i := 0; i < c.target.Brokers; i++ {
		if c.conns[i] != nil || !c.target.wants(i) {
			continue
		}
		ctx, cancel := context.WithCancel(p.ctx)
		k := &conn{cancel: cancel, wake: make(chan struct{}, 1)}
		c.conns[i] = k
		go p.follow(ctx, name, i, k)
	}
}

// Reconnect drops the connection to broker i of cluster name and opens a
// new one: the broker was moved off a node found lost, and the connection
// to its old task is half open (a vanished node sends no reset) — left
// alone, it would be noticed only when a push or ping on it times out
// (up to 15 s), and the moved broker would wait that long for its users
// and rules.
func (p *Pusher) Reconnect(name string, i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.clusters[name]
	if c == nil || c.conns[i] == nil {
		return
	}
	c.conns[i].cancel()
	delete(c.conns, i)
	p.start(name, c)
}

// Forget closes a cluster's connections (the cluster is deleted).
func (p *Pusher) Forget(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clusters[name]; c != nil {
		for _, k := range c.conns {
			k.cancel()
		}
		delete(p.clusters, name)
	}
}

func (p *Pusher) current(name string) (Target, State) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.clusters[name]
	if c == nil {
		return Target{}, State{}
	}
	return c.target, c.state
}

// setApplied records what k's broker answers and returns the version it
// answered before on this connection.
func (p *Pusher) setApplied(k *conn, v string, connected bool) (before string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before = k.applied
	k.applied, k.connected = v, connected
	if v != "" {
		k.given = v
	}
	if p.answered != nil {
		close(p.answered)
	}
	p.answered = make(chan struct{})
	return before
}

// Wait returns, within timeout, once every broker of cluster name that the
// pusher is connected to has answered version v (a broker down is not
// waited for), and the brokers that serve v then.
func (p *Pusher) Wait(name, v string, timeout time.Duration) []int {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		p.mu.Lock()
		c := p.clusters[name]
		var applied []int
		pending := false
		if c != nil {
			for i := 0; i < c.target.Brokers; i++ {
				k := c.conns[i]
				switch {
				case k == nil:
				case k.applied == v:
					applied = append(applied, i)
				case k.connected:
					pending = true
				}
			}
		}
		if p.answered == nil {
			p.answered = make(chan struct{})
		}
		ch := p.answered
		p.mu.Unlock()
		if !pending {
			return applied
		}
		select {
		case <-ch:
		case <-t.C:
			return applied
		}
	}
}

func (p *Pusher) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

func (p *Pusher) retry() time.Duration {
	if p.Retry > 0 {
		return p.Retry
	}
	return 250 * time.Millisecond
}

// follow keeps broker i's connection and pushes on it.
func (p *Pusher) follow(ctx context.Context, name string, i int, k *conn) {
	failing := false
	for ctx.Err() == nil {
		t, _ := p.current(name)
		cl, lost, replies, err := p.connect(name, i, t)
		if err != nil {
			if !failing {
				p.log().Debug("auth: broker not reachable yet", "cluster", name, "broker", i, "err", err)
				failing = true
			}
			sleep(ctx, p.retry())
			continue
		}
		failing = false
		if p.OnConnected != nil {
			p.OnConnected(name, i)
		}
		p.setApplied(k, "", true)
		p.serve(ctx, name, i, k, cl, lost, replies)
		p.setApplied(k, "", false)
		cl.Disconnect(100)
		sleep(ctx, p.retry())
	}
}

// serve pushes the current state, then again at each change, until the
// connection is lost or ctx ends.
func (p *Pusher) serve(ctx context.Context, name string, i int, k *conn, cl mqtt.Client, lost <-chan struct{}, replies <-chan string) {
	for {
		_, s := p.current(name)
		tok := cl.Publish(Topic, 1, false, s.Body)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			p.log().Warn("auth: push failed", "cluster", name, "broker", i, "err", tok.Error())
			return
		}
		// The broker's plugin answers with the version it serves; a broker
		// without it (another image) never does.
		timeout := time.NewTimer(5 * time.Second)
	wait:
		for {
			select {
			case answer := <-replies:
				v, before, _ := strings.Cut(answer, " ")
				if v == s.Version {
					p.drift(name, i, k, before)
					// Logged once per connection and version: when a broker
					// starts admitting clients is worth a line; the recheck
					// every 10 s is not.
					level := slog.LevelDebug
					if p.setApplied(k, s.Version, true) != s.Version {
						level = slog.LevelInfo
					}
					p.log().Log(ctx, level, "auth: the broker serves the users and rules", "cluster", name, "broker", i, "version", s.Version)
					break wait
				}
				if v == "refused" || v == "disabled" {
					p.log().Warn("auth: the broker did not apply the state", "cluster", name, "broker", i, "answer", v)
					break wait
				}
			case <-timeout.C:
				p.log().Warn("auth: no answer from the broker's cluster plugin", "cluster", name, "broker", i)
				break wait
			case <-ctx.Done():
				timeout.Stop()
				return
			case <-lost:
				timeout.Stop()
				return
			}
		}
		timeout.Stop()
		recheck := time.NewTimer(p.recheck())
		select {
		case <-ctx.Done():
			recheck.Stop()
			return
		case <-lost:
			recheck.Stop()
			return
		case <-k.wake:
		case <-recheck.C:
		}
		recheck.Stop()
	}
}

func (p *Pusher) recheck() time.Duration {
	if p.Recheck > 0 {
		return p.Recheck
	}
	return 10 * time.Second
}

// drift: the broker served before this push a version this pusher never
// gave it (not "-": none; not the last it answered).
func (p *Pusher) drift(name string, i int, k *conn, before string) {
	p.mu.Lock()
	given := k.given
	k.given = ""
	p.mu.Unlock()
	if before != "-" && given != "" && before != given {
		p.log().Warn("auth: a broker served users and rules the operator did not push; put back", "cluster", name, "broker", i, "found", before)
		if p.OnDrift != nil {
			p.OnDrift(name, i, before)
		}
	}
}

func (p *Pusher) connect(name string, i int, t Target) (mqtt.Client, <-chan struct{}, <-chan string, error) {
	if t.Addr == nil {
		return nil, nil, nil, fmt.Errorf("no address")
	}
	addr := t.Addr(i)
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, nil, err
	}
	// The certificate is checked against the name; the connection goes to
	// whichever of its addresses answers first.
	if addr, err = Answering(context.Background(), addr, 2*time.Second); err != nil {
		return nil, nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(t.CA) {
		return nil, nil, nil, fmt.Errorf("no CA certificate to verify broker %d", i)
	}
	lost := make(chan struct{})
	replies := make(chan string, 8)
	var once sync.Once
	o := mqtt.NewClientOptions().AddBroker("ssl://" + addr).
		SetClientID(fmt.Sprintf("%s-auth-%d-%s", name, i, p.id)).SetUsername(t.User).SetPassword(t.Password).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(2 * time.Second).SetKeepAlive(10 * time.Second).SetPingTimeout(5 * time.Second).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			once.Do(func() { close(lost) })
			if p.OnLost != nil && ClosedByPeer(err) {
				p.OnLost(name, i, t.Brokers)
			}
		}).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			if m.Topic() == AppliedTopic {
				select {
				case replies <- string(m.Payload()):
				default:
				}
			}
		})
	cl := mqtt.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		cl.Disconnect(0)
		if tok.Error() != nil {
			return nil, nil, nil, tok.Error()
		}
		return nil, nil, nil, fmt.Errorf("connect to %s timed out", addr)
	}
	if p.OnBridge != nil {
		p.subscribe(cl, name, i, BridgeStateTopic, "bridge notifications", func(m mqtt.Message) {
			if id, ok := bridgeOf(m.Topic()); ok {
				p.OnBridge(name, i, id, string(m.Payload()) == "1")
			}
		})
	}
	if p.OnLoad != nil {
		p.subscribe(cl, name, i, LoadTopic, "load figures", func(m mqtt.Message) {
			if v, err := strconv.ParseFloat(strings.TrimSpace(string(m.Payload())), 64); err == nil && v >= 0 {
				p.OnLoad(name, i, v)
			}
		})
	}
	return cl, lost, replies, nil
}

// subscribe subscribes cl to one of the broker's own $SYS topics (what,
// for the log when it fails).
func (p *Pusher) subscribe(cl mqtt.Client, name string, i int, topic, what string, on func(mqtt.Message)) {
	tok := cl.Subscribe(topic, 0, func(_ mqtt.Client, m mqtt.Message) { on(m) })
	if !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
		p.log().Warn("auth: no subscription to the broker's "+what, "cluster", name, "broker", i, "err", tok.Error())
	}
}

// LoadTopic is where a broker publishes the one-minute moving average of
// the PUBLISH packets it received, per minute (Mosquitto's $SYS). In a
// bridge tree every broker receives every message once, so each one's
// figure is the cluster's rate.
const LoadTopic = "$SYS/broker/load/publish/received/1min"

// BridgeStateTopic is where a broker publishes the state of each of its
// bridges: "1" connected, "0" not, retained (Mosquitto's bridge
// notifications; the brokers' bridges publish them locally only).
const BridgeStateTopic = "$SYS/broker/connection/+/state"

// bridgeOf is the bridge's remote client id in a BridgeStateTopic topic.
func bridgeOf(topic string) (string, bool) {
	id, ok := strings.CutPrefix(topic, "$SYS/broker/connection/")
	if !ok {
		return "", false
	}
	id, ok = strings.CutSuffix(id, "/state")
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}

// ClosedByPeer: err ends a connection the other side closed (end of
// stream, or reset), as a process that exits or is killed does.
func ClosedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// lookupHost resolves names (tests replace it).
var lookupHost = net.DefaultResolver.LookupHost

// Answering returns the first of a name's addresses (host:port) to accept
// a TCP connection. Swarm's DNS keeps a task's address for a while after
// its node was lost, beside the address of the task that replaced it, and
// names the replacement only once it is made: so every address is dialled
// at once, and the name is resolved again every resolveEvery while none
// has answered, a new address dialled as soon as it appears (and one that
// refused, again). Waiting on the one address the name had when it began
// — a lost node's, which never answers — held the operator's connection to
// a moved broker up by the whole timeout.
func Answering(ctx context.Context, addr string, timeout time.Duration) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu      sync.Mutex
		dialing = map[string]bool{}
		seen    []string
		d       net.Dialer
	)
	first := make(chan string, 1)
	tick := time.NewTicker(resolveEvery)
	defer tick.Stop()
	for {
		ips, _ := lookupHost(ctx, host)
		for _, ip := range ips {
			mu.Lock()
			busy := dialing[ip]
			dialing[ip] = true
			mu.Unlock()
			if busy {
				continue
			}
			if !slices.Contains(seen, ip) {
				seen = append(seen, ip)
			}
			go func() {
				a := net.JoinHostPort(ip, port)
				c, err := d.DialContext(ctx, "tcp", a)
				if err == nil {
					c.Close()
					select {
					case first <- a:
					default:
					}
					return
				}
				mu.Lock()
				dialing[ip] = false // refused: dialled again at the next resolve
				mu.Unlock()
			}()
		}
		select {
		case a := <-first:
			return a, nil
		case <-ctx.Done():
			select {
			case a := <-first:
				return a, nil
			default:
			}
			return "", fmt.Errorf("none of %s's addresses %v answered within %s", host, seen, timeout)
		case <-tick.C:
		}
	}
}

// resolveEvery is how often Answering resolves a name again while none of
// its addresses has answered.
const resolveEvery = 250 * time.Millisecond
