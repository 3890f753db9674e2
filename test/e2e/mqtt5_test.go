//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// The quickstart cluster (three brokers) behaves as one MQTT 5 broker:
// these tests pin clients to different brokers by client id and check
// what a lone broker would do.

const quickstartCluster = "quickstart"

// idsOn returns a client id HAProxy sends to each of the quickstart
// cluster's brokers (found with 3.1.1 probes, disconnected again).
func idsOn(t *testing.T, e endpoint, prefix string) map[int]string {
	t.Helper()
	out := map[int]string{}
	for i, c := range pinnedOn(t, quickstartCluster, e, 3, prefix, nil) {
		out[i] = c.id
		c.Disconnect(0)
	}
	return out
}

// client5 is one MQTT 5 client and what it received.
type client5 struct {
	*paho.Client
	id   string
	conn net.Conn
	got  chan *paho.Publish
	// stash keeps what a reader of got set aside for another.
	stash []*paho.Publish
	// lost is closed when the connection ends (a network error or the
	// server's DISCONNECT).
	lost     chan struct{}
	lostOnce sync.Once
}

// dial5 connects an MQTT 5 client through the load balancer (plain port).
// mod changes the CONNECT before it is sent.
func dial5(t *testing.T, e endpoint, id string, mod func(*paho.Connect)) (*client5, *paho.Connack) {
	t.Helper()
	c, ca, err := tryDial5(t, e, id, mod)
	if err != nil {
		t.Fatal(err)
	}
	return c, ca
}

// tryDial5 is dial5 that returns its error (a client that retries).
func tryDial5(t *testing.T, e endpoint, id string, mod func(*paho.Connect)) (*client5, *paho.Connack, error) {
	nc, err := net.DialTimeout("tcp", fmt.Sprintf("%s:%d", e.host, e.mqtt), 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	c := &client5{id: id, conn: nc, got: make(chan *paho.Publish, 4096), lost: make(chan struct{})}
	gone := func() { c.lostOnce.Do(func() { close(c.lost) }) }
	c.Client = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: nc,
		OnClientError:      func(error) { gone() },
		OnServerDisconnect: func(*paho.Disconnect) { gone() },
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			select {
			case c.got <- r.Packet:
			default:
				t.Errorf("%s: inbox full", id)
			}
			return true, nil
		}}})
	cp := &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
		Username: e.user, UsernameFlag: true, Password: []byte(e.pass), PasswordFlag: true}
	if mod != nil {
		mod(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("connect %s (MQTT 5): %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ca, nil
}

func (c *client5) subscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] > 2 {
		t.Fatalf("%s: subscribe %s: %v %+v", c.id, filter, err, sa)
	}
}

func (c *client5) publish(t *testing.T, p *paho.Publish) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := c.Publish(ctx, p); err != nil || (r != nil && r.ReasonCode >= 0x80) {
		t.Fatalf("%s: publish %s: %v %+v", c.id, p.Topic, err, r)
	}
}

// collect reads messages until want says it has them all or timeout.
func (c *client5) collect(timeout time.Duration, want func(map[string]*paho.Publish) bool) map[string]*paho.Publish {
	got := map[string]*paho.Publish{}
	deadline := time.After(timeout)
	for !want(got) {
		select {
		case p := <-c.got:
			got[p.Topic+" "+string(p.Payload)] = p
		case <-deadline:
			return got
		}
	}
	return got
}

func has(keys ...string) func(map[string]*paho.Publish) bool {
	return func(m map[string]*paho.Publish) bool {
		for _, k := range keys {
			if m[k] == nil {
				return false
			}
		}
		return true
	}
}

func varint(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		if n /= 128; n > 0 {
			out = append(out, b|0x80)
			continue
		}
		return append(out, b)
	}
}

func mqttString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// rawConnect sends a CONNECT built by hand and returns the CONNACK's
// return (3.1.1) or reason (5.0) code and the open connection.
func rawConnect(addr string, body []byte) (byte, net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append(append([]byte{0x10}, varint(len(body))...), body...)); err != nil {
		c.Close()
		return 0, nil, err
	}
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[0] != 0x20 || hdr[1] < 2 || hdr[1] > 127 {
		c.Close()
		return 0, nil, fmt.Errorf("no CONNACK (% x): %v", hdr, err)
	}
	rest := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, rest); err != nil {
		c.Close()
		return 0, nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return rest[1], c, nil
}

// connect311 connects with a raw MQTT 3.1.1 CONNECT (clean session, user
// and password) and the given keepalive.
func connect311(addr, id, user, pass string, keepalive uint16) (byte, net.Conn, error) {
	body := binary.BigEndian.AppendUint16([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2}, keepalive)
	for _, s := range []string{id, user, pass} {
		body = mqttString(body, s)
	}
	return rawConnect(addr, body)
}

// connectWill5 connects an MQTT 5 client with a QoS 1 will carrying p's
// properties, encoded by hand (paho.golang v0.23.0 sends only the user
// properties of a will).
func connectWill5(addr, id, user, pass, topic, payload string, p *paho.PublishProperties) (net.Conn, error) {
	var wp []byte
	wp = append(wp, 0x01, *p.PayloadFormat, 0x02)
	wp = binary.BigEndian.AppendUint32(wp, *p.MessageExpiry)
	wp = mqttString(append(wp, 0x03), p.ContentType)
	wp = mqttString(append(wp, 0x08), p.ResponseTopic)
	wp = mqttString(append(wp, 0x09), string(p.CorrelationData))
	for _, u := range p.User {
		wp = mqttString(mqttString(append(wp, 0x26), u.Key), u.Value)
	}
	// user, password, will QoS 1, will, clean start; keepalive 30; no
	// CONNECT properties.
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 5, 0xCE, 0, 30, 0}
	body = mqttString(body, id)
	body = append(append(body, varint(len(wp))...), wp...)
	body = mqttString(mqttString(mqttString(mqttString(body, topic), payload), user), pass)
	rc, c, err := rawConnect(addr, body)
	if err == nil && rc != 0 {
		c.Close()
		err = fmt.Errorf("CONNACK reason %d", rc)
	}
	return c, err
}

// TestAnyKeepaliveAccepted: MQTT 3.1.1 and 5.0 clients with keepalive 0
// ("none"), 601 and 65535 are accepted on every broker; 5.0 clients get no
// server keepalive overriding theirs; an idle keepalive-0 connection still
// answers.
func TestAnyKeepaliveAccepted(t *testing.T) {
	e := quickstart(t)
	addr := fmt.Sprintf("%s:%d", e.host, e.mqtt)
	// One client id per broker for the idle keepalive-0 connections, one
	// for the others (a second connection with the same id takes over).
	ids, idleIDs := idsOn(t, e, "ka311"), idsOn(t, e, "ka0")
	idle := map[int]net.Conn{}
	for b := 0; b < 3; b++ {
		for _, ka := range []uint16{0, 601, 65535} {
			id := ids[b]
			if ka == 0 {
				id = idleIDs[b]
			}
			rc, c, err := connect311(addr, id, e.user, e.pass, ka)
			if err != nil {
				t.Fatalf("3.1.1 keepalive %d on broker %d: %v", ka, b, err)
			}
			if rc != 0 {
				c.Close()
				t.Errorf("3.1.1 keepalive %d on broker %d: CONNACK return code %d", ka, b, rc)
				continue
			}
			if ka == 0 {
				idle[b] = c
				continue
			}
			c.Close()
		}
	}
	// The keepalive-0 connections idle a while, then answer a ping.
	time.Sleep(3 * time.Second)
	for b, c := range idle {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		resp := make([]byte, 2)
		if _, err := c.Write([]byte{0xC0, 0}); err != nil {
			t.Errorf("3.1.1 keepalive 0 on broker %d: PINGREQ: %v", b, err)
		} else if _, err := io.ReadFull(c, resp); err != nil || !bytes.Equal(resp, []byte{0xD0, 0}) {
			t.Errorf("3.1.1 keepalive 0 on broker %d: PINGRESP % x: %v", b, resp, err)
		}
		c.Close()
	}
	ids5 := idsOn(t, e, "ka5")
	for b := 0; b < 3; b++ {
		for _, ka := range []uint16{0, 65535} {
			c, ca := dial5(t, e, ids5[b], func(cp *paho.Connect) { cp.KeepAlive = ka })
			if ca.ReasonCode != 0 {
				t.Errorf("5.0 keepalive %d on broker %d: reason %d", ka, b, ca.ReasonCode)
			}
			if ca.Properties != nil && ca.Properties.ServerKeepAlive != nil {
				t.Errorf("5.0 keepalive %d on broker %d: server keepalive %d overrides it", ka, b, *ca.Properties.ServerKeepAlive)
			}
			_ = c.Disconnect(&paho.Disconnect{})
		}
	}
}

func u32(v uint32) *uint32 { return &v }
func u8(v byte) *byte      { return &v }

// props are the properties every test publish and will carries, for
// broker b's publisher.
func props(b int) *paho.PublishProperties {
	return &paho.PublishProperties{
		PayloadFormat: u8(1), MessageExpiry: u32(600), ContentType: "application/json",
		ResponseTopic: fmt.Sprintf("e2e/v5/reply/%d", b), CorrelationData: []byte(fmt.Sprintf("corr-%d", b)),
		User: paho.UserProperties{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2"}, {Key: "origin", Value: fmt.Sprint(b)}},
	}
}

// sameProps says what differs between the properties sent and received
// (the expiry counts down: received must be in (0, sent]).
func sameProps(want, got *paho.PublishProperties) error {
	if got == nil {
		return errors.New("no properties")
	}
	var diffs []string
	if got.PayloadFormat == nil || *got.PayloadFormat != *want.PayloadFormat {
		diffs = append(diffs, "payload format")
	}
	if got.MessageExpiry == nil || *got.MessageExpiry == 0 || *got.MessageExpiry > *want.MessageExpiry {
		diffs = append(diffs, "message expiry")
	}
	if got.ContentType != want.ContentType {
		diffs = append(diffs, "content type")
	}
	if got.ResponseTopic != want.ResponseTopic {
		diffs = append(diffs, "response topic")
	}
	if !bytes.Equal(got.CorrelationData, want.CorrelationData) {
		diffs = append(diffs, "correlation data")
	}
	if !slices.Equal(got.User, want.User) {
		diffs = append(diffs, fmt.Sprintf("user properties %v", got.User))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("lost or changed: %v", diffs)
	}
	return nil
}

// TestMQTT5PropertiesCrossBrokers: a publish's and a will's MQTT 5
// properties reach subscribers on every broker unchanged, whichever broker
// the publisher is on.
func TestMQTT5PropertiesCrossBrokers(t *testing.T) {
	e := quickstart(t)
	subIDs, pubIDs, willIDs := idsOn(t, e, "p5sub"), idsOn(t, e, "p5pub"), idsOn(t, e, "p5will")
	subs := map[int]*client5{}
	for j := 0; j < 3; j++ {
		subs[j], _ = dial5(t, e, subIDs[j], nil)
		subs[j].subscribe(t, "e2e/v5/props/#", 1)
	}
	var keys []string
	for i := 0; i < 3; i++ {
		p, _ := dial5(t, e, pubIDs[i], nil)
		p.publish(t, &paho.Publish{Topic: fmt.Sprintf("e2e/v5/props/msg/%d", i), QoS: 1, Payload: []byte(`{"n":1}`), Properties: props(i)})
		keys = append(keys, fmt.Sprintf("e2e/v5/props/msg/%d {\"n\":1}", i))
	}
	// Wills: each will client's connection dies without a DISCONNECT.
	for i := 0; i < 3; i++ {
		w, err := connectWill5(fmt.Sprintf("%s:%d", e.host, e.mqtt), willIDs[i], e.user, e.pass,
			fmt.Sprintf("e2e/v5/props/will/%d", i), "gone", props(i))
		if err != nil {
			t.Fatalf("will client on broker %d: %v", i, err)
		}
		w.Close()
		keys = append(keys, fmt.Sprintf("e2e/v5/props/will/%d gone", i))
	}
	for j, s := range subs {
		got := s.collect(15*time.Second, has(keys...))
		for k, key := range keys {
			from := k % 3
			p := got[key]
			if p == nil {
				t.Errorf("subscriber on broker %d: no %q (from broker %d)", j, key, from)
				continue
			}
			if err := sameProps(props(from), p.Properties); err != nil {
				t.Errorf("subscriber on broker %d, %q from broker %d: %v", j, key, from, err)
			}
		}
	}
}

// TestMessageExpiryOfflineSessionOnAnotherBroker: a message whose expiry
// passes while a persistent session is offline on another broker (two
// bridges away) is not delivered; the others are, with the remaining
// expiry.
func TestMessageExpiryOfflineSessionOnAnotherBroker(t *testing.T) {
	e := quickstart(t)
	subIDs, witIDs, pubIDs := idsOn(t, e, "x5sub"), idsOn(t, e, "x5wit"), idsOn(t, e, "x5pub")
	persistent := func(clean bool) func(*paho.Connect) {
		return func(cp *paho.Connect) {
			cp.CleanStart = clean
			cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: u32(600)}
		}
	}
	s, _ := dial5(t, e, subIDs[2], persistent(true))
	s.subscribe(t, "e2e/v5/exp/#", 1)
	if err := s.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	w, _ := dial5(t, e, witIDs[2], nil) // online on the same broker
	w.subscribe(t, "e2e/v5/exp/#", 1)
	p, _ := dial5(t, e, pubIDs[1], nil)
	sent := time.Now()
	p.publish(t, &paho.Publish{Topic: "e2e/v5/exp/short", QoS: 1, Payload: []byte("s"), Properties: &paho.PublishProperties{MessageExpiry: u32(2)}})
	p.publish(t, &paho.Publish{Topic: "e2e/v5/exp/long", QoS: 1, Payload: []byte("l"), Properties: &paho.PublishProperties{MessageExpiry: u32(600)}})
	p.publish(t, &paho.Publish{Topic: "e2e/v5/exp/none", QoS: 1, Payload: []byte("n")})
	all := []string{"e2e/v5/exp/short s", "e2e/v5/exp/long l", "e2e/v5/exp/none n"}
	if got := w.collect(10*time.Second, has(all...)); !has(all...)(got) {
		t.Fatalf("the witness on broker 2 got %d of 3 messages", len(got))
	}
	// The property under test is time passing: 2 s of expiry, plus 1 s.
	time.Sleep(time.Until(sent.Add(3 * time.Second)))
	s2, ca := dial5(t, e, subIDs[2], persistent(false))
	if !ca.SessionPresent {
		t.Fatal("the offline session is gone")
	}
	got := s2.collect(10*time.Second, has(all[1:]...))
	if !has(all[1:]...)(got) {
		t.Fatalf("the returning session got %v, want the long-lived and the unexpiring messages", keysOf(got))
	}
	// Queued messages come in order: an unexpired "short" came first.
	if got[all[0]] != nil {
		t.Errorf("the message that expired offline was delivered (expiry %v)", got[all[0]].Properties.MessageExpiry)
	}
	if l := got[all[1]].Properties; l == nil || l.MessageExpiry == nil || *l.MessageExpiry >= 600 || *l.MessageExpiry < 590 {
		t.Errorf("the long-lived message's remaining expiry is %+v, want 590-599", l)
	}
}

func keysOf(m map[string]*paho.Publish) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// shareRun publishes n QoS 1 messages from each publisher on topic
// e2e/share/<tag>/<broker> and returns, per payload, how many members got
// it and, per member, how many it got. It waits until every message
// arrived (or timeout) and then for a quiet second (duplicates).
func shareRun(t *testing.T, pubs, members map[int]*client5, tag string, n int, timeout time.Duration) (map[string]int, map[int]int) {
	t.Helper()
	for i, p := range pubs {
		for k := 0; k < n; k++ {
			p.publish(t, &paho.Publish{Topic: fmt.Sprintf("e2e/share/%s/%d", tag, i), QoS: 1, Payload: []byte(fmt.Sprintf("%s-%d-%d", tag, i, k))})
		}
	}
	got, per := map[string]int{}, map[int]int{}
	total, want := 0, n*len(pubs)
	deadline := time.Now().Add(timeout)
	quiet := time.Time{}
	for {
		progress := false
		for j, m := range members {
			for drained := false; !drained; {
				select {
				case p := <-m.got:
					if strings.HasPrefix(string(p.Payload), tag+"-") {
						got[string(p.Payload)]++
						per[j]++
						total++
					} else {
						m.stash = append(m.stash, p)
					}
					progress = true
				default:
					drained = true
				}
			}
		}
		if total >= want && quiet.IsZero() {
			quiet = time.Now().Add(time.Second) // a bounded absence check
		}
		if (!quiet.IsZero() && time.Now().After(quiet)) || time.Now().After(deadline) {
			return got, per
		}
		if !progress {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// accounting counts lost and duplicated messages of a run by the
// publishers on the given brokers.
func accounting(got map[string]int, tag string, pubs map[int]*client5, n int) (lost, dup int) {
	for i := range pubs {
		for k := 0; k < n; k++ {
			c := got[fmt.Sprintf("%s-%d-%d", tag, i, k)]
			if c == 0 {
				lost++
			}
			if c > 1 {
				dup += c - 1
			}
		}
	}
	return lost, dup
}

// onceAgain probes, five messages per publisher a round, until a round
// reaches the group exactly once (the brokers' views agree).
func onceAgain(t *testing.T, what string, timeout time.Duration, pubs, members map[int]*client5, round *int) {
	t.Helper()
	eventually(t, what, timeout, func() error {
		*round++
		tag := fmt.Sprintf("probe%d", *round)
		got, _ := shareRun(t, pubs, members, tag, 5, 5*time.Second)
		if lost, dup := accounting(got, tag, pubs, 5); lost+dup > 0 {
			return fmt.Errorf("probe round %d: %d lost, %d duplicated", *round, lost, dup)
		}
		return nil
	})
}

// TestSharedSubscriptionOnceAcrossBrokers: a $share group with a member on
// every broker and publishers on every broker gets each message exactly
// once, spread over its members (the cluster_shared plugin); a hub kill
// under traffic is counted, and exactly-once holds again after it.
func TestSharedSubscriptionOnceAcrossBrokers(t *testing.T) {
	e := quickstart(t)
	memberIDs, pubIDs, normalIDs := idsOn(t, e, "shm"), idsOn(t, e, "shp"), idsOn(t, e, "shn")
	members, pubs := map[int]*client5{}, map[int]*client5{}
	for j := 0; j < 3; j++ {
		members[j], _ = dial5(t, e, memberIDs[j], nil)
		members[j].subscribe(t, "$share/workers/e2e/share/#", 1)
		pubs[j], _ = dial5(t, e, pubIDs[j], nil)
	}
	// A normal subscriber still gets everything.
	normal, _ := dial5(t, e, normalIDs[1], nil)
	normal.subscribe(t, "e2e/share/#", 1)

	// The brokers learn the group's members within a gossip round: probe
	// until a round is delivered exactly once.
	round := 0
	onceAgain(t, "the brokers agree on the group", 15*time.Second, pubs, members, &round)

	const n = 100
	got, per := shareRun(t, pubs, members, "steady", n, 20*time.Second)
	lost, dup := accounting(got, "steady", pubs, n)
	t.Logf("steady: %d messages, %d lost, %d duplicated, per member %v", 3*n, lost, dup, per)
	if lost+dup > 0 {
		t.Errorf("steady state: %d lost, %d duplicated of %d (want each exactly once)", lost, dup, 3*n)
	}
	for j := 0; j < 3; j++ {
		if per[j] < 3*n/10 {
			t.Errorf("member on broker %d got %d of %d: not spread over the members", j, per[j], 3*n)
		}
	}
	normalGot := normal.collect(10*time.Second, func(m map[string]*paho.Publish) bool {
		c := 0
		for k := range m {
			if strings.Contains(k, " steady-") {
				c++
			}
		}
		return c == 3*n
	})
	if c := len(normalGot); c < 3*n {
		t.Errorf("the normal subscriber got %d of %d", c, 3*n)
	}
	_ = normal.Disconnect(&paho.Disconnect{})

	// Kill the hub (broker 0) while brokers 1 and 2 publish: count what the
	// members on brokers 1 and 2 get.
	task := docker(t, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+quickstartCluster+"-broker-0")
	live := map[int]*client5{1: members[1], 2: members[2]}
	stop := make(chan struct{})
	sent := make(chan [2]int, 2)
	for _, i := range []int{1, 2} {
		go func() {
			k := 0
			defer func() { sent <- [2]int{i, k} }()
			for ; ; k++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := pubs[i].Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("e2e/share/failover/%d", i), QoS: 1, Payload: []byte(fmt.Sprintf("failover-%d-%d", i, k))})
				cancel()
				if err != nil {
					t.Errorf("failover publish on broker %d: %v", i, err)
					return
				}
			}
		}()
	}
	// Traffic reaches the group before the kill.
	eventually(t, "failover traffic reaching the group", 10*time.Second, func() error {
		if n := len(members[0].got) + len(members[1].got) + len(members[2].got); n < 20 {
			return fmt.Errorf("%d messages so far", n)
		}
		return nil
	})
	docker(t, "kill", task)
	// Swarm restarts the hub; once the group works exactly once again
	// (probe rounds, as above), stop the traffic and count.
	probePubs := map[int]*client5{1: pubs[1], 2: pubs[2]}
	onceAgain(t, "exactly once again after the hub kill", 60*time.Second, probePubs, live, &round)
	close(stop)
	counts := map[int]int{}
	for range 2 {
		r := <-sent
		counts[r[0]] = r[1]
	}
	// Every publish counted was acknowledged; what the members got,
	// including the hub's member until it died:
	fgot := map[string]int{}
	for _, m := range members {
		for _, p := range m.stash {
			if strings.HasPrefix(string(p.Payload), "failover-") {
				fgot[string(p.Payload)]++
			}
		}
	}
	// Then until the members have had nothing for half a second (a
	// bounded absence check: at most 5 s).
	deadline, quiet := time.Now().Add(5*time.Second), time.Now().Add(500*time.Millisecond)
	for now := time.Now(); now.Before(deadline) && now.Before(quiet); now = time.Now() {
		got := false
		for _, m := range members {
			select {
			case p := <-m.got:
				got = true
				if strings.HasPrefix(string(p.Payload), "failover-") {
					fgot[string(p.Payload)]++
				}
			default:
			}
		}
		if got {
			quiet = time.Now().Add(500 * time.Millisecond)
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
	var flost, fdup, fsent int
	for _, c := range fgot {
		fdup += max(0, c-1)
	}
	for _, i := range []int{1, 2} {
		fsent += counts[i]
		for k := 0; k < counts[i]; k++ {
			if fgot[fmt.Sprintf("failover-%d-%d", i, k)] == 0 {
				flost++
			}
		}
	}
	t.Logf("hub kill: %d messages published on brokers 1 and 2, %d lost, %d duplicated for the group", fsent, flost, fdup)
}
