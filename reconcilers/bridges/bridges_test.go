package bridges

import (
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

func TestTrackerFollowsConnectsDisconnectsAndRestarts(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tr := NewTracker("iot")
	if l := tr.Link(1); l.Parent != -1 || l.Connected {
		t.Fatalf("unseen link: %+v", l)
	}
	// Broker 0 is the hub: brokers 1 and 2 connect to it. Lines of other
	// clients and of another cluster are ignored.
	tr.Feed(0, []swarm.LogLine{
		{Time: at(1), Text: "2026-11-27T10:00:01: New bridge connected from 10.0.0.5:4000 as iot-broker-1-bridge (p2, c1, k5, u'bridge')."},
		{Time: at(2), Text: "2026-11-27T10:00:02: New bridge connected from 10.0.0.6:4000 as iot-broker-2-bridge (p2, c1, k5, u'bridge')."},
		{Time: at(2), Text: "2026-11-27T10:00:02: New client connected from 10.0.0.9:5000 as iot-broker-3-bridge-ish (p2, c1, k60, u'mqtt')."},
		{Time: at(2), Text: "2026-11-27T10:00:02: New client connected from 10.0.0.9:5001 as iot-broker-3-bridge (p5, c1, k60, u'mqtt')."},
		{Time: at(3), Text: "2026-11-27T10:00:03: New bridge connected from 10.0.0.7:4000 as other-broker-1-bridge (p2, c1, k5, u'bridge')."},
	})
	for i := 1; i <= 2; i++ {
		if l := tr.Link(i); l.Parent != 0 || !l.Connected {
			t.Fatalf("broker %d: %+v", i, l)
		}
	}
	if l := tr.Link(3); l.Parent != -1 {
		t.Fatalf("a client named like a bridge counted: %+v", l)
	}
	// Broker 0 is killed (no goodbye); broker 2 moves to broker 1.
	tr.Feed(1, []swarm.LogLine{{Time: at(11), Text: "New client connected from 10.0.0.6:4001 as iot-broker-2-bridge (p5, c1, k5, u'bridge')."}})
	tr.Restarted(0, at(12))
	if l := tr.Link(1); l.Connected || !l.Since.Equal(at(12)) {
		t.Fatalf("broker 1 after the hub restarted: %+v", l)
	}
	if l := tr.Link(2); l.Parent != 1 || !l.Connected || !l.Since.Equal(at(11)) {
		t.Fatalf("broker 2 moved: %+v", l)
	}
	// Broker 2 is killed too and its new task starts: its old bridge
	// (its parent not timed it out yet) is not the new task's.
	tr.Restarted(2, at(12))
	if l := tr.Link(2); l.Connected || l.Parent != 1 || !l.Since.Equal(at(12)) {
		t.Fatalf("broker 2 after it restarted: %+v", l)
	}
	tr.Feed(1, []swarm.LogLine{{Time: at(12), Text: "New client connected from 10.0.0.6:4005 as iot-broker-2-bridge (p5, c1, k5, u'bridge')."}})
	// Broker 1 comes back to the new hub; broker 2 leaves broker 1 for
	// broker 0: a goodbye on broker 1, a hello on broker 0.
	tr.Feed(0, []swarm.LogLine{
		{Time: at(13), Text: "New bridge connected from 10.0.0.5:4002 as iot-broker-1-bridge (p2, c1, k5, u'bridge')."},
		{Time: at(17), Text: "New bridge connected from 10.0.0.6:4003 as iot-broker-2-bridge (p2, c1, k5, u'bridge')."},
	})
	tr.Feed(1, []swarm.LogLine{{Time: at(16), Text: "Client iot-broker-2-bridge closed its connection."}})
	if l := tr.Link(2); l.Parent != 0 || !l.Connected {
		t.Fatalf("broker 2 back on the hub: %+v", l)
	}
	// A disconnect from the current parent marks the link down.
	tr.Feed(0, []swarm.LogLine{{Time: at(20), Text: "Client iot-broker-2-bridge has exceeded timeout, disconnecting."}})
	if l := tr.Link(2); l.Connected || l.Parent != 0 || !l.Since.Equal(at(20)) {
		t.Fatalf("broker 2 timed out: %+v", l)
	}
	// Two lines with the same time are both read, once each, also when a
	// later read returns them again.
	same := []swarm.LogLine{
		{Time: at(30), Text: "New bridge connected from 10.0.0.5:4009 as iot-broker-1-bridge (p2, c1, k5, u'bridge')."},
		{Time: at(30), Text: "New bridge connected from 10.0.0.6:4009 as iot-broker-2-bridge (p2, c1, k5, u'bridge')."},
	}
	tr.Feed(0, same[:1])
	tr.Feed(0, same)
	if l1, l2 := tr.Link(1), tr.Link(2); !l1.Connected || !l2.Connected || !l2.Since.Equal(at(30)) {
		t.Fatalf("same-time lines: %+v %+v", l1, l2)
	}
	tr.Feed(0, []swarm.LogLine{{Time: at(31), Text: "Client iot-broker-2-bridge disconnected."}})
	tr.Feed(0, same)
	if tr.Link(2).Connected {
		t.Fatal("a line at the old cursor was read again")
	}
	// Lines already read are not read twice.
	tr.Feed(0, []swarm.LogLine{{Time: at(17), Text: "New bridge connected from 10.0.0.6:4003 as iot-broker-2-bridge (p2, c1, k5, u'bridge')."}})
	if l := tr.Link(2); l.Connected {
		t.Fatal("an old line was read again")
	}
	// Fed broker by broker, an older event on one broker never overrides a
	// newer one on another: broker 2 left broker 1 for broker 0.
	tr2 := NewTracker("iot")
	tr2.Feed(0, []swarm.LogLine{{Time: at(31), Text: "New client connected from 10.0.0.9:1 as iot-broker-2-bridge (p5, c1, k5, u'bridge')."}})
	tr2.Feed(1, []swarm.LogLine{
		{Time: at(23), Text: "New bridge connected from 10.0.0.9:2 as iot-broker-2-bridge (p2, c1, k5, u'bridge')."},
		{Time: at(29), Text: "Client iot-broker-2-bridge closed its connection."},
	})
	if l := tr2.Link(2); l.Parent != 0 || !l.Connected || !l.Since.Equal(at(31)) {
		t.Fatalf("feed order changed the result: %+v", l)
	}
	// Scaling down forgets the removed brokers.
	tr.Forget(2)
	if l := tr.Link(2); l.Parent != -1 {
		t.Fatalf("forgotten broker: %+v", l)
	}
}

// TestTrackerKeepsWhatAStartSaidOfItsImage: the last "image contract:"
// line of each broker, with its time; a broker scaled away is forgotten.
func TestTrackerKeepsWhatAStartSaidOfItsImage(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tr := NewTracker("iot")
	if p := tr.Problem(2); p.Text != "" {
		t.Fatalf("nothing logged yet: %+v", p)
	}
	tr.Feed(2, []swarm.LogLine{
		{Time: t0, Text: "image contract: no mosquitto in this image: a broker image needs Mosquitto 2.0.13 or later on the PATH and a POSIX shell"},
		{Time: t0.Add(5 * time.Second), Text: "image contract: Mosquitto 2.0.11 in this image is older than 2.0.13, the oldest a broker image may carry"},
		{Time: t0.Add(6 * time.Second), Text: "1796162406: Loading config file /run/secrets/mosquitto.d/bridge.conf"},
	})
	if p := tr.Problem(2); p.Text != "image contract: Mosquitto 2.0.11 in this image is older than 2.0.13, the oldest a broker image may carry" || !p.At.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("problem: %+v", p)
	}
	if p := tr.Problem(1); p.Text != "" {
		t.Fatalf("another broker's: %+v", p)
	}
	tr.Forget(2)
	if p := tr.Problem(2); p.Text != "" {
		t.Fatalf("kept after a scale-down: %+v", p)
	}
}

// TestTrackerTakesOnlyTheStartScriptsLine: a client id that a broker logs
// cannot pose as its image's contract line.
func TestTrackerTakesOnlyTheStartScriptsLine(t *testing.T) {
	t.Parallel()
	tr := NewTracker("iot")
	tr.Feed(0, []swarm.LogLine{{Time: time.Now(), Text: "2026-12-01T10:00:00: New client connected from 10.0.0.9:5000 as image contract: fake (p2, c1, k60, u'x')."}})
	if p := tr.Problem(0); p.Text != "" {
		t.Fatalf("a client id taken for a contract line: %+v", p)
	}
}

// What a broker says of its own bridge (its notifications) counts beside
// its parent's log: connected or not, the parent the log named kept
// (broker 1's is broker 0); joined, the broker itself, and broker 0 only
// through broker 1; never over something newer the log said.
func TestTrackerTakesABrokersOwnWordOnItsBridge(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tr := NewTracker("iot")
	tr.Feed(0, []swarm.LogLine{{Time: at(1), Text: "New bridge connected from 10.0.0.6:4000 as iot-broker-2-bridge (p2, c1, k5, u'bridge')."}})
	tr.Notify(2, false, at(5))
	if l := tr.Link(2); l.Connected || l.Parent != 0 || !l.Since.Equal(at(5)) {
		t.Fatalf("broker 2 says its bridge is down: %+v", l)
	}
	tr.Notify(2, true, at(8))
	if l := tr.Link(2); !l.Connected || l.Parent != 0 || !tr.JoinedAt(2).Equal(at(8)) || !tr.JoinedAt(0).Equal(at(1)) {
		t.Fatalf("broker 2 says it is back: %+v, joined 2 at %v, 0 at %v (the parent it left may be another)", l, tr.JoinedAt(2), tr.JoinedAt(0))
	}
	tr.Notify(1, true, at(9))
	if l := tr.Link(1); !l.Connected || l.Parent != 0 || !tr.JoinedAt(0).Equal(at(9)) {
		t.Fatalf("broker 1's bridge can only go to broker 0: %+v, 0 joined at %v", l, tr.JoinedAt(0))
	}
	tr.Feed(0, []swarm.LogLine{{Time: at(12), Text: "Client iot-broker-1-bridge closed its connection."}})
	tr.Notify(1, true, at(10))
	if l := tr.Link(1); l.Connected {
		t.Fatalf("an older word overrode the log's newer disconnect: %+v", l)
	}
}
