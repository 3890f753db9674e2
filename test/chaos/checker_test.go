package chaos

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCheckerFindsEveryKindOfFault(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	h := NewHistory()
	h.Subscribed("s1", at(0))
	h.Subscribed("s2", at(5))   // owed only what was sent after 5 s
	h.Subscribed("s1", at(100)) // a resubscription does not move the first
	h.Faulted(Fault{Kind: "hub-kill", From: at(10), To: at(20)})
	h.Faulted(Fault{Kind: "hub-kill", From: at(30), To: at(31), Err: "no such container"})
	pub := func(seq int, sent, wait float64) {
		p := Publish{Pub: "p", Seq: seq, Sent: at(sent)}
		if wait >= 0 {
			p.Acked = at(sent + wait)
		}
		h.Published(p)
	}
	deliver := func(sub string, seqs ...int) {
		for _, s := range seqs {
			h.Delivered(Delivery{Sub: sub, Pub: "p", Seq: s})
		}
	}
	pub(1, 1, 0.1)  // calm: owed to s1 only
	pub(2, 6, 0.1)  // calm: owed to both
	pub(3, 11, 2.5) // hub-kill: both; s2 loses it
	pub(4, 12, 0.1) // hub-kill: both; s1 twice, reordered at s2
	pub(5, 13, -1)  // hub-kill: never acknowledged (not owed)
	pub(6, 14, 0.2) // hub-kill
	deliver("s1", 1, 2, 3, 4, 4, 6, 5)
	deliver("s2", 2, 6, 4)
	h.RetainedPublished(Publish{Pub: "r", Seq: 0, Sent: at(0), Acked: at(0.1)})
	h.RetainedPublished(Publish{Pub: "r", Seq: 1, Sent: at(12), Acked: at(12.1)})
	h.Read(RetainedRead{Reader: "r1", Seq: 0, Asked: at(1.2)})  // fine
	h.Read(RetainedRead{Reader: "r5", Seq: 0, Asked: at(12.5)}) // within the grace: fine
	h.Read(RetainedRead{Reader: "r2", Seq: 0, Asked: at(13.2)}) // stale, in hub-kill
	h.Read(RetainedRead{Reader: "r3", Seq: -1, Asked: at(14)})  // missing
	h.Read(RetainedRead{Reader: "r4", Seq: -1, Asked: at(0)})   // nothing acked yet: fine

	rep := h.Check()
	calm, kill := rep.Row(Calm), rep.Row("hub-kill")
	if calm.Acked != 2 || calm.Owed != 3 || calm.Lost != 0 || calm.Duplicated != 0 || calm.Reordered != 0 || calm.Reads != 2 || calm.Stale+calm.Missing != 0 {
		t.Errorf("calm: %+v", calm)
	}
	want := Row{Kind: "hub-kill", Faults: 2, Acked: 3, Unacked: 1, Owed: 6, Lost: 1, LossSpan: time.Second, Duplicated: 1, Reordered: 1,
		WorstWait: 2500 * time.Millisecond, Reads: 3, Stale: 1, Missing: 1}
	if kill != want {
		t.Errorf("hub-kill:\n got %+v\nwant %+v", kill, want)
	}
	if len(rep.FaultErrors) != 1 || !strings.Contains(rep.FaultErrors[0], "no such container") {
		t.Errorf("fault errors: %v", rep.FaultErrors)
	}
	if !strings.Contains(strings.Join(rep.Examples, "\n"), "p #3") {
		t.Errorf("the loss is not named: %v", rep.Examples)
	}
	if h.Owed() != 1 {
		t.Errorf("owed: %d, want 1 (s2's #3)", h.Owed())
	}
	if tab := rep.Table(7, 1); !strings.Contains(tab, "| hub-kill | 2 | 3 | 1 | 6 | 1 | 1s | 1 | 1 | 2.5s | 3 | 1 | 1 |") {
		t.Errorf("table:\n%s", tab)
	}
}

func TestScheduleIsSeeded(t *testing.T) {
	kinds := []string{"a", "b", "c", "d"}
	a, b, c := Schedule(42, kinds, 12), Schedule(42, kinds, 12), Schedule(43, kinds, 12)
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("one seed, two schedules: %v %v", a, b)
	}
	if strings.Join(a, ",") == strings.Join(c, ",") {
		t.Errorf("two seeds, one schedule: %v", a)
	}
	// Every kind comes once before any comes twice, so a short run still
	// covers every kind.
	seen := map[string]bool{}
	for _, k := range a[:len(kinds)] {
		seen[k] = true
	}
	if len(seen) != len(kinds) {
		t.Errorf("the first %d faults are not every kind: %v", len(kinds), a)
	}
}

// TestInFlightMessagesAreChargedToTheFault: a message sent up to InFlight
// before a fault's injection is the fault's (it was in flight when it
// struck); one sent earlier is calm's, so a loss of it fails a calm bound.
func TestInFlightMessagesAreChargedToTheFault(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	h := NewHistory()
	h.Subscribed("s", at(0))
	h.Faulted(Fault{Kind: "broker-kill", From: at(10), To: at(20)})
	for seq, sent := range []float64{
		10 - InFlight.Seconds() - 0.5, // before the window: calm
		10 - InFlight.Seconds(),       // the window's first instant: the fault's
		9.5,                           // in flight: the fault's
		20,                            // the heal's instant: the fault's
		20.5,                          // after: calm
	} {
		h.Published(Publish{Pub: "p", Seq: seq, Sent: at(sent), Acked: at(sent + 0.01)})
	}
	// None delivered: every loss is charged where its message was sent.
	rep := h.Check()
	calm, kill := rep.Row(Calm), rep.Row("broker-kill")
	if calm.Acked != 2 || calm.Lost != 2 {
		t.Errorf("calm: %d acked, %d lost; want 2 and 2 (sent 2.5 s before the fault and after its heal)", calm.Acked, calm.Lost)
	}
	if kill.Acked != 3 || kill.Lost != 3 {
		t.Errorf("broker-kill: %d acked, %d lost; want 3 and 3 (from InFlight before the injection to the heal)", kill.Acked, kill.Lost)
	}
}

// TestReceivingNeedsAMessageSentAfterTheMark: a subscriber is receiving
// again only once it got a message numbered two past the mark (the one
// past it may have been sent before the mark); a redelivery of an older
// one does not count.
func TestReceivingNeedsAMessageSentAfterTheMark(t *testing.T) {
	h := NewHistory()
	for _, sub := range []string{"a", "b"} {
		h.Subscribed(sub, time.Now())
	}
	for seq := range 6 {
		h.Published(Publish{Pub: "p", Seq: seq, Sent: time.Now(), Acked: time.Now()})
		h.Delivered(Delivery{Sub: "a", Pub: "p", Seq: seq})
		h.Delivered(Delivery{Sub: "b", Pub: "p", Seq: seq})
	}
	mark := h.Mark()
	if got := h.Receiving(mark); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("right after the mark: waiting %v, want [a b]", got)
	}
	h.Delivered(Delivery{Sub: "a", Pub: "p", Seq: 7})
	h.Delivered(Delivery{Sub: "b", Pub: "p", Seq: 6})
	h.Delivered(Delivery{Sub: "b", Pub: "p", Seq: 2})
	if got := h.Receiving(mark); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("a got #7, b #6 and a redelivered #2: waiting %v, want [b]", got)
	}
	h.Delivered(Delivery{Sub: "b", Pub: "p", Seq: 7})
	if got := h.Receiving(mark); len(got) != 0 {
		t.Fatalf("both got #7: waiting %v", got)
	}
	// A second publisher: a subscriber waits until it has a new message
	// from each (one publisher's broker may still be cut off from it).
	h.Published(Publish{Pub: "q", Seq: 0, Sent: time.Now(), Acked: time.Now()})
	h.Delivered(Delivery{Sub: "a", Pub: "q", Seq: 0})
	mark = h.Mark()
	h.Delivered(Delivery{Sub: "a", Pub: "p", Seq: 9})
	h.Delivered(Delivery{Sub: "b", Pub: "p", Seq: 9})
	h.Delivered(Delivery{Sub: "b", Pub: "q", Seq: 2})
	if got := h.Receiving(mark); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("a got p's #9 but nothing new of q's: waiting %v, want [a]", got)
	}
}
