// Package chaos is the soak's workload, history and checker: publishers
// that number their messages, persistent subscribers, retained writers
// and readers, and the check of what an acknowledged publish became at
// every subscriber (lost, duplicated, out of order), per fault kind. The
// nemesis that injects the faults lives with the Swarm it acts on
// (test/ha); this package does no Docker I/O.
package chaos

import (
	"encoding/json"
	"io"
	"sort"
	"sync"
	"time"
)

// Publish is one numbered message: when its publisher first sent it, and
// when the broker acknowledged it (zero: never, within the budget).
type Publish struct {
	Pub         string
	Seq         int
	Sent, Acked time.Time
}

// Delivery is one message a subscriber got.
type Delivery struct {
	Sub, Pub string
	Seq      int
	At       time.Time
}

// RetainedRead is what a new subscriber to the retained topic got first
// (Seq -1: nothing within the read's wait).
type RetainedRead struct {
	Reader string
	Seq    int
	Asked  time.Time
}

// Fault is one injected fault, from its injection until the cluster had
// converged again after its heal.
type Fault struct {
	Kind     string
	Detail   string
	From, To time.Time
	// Err is why the fault could not be injected or healed (the run then
	// fails: a nemesis that silently did nothing proves nothing).
	Err string
}

// History is everything the workload and the nemesis saw. Safe for
// concurrent use.
type History struct {
	mu         sync.Mutex
	publishes  []Publish
	deliveries []Delivery
	subscribed map[string]time.Time
	// subscriptions are every (re)subscription, for a diagnosis.
	subscriptions []Subscription
	retained      []Publish
	reads         []RetainedRead
	faults        []Fault
	// newest is each subscriber's newest delivered sequence number per
	// publisher, for Receiving.
	newest map[[2]string]int
}

// NewHistory is an empty history.
func NewHistory() *History {
	return &History{subscribed: map[string]time.Time{}, newest: map[[2]string]int{}}
}

// Published records a data message's outcome.
func (h *History) Published(p Publish) {
	h.mu.Lock()
	h.publishes = append(h.publishes, p)
	h.mu.Unlock()
}

// RetainedPublished records a retained message's outcome.
func (h *History) RetainedPublished(p Publish) {
	h.mu.Lock()
	h.retained = append(h.retained, p)
	h.mu.Unlock()
}

// Delivered records a message a subscriber got.
func (h *History) Delivered(d Delivery) {
	h.mu.Lock()
	h.deliveries = append(h.deliveries, d)
	if k := [2]string{d.Sub, d.Pub}; d.Seq > h.newest[k] {
		h.newest[k] = d.Seq
	}
	h.mu.Unlock()
}

// Subscribed records a subscriber's first acknowledged subscription:
// every message published after it is owed to that subscriber.
func (h *History) Subscribed(sub string, at time.Time) {
	h.mu.Lock()
	h.subscriptions = append(h.subscriptions, Subscription{Sub: sub, At: at})
	if _, ok := h.subscribed[sub]; !ok {
		h.subscribed[sub] = at
	}
	h.mu.Unlock()
}

// Subscription is one acknowledged (re)subscription of a subscriber.
type Subscription struct {
	Sub string
	At  time.Time
}

// Save writes the whole history as JSON, for a diagnosis after the run.
func (h *History) Save(w io.Writer) error {
	s := h.snapshot()
	return json.NewEncoder(w).Encode(map[string]any{
		"publishes": s.publishes, "deliveries": s.deliveries, "subscriptions": s.subscriptions,
		"retained": s.retained, "reads": s.reads, "faults": s.faults,
	})
}

// Read records a retained read.
func (h *History) Read(r RetainedRead) { h.mu.Lock(); h.reads = append(h.reads, r); h.mu.Unlock() }

// Faulted records a fault.
func (h *History) Faulted(f Fault) { h.mu.Lock(); h.faults = append(h.faults, f); h.mu.Unlock() }

// Owed is how many deliveries the subscribers are still owed for the
// acknowledged messages (0: every subscriber has every message it is
// owed): the drain waits on it.
func (h *History) Owed() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	got := map[key]bool{}
	for _, d := range h.deliveries {
		got[key{d.Sub, d.Pub, d.Seq}] = true
	}
	owed := 0
	for _, p := range h.publishes {
		if p.Acked.IsZero() {
			continue
		}
		for sub, at := range h.subscribed {
			if at.Before(p.Sent) && !got[key{sub, p.Pub, p.Seq}] {
				owed++
			}
		}
	}
	return owed
}

// Mark is, per publisher, the newest sequence number recorded so far:
// a message numbered two past it was sent after the mark (the one past
// it may have been sent before and acknowledged after).
func (h *History) Mark() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := map[string]int{}
	for _, p := range h.publishes {
		m[p.Pub] = max(m[p.Pub], p.Seq)
	}
	return m
}

// Receiving is which subscribers have not yet got, from every publisher,
// a message sent after the mark (none: every path works again). A fault's
// window ends only then: a client whose connection died with a node may
// notice only by its keepalive, after the cluster has converged, and what
// it misses until it has subscribed again is the fault's, not calm's; a
// bridge whose parent was on a cut-off node may take as long to fail
// over, and meanwhile its broker's publishers reach only that broker's
// subscribers (a CI run: one publisher's messages missed four of six
// subscribers for 0.2 s after the window had closed on the others'
// messages arriving).
func (h *History) Receiving(mark map[string]int) (waiting []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for sub := range h.subscribed {
		for pub, seq := range mark {
			if h.newest[[2]string{sub, pub}] < seq+2 {
				waiting = append(waiting, sub)
				break
			}
		}
	}
	sort.Strings(waiting)
	return waiting
}

type key struct {
	sub, pub string
	seq      int
}

func (h *History) snapshot() *History {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &History{subscribed: map[string]time.Time{}}
	s.publishes = append(s.publishes, h.publishes...)
	s.deliveries = append(s.deliveries, h.deliveries...)
	s.retained = append(s.retained, h.retained...)
	s.reads = append(s.reads, h.reads...)
	s.subscriptions = append(s.subscriptions, h.subscriptions...)
	s.faults = append(s.faults, h.faults...)
	for k, v := range h.subscribed {
		s.subscribed[k] = v
	}
	return s
}
