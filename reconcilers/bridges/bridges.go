package bridges

import (
	"regexp"
	"strconv"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/reconcilers/swarm"
)

// Link is broker Child's bridge.
type Link struct {
	Child     int
	Parent    int // -1: never seen connected
	Connected bool
	Since     time.Time
}

// Tracker follows one cluster's bridges. The zero value is not usable:
// use NewTracker.
type Tracker struct {
	connected  *regexp.Regexp
	disconnect *regexp.Regexp
	contract   *regexp.Regexp
	links      map[int]Link
	// joinedAt is, by broker, the newest time a bridge was seen
	// connecting it to another broker (as the child or as the parent).
	joinedAt map[int]time.Time
	problems map[int]Problem
	cursor   map[int]time.Time
	// atCursor counts the lines read that carry the cursor's time: a
	// later read (since the cursor) returns them again.
	atCursor map[int]int
}

// NewTracker returns a tracker for a cluster's bridges.
func NewTracker(cluster string) *Tracker {
	id := regexp.QuoteMeta(cluster) + `-broker-(\d+)-bridge`
	return &Tracker{
		// An MQTT 5 bridge logs as a client ("New client connected"); a
		// 3.1.1 bridge with try_private as a bridge. Either way it logs in
		// as the internal bridge user.
		connected:  regexp.MustCompile(`New (?:bridge|client) connected from \S+ as ` + id + ` \(p\d, c\d, k\d+, u'bridge'\)`),
		disconnect: regexp.MustCompile(`[Cc]lient ` + id + `\b.*(closed its connection|disconnect)`),
		// The whole line, as the start script writes it (a client id a broker
		// logs cannot pose as one).
		contract: regexp.MustCompile(`^image contract: .*`),
		links:    map[int]Link{},
		joinedAt: map[int]time.Time{},
		problems: map[int]Problem{},
		cursor:   map[int]time.Time{},
		atCursor: map[int]int{},
	}
}

// Cursor is the time of the last line read from broker j's log.
func (t *Tracker) Cursor(j int) time.Time { return t.cursor[j] }

// Feed reads lines broker j logged (oldest first).
func (t *Tracker) Feed(j int, lines []swarm.LogLine) {
	seen := 0
	for _, l := range lines {
		switch {
		case l.Time.Before(t.cursor[j]):
			continue
		case l.Time.Equal(t.cursor[j]):
			if seen < t.atCursor[j] {
				seen++
				continue
			}
			t.atCursor[j]++
			seen++
		default:
			t.cursor[j], t.atCursor[j], seen = l.Time, 1, 1
		}
		// Brokers' logs are fed one after another: an event only counts
		// if it is newer than what is known of that bridge.
		if m := t.connected.FindStringSubmatch(l.Text); m != nil {
			i, _ := strconv.Atoi(m[1])
			for _, b := range []int{i, j} {
				if l.Time.After(t.joinedAt[b]) {
					t.joinedAt[b] = l.Time
				}
			}
			if cur, ok := t.links[i]; !ok || !l.Time.Before(cur.Since) {
				t.links[i] = Link{Child: i, Parent: j, Connected: true, Since: l.Time}
			}
			continue
		}
		if m := t.contract.FindString(l.Text); m != "" {
			t.problems[j] = Problem{Text: m, At: l.Time}
			continue
		}
		if m := t.disconnect.FindStringSubmatch(l.Text); m != nil {
			i, _ := strconv.Atoi(m[1])
			if cur, ok := t.links[i]; ok && cur.Parent == j && cur.Connected && !l.Time.Before(cur.Since) {
				t.links[i] = Link{Child: i, Parent: j, Connected: false, Since: l.Time}
			}
		}
	}
}

// Notify is what broker i said itself of its own bridge at time at
// (Mosquitto's bridge notifications, read over the operator's connection
// to it): connected or not. It does not name the parent, so the one the
// logs named is kept (broker 1's can only be broker 0). A broker's own
// word does not depend on Swarm streaming its parent's log, which Swarm
// may stop doing for minutes for a node that was cut off.
func (t *Tracker) Notify(i int, connected bool, at time.Time) {
	cur, known := t.links[i]
	if known && at.Before(cur.Since) {
		return // the logs said something newer
	}
	parent := -1
	if known {
		parent = cur.Parent
	}
	if i == 1 {
		parent = 0
	}
	if !known || cur.Connected != connected || cur.Parent != parent {
		t.links[i] = Link{Child: i, Parent: parent, Connected: connected, Since: at}
	}
	if !connected {
		return
	}
	// Joined: the broker, and its parent only when certain (broker 1's):
	// a parent kept from the logs may be one the bridge has left.
	joined := []int{i}
	if i == 1 {
		joined = append(joined, 0)
	}
	for _, b := range joined {
		if at.After(t.joinedAt[b]) {
			t.joinedAt[b] = at
		}
	}
}

// Restarted says broker j's current task started at; bridges it held from
// before are gone (a killed broker logs no goodbye), its own to its parent
// too: the new task is bridged once a connection after its start is seen
// (until then it refuses clients: it has not joined the tree).
func (t *Tracker) Restarted(j int, at time.Time) {
	for i, l := range t.links {
		if (l.Parent == j || i == j) && l.Connected && l.Since.Before(at) {
			t.links[i] = Link{Child: i, Parent: l.Parent, Connected: false, Since: at}
		}
	}
}

// Forget drops brokers at or past n (scaled away).
func (t *Tracker) Forget(n int) {
	for i := range t.links {
		if i >= n {
			delete(t.links, i)
		}
	}
	for i := range t.problems {
		if i >= n {
			delete(t.problems, i)
		}
	}
	for i := range t.joinedAt {
		if i >= n {
			delete(t.joinedAt, i)
		}
	}
	for j := range t.cursor {
		if j >= n {
			delete(t.cursor, j)
			delete(t.atCursor, j)
		}
	}
	for i, l := range t.links {
		if l.Parent >= n && l.Connected {
			t.links[i] = Link{Child: i, Parent: l.Parent, Connected: false, Since: l.Since}
		}
	}
}

// Problem is the last thing a broker's start said its image lacks ("image
// contract: ...", broker.ContractCheck), and when.
type Problem struct {
	Text string
	At   time.Time
}

// Problem returns what broker i last logged of its image's contract (zero
// when nothing).
func (t *Tracker) Problem(i int) Problem { return t.problems[i] }

// JoinedAt is the newest time a bridge was seen connecting broker i to
// another broker, its own to a parent or a child's to it (zero: never).
func (t *Tracker) JoinedAt(i int) time.Time { return t.joinedAt[i] }

// Link returns broker i's bridge (Parent -1 when never seen).
func (t *Tracker) Link(i int) Link {
	if l, ok := t.links[i]; ok {
		return l
	}
	return Link{Child: i, Parent: -1}
}
