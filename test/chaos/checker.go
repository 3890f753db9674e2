package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// RetainedGrace is how long a retained message may take to reach every
// broker (the bridges carry it): a read older than that is stale.
const RetainedGrace = time.Second

// Calm is the row of everything published while no fault was on.
const Calm = "calm"

// InFlight is how long before a fault a message may have been sent and
// still be hit by it: acknowledged, but queued on a broker (for a
// subscriber, or for a bridge) when the fault strikes. Such a message is
// charged to the fault, not to calm.
const InFlight = 2 * time.Second

// Row is one fault kind's figures. A message belongs to the fault that
// was on when it was first sent (from InFlight before the injection until
// the cluster had converged after the heal), or to Calm.
type Row struct {
	Kind   string
	Faults int
	// Acked are the acknowledged publishes; Unacked were never
	// acknowledged within the publisher's budget.
	Acked, Unacked int
	// Owed are the deliveries owed: an acknowledged publish times the
	// subscribers subscribed before it was sent.
	Owed int
	// Lost are owed deliveries that never came; Duplicated, deliveries
	// beyond the first; Reordered, first deliveries of a message older
	// than one of the same publisher already delivered to that subscriber.
	Lost, Duplicated, Reordered int
	// LossSpan is how long after its fault's injection the last lost
	// message was sent: the loss window the fault opened.
	LossSpan time.Duration
	// WorstWait is the longest a publish waited for its acknowledgment,
	// retries included: the longest a client could not publish.
	WorstWait time.Duration
	// Reads of the retained topic; Stale, those that came back older than
	// the newest retained message acknowledged RetainedGrace before the
	// read; Missing,
	// those that got nothing though one had been acknowledged.
	Reads, Stale, Missing int
}

// Report is the checker's verdict on a history.
type Report struct {
	Rows []Row
	// Examples name a few of the losses, duplicates, reorders and stale
	// reads, to start a diagnosis from.
	Examples []string
	// FaultErrors are the faults the nemesis could not inject or heal.
	FaultErrors []string
	Subscribers int
}

// Row is the row of a kind (the zero Row when there is none).
func (r Report) Row(kind string) Row {
	for _, row := range r.Rows {
		if row.Kind == kind {
			return row
		}
	}
	return Row{Kind: kind}
}

// Check is the checker: every acknowledged publish against every
// subscriber that was subscribed before it was sent.
func (h *History) Check() Report {
	s := h.snapshot()
	rows := map[string]*Row{Calm: {Kind: Calm}}
	var rep Report
	for _, f := range s.faults {
		row := rows[f.Kind]
		if row == nil {
			row = &Row{Kind: f.Kind}
			rows[f.Kind] = row
		}
		row.Faults++
		if f.Err != "" {
			rep.FaultErrors = append(rep.FaultErrors, fmt.Sprintf("%s %s: %s", f.Kind, f.Detail, f.Err))
		}
	}
	faultAt := func(t time.Time) (*Row, time.Time) {
		for _, f := range s.faults {
			if !t.Before(f.From.Add(-InFlight)) && !t.After(f.To) {
				return rows[f.Kind], f.From
			}
		}
		return rows[Calm], t
	}
	kindAt := func(t time.Time) *Row { r, _ := faultAt(t); return r }
	// A few examples of each kind, each with its kind, so that a loss
	// outside its bound is shown whatever came before it.
	perKind := map[string]int{}
	example := func(kind, format string, a ...any) {
		if perKind[kind] < 5 {
			perKind[kind]++
			rep.Examples = append(rep.Examples, fmt.Sprintf("[%s] ", kind)+fmt.Sprintf(format, a...))
		}
	}

	got := map[key]int{}
	for _, d := range s.deliveries {
		got[key{d.Sub, d.Pub, d.Seq}]++
	}
	subs := make([]string, 0, len(s.subscribed))
	for sub := range s.subscribed {
		subs = append(subs, sub)
	}
	sort.Strings(subs)
	rep.Subscribers = len(subs)
	sent := map[msgKey]time.Time{}
	for _, p := range s.publishes {
		row, from := faultAt(p.Sent)
		if p.Acked.IsZero() {
			row.Unacked++
			continue
		}
		sent[msgKey{p.Pub, p.Seq}] = p.Sent
		row.Acked++
		row.WorstWait = max(row.WorstWait, p.Acked.Sub(p.Sent))
		for _, sub := range subs {
			if !s.subscribed[sub].Before(p.Sent) {
				continue
			}
			row.Owed++
			switch n := got[key{sub, p.Pub, p.Seq}]; {
			case n == 0:
				row.Lost++
				row.LossSpan = max(row.LossSpan, p.Sent.Sub(from)) // negative: in flight before it
				example(row.Kind, "lost: %s #%d (sent %s, acked %s) never reached %s", p.Pub, p.Seq, p.Sent.Format(time.StampMilli), p.Acked.Format(time.StampMilli), sub)
			case n > 1:
				row.Duplicated += n - 1
				if n > 2 {
					example(row.Kind, "duplicated: %s #%d reached %s %d times", p.Pub, p.Seq, sub, n)
				}
			}
		}
	}
	checkOrder(s.deliveries, sent, kindAt, example)
	for _, r := range s.reads {
		row := kindAt(r.Asked)
		row.Reads++
		newest := -1
		for _, p := range s.retained {
			if !p.Acked.IsZero() && p.Acked.Before(r.Asked.Add(-RetainedGrace)) && p.Seq > newest {
				newest = p.Seq
			}
		}
		switch {
		case newest >= 0 && r.Seq < 0:
			row.Missing++
			example(row.Kind, "retained: %s at %s got nothing, #%d was acknowledged", r.Reader, r.Asked.Format(time.StampMilli), newest)
		case r.Seq < newest:
			row.Stale++
			example(row.Kind, "retained: %s at %s got #%d, #%d was acknowledged", r.Reader, r.Asked.Format(time.StampMilli), r.Seq, newest)
		}
	}
	for _, row := range rows {
		rep.Rows = append(rep.Rows, *row)
	}
	sort.Slice(rep.Rows, func(i, j int) bool {
		if (rep.Rows[i].Kind == Calm) != (rep.Rows[j].Kind == Calm) {
			return rep.Rows[i].Kind == Calm
		}
		return rep.Rows[i].Kind < rep.Rows[j].Kind
	})
	return rep
}

// checkOrder counts, per subscriber and publisher, the first deliveries
// of a message older than one already delivered (a redelivered duplicate
// is not a reorder), attributed to the fault on when it was sent.
func checkOrder(ds []Delivery, sent map[msgKey]time.Time, kindAt func(time.Time) *Row, example func(string, string, ...any)) {
	newest := map[[2]string]int{}
	seen := map[key]bool{}
	for _, d := range ds {
		k := key{d.Sub, d.Pub, d.Seq}
		if seen[k] {
			continue
		}
		seen[k] = true
		pk := [2]string{d.Sub, d.Pub}
		n, ok := newest[pk]
		if ok && d.Seq < n {
			if at, acked := sent[msgKey{d.Pub, d.Seq}]; acked {
				row := kindAt(at)
				row.Reordered++
				example(row.Kind, "reordered: %s got %s #%d after #%d", d.Sub, d.Pub, d.Seq, n)
			}
			continue
		}
		newest[pk] = d.Seq
	}
}

// msgKey names one publisher's message.
type msgKey struct {
	pub string
	seq int
}

// Table is the report as a Markdown table, with the seed that repeats it.
func (r Report) Table(seed int64, minutes float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %.1f min, %d persistent subscribers\n\n", seed, minutes, r.Subscribers)
	b.WriteString("| fault | n | acked | unacked | owed | lost | loss window | dup | reordered | worst wait | retained reads | stale | missing |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		span := "-"
		if row.Lost > 0 {
			span = row.LossSpan.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %d | %d | %s | %d | %d | %d |\n", row.Kind, row.Faults, row.Acked, row.Unacked, row.Owed,
			row.Lost, span, row.Duplicated, row.Reordered, row.WorstWait.Round(10*time.Millisecond), row.Reads, row.Stale, row.Missing)
	}
	return b.String()
}
