package scaling

import (
	"fmt"
	"math"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

// Headroom is the share of a target a smaller count must stay under before
// a broker is removed: scaling up at 100 % and down only below 90 % leaves
// a band where nothing changes (HPA's tolerance), so a load near a
// boundary does not flap.
const Headroom = 0.9

// FigureRefresh is how often the figures in status.scaling are rewritten
// when nothing else changed: often enough to read, rare enough not to grow
// the raft log with every pass.
const FigureRefresh = 30 * time.Second

// Figures are a cluster's live load; nil is unknown.
type Figures struct {
	// Connections are the clients connected through HAProxy.
	Connections *int64
	// MessagesPerSecond is the rate the clients publish at.
	MessagesPerSecond *float64
}

// Input is what a decision is made from.
type Input struct {
	// Spec is the defaulted, valid spec.scaling of an Auto cluster.
	Spec api.ScalingSpec
	// Prev is the stored status.scaling (nil: none yet).
	Prev    *api.ScalingStatus
	Figures Figures
	// Ready: the cluster was Ready at its last pass. A broker is removed
	// only from a settled cluster, so one removal (drained, synced) ends
	// before the next begins.
	Ready bool
	Now   time.Time
}

// Decision is the new status.scaling, and the events of its changes.
type Decision struct {
	Status api.ScalingStatus
	Events []api.Event
}

// Decide returns the broker count for the next pass: up at once to what
// the figures need at the targets; down one broker at a time once the
// figures have needed fewer, with Headroom, for scaleDownDelay (since they
// first did, which an increase resets: a cooldown after every scale-up),
// never below the most they needed meanwhile, and only from a Ready
// cluster. Unknown figures change nothing.
func Decide(in Input) Decision {
	sp := in.Spec
	lo, hi := *sp.Min, *sp.Max
	delay, _ := sp.ScaleDownDelay.Parse()
	var prev api.ScalingStatus
	if in.Prev != nil {
		prev = *in.Prev
	}
	cur := prev.Replicas
	if cur == 0 {
		cur = lo
	}
	st := api.ScalingStatus{Replicas: min(max(cur, lo), hi), LowSince: prev.LowSince, LowPeak: prev.LowPeak,
		LastScaleTime: prev.LastScaleTime, Desired: prev.Desired}
	var ev *api.Event
	if st.Replicas != cur {
		ev = event("Scaled", fmt.Sprintf("%d → %d brokers: spec.scaling bounds them to %d..%d", cur, st.Replicas, lo, hi))
		st.LastScaleTime = ptrTime(in.Now)
		st.LowSince, st.LowPeak = nil, 0
	}
	up, upOK := need(sp, in.Figures, 1, lo, hi)
	down, _ := need(sp, in.Figures, Headroom, lo, hi)
	switch {
	case !upOK:
		st.Next = fmt.Sprintf("holding %d brokers: no load figures (HAProxy's runtime API and the brokers out of reach)", st.Replicas)
	case up > st.Replicas:
		ev = event("ScaledUp", fmt.Sprintf("%d → %d brokers: %s need %d", st.Replicas, up, load(sp, in.Figures), up))
		st.Replicas, st.LastScaleTime = up, ptrTime(in.Now)
		st.LowSince, st.LowPeak = nil, 0
		st.Next = fmt.Sprintf("holding %d brokers", up)
	case down < st.Replicas:
		if st.LowSince == nil {
			st.LowSince, st.LowPeak = ptrTime(in.Now), down
		}
		st.LowPeak = max(st.LowPeak, down)
		at := st.LowSince.Add(delay)
		switch {
		case in.Now.Before(at):
			st.Next = fmt.Sprintf("down to %d at %s if the load stays below %s", st.LowPeak, at.UTC().Format(time.RFC3339), above(sp, st.Replicas-1, Headroom))
		case !in.Ready:
			st.Next = fmt.Sprintf("down to %d once the cluster is Ready (one broker at a time)", st.LowPeak)
		default:
			ev = event("ScaledDown", fmt.Sprintf("%d → %d brokers: %s have needed at most %d since %s", st.Replicas, st.Replicas-1,
				load(sp, in.Figures), st.LowPeak, st.LowSince.UTC().Format(time.RFC3339)))
			st.Replicas, st.LastScaleTime = st.Replicas-1, ptrTime(in.Now)
			st.Next = fmt.Sprintf("down to %d once broker %d is drained and gone", st.LowPeak, st.Replicas)
			if st.Replicas == st.LowPeak {
				st.LowSince, st.LowPeak = nil, 0
				st.Next = fmt.Sprintf("holding %d brokers", st.Replicas)
			}
		}
	default:
		st.LowSince, st.LowPeak = nil, 0
		st.Next = fmt.Sprintf("holding %d brokers: up above %s", st.Replicas, above(sp, st.Replicas, 1))
	}
	if upOK {
		st.Desired = up
	}
	figures(&st, prev, in)
	d := Decision{Status: st}
	if ev != nil {
		d.Events = append(d.Events, *ev)
	}
	return d
}

// figures puts the figures in st when they are due (FigureRefresh) or
// anything else changed; otherwise it keeps the stored ones, so a settled
// cluster's status is not rewritten every pass.
func figures(st *api.ScalingStatus, prev api.ScalingStatus, in Input) {
	st.Connections, st.MessagesPerSecond, st.ObservedTime = prev.Connections, prev.MessagesPerSecond, prev.ObservedTime
	changed := st.Replicas != prev.Replicas || st.Desired != prev.Desired || st.LowPeak != prev.LowPeak ||
		(st.LowSince == nil) != (prev.LowSince == nil) || st.Next != prev.Next
	if !changed && prev.ObservedTime != nil && in.Now.Sub(prev.ObservedTime.Time) < FigureRefresh {
		return
	}
	st.Connections = in.Figures.Connections
	st.MessagesPerSecond = nil
	if m := in.Figures.MessagesPerSecond; m != nil {
		v := int64(math.Round(*m))
		st.MessagesPerSecond = &v
	}
	st.ObservedTime = ptrTime(in.Now)
}

// need is the broker count the known figures ask for at share of each
// target, within lo and hi; ok is false when no figure with a target is
// known.
func need(sp api.ScalingSpec, f Figures, share float64, lo, hi int32) (n int32, ok bool) {
	n = lo
	if t := sp.ConnectionsPerBroker; t != nil && f.Connections != nil {
		n, ok = max(n, count(float64(*f.Connections), float64(*t)*share)), true
	}
	if t := sp.MessagesPerSecondPerBroker; t != nil && f.MessagesPerSecond != nil {
		n, ok = max(n, count(*f.MessagesPerSecond, float64(*t)*share)), true
	}
	return min(n, hi), ok
}

func count(load, per float64) int32 {
	return int32(min(math.Ceil(load/per), float64(api.MaxReplicas)))
}

// load says the figures that have a target, in words.
func load(sp api.ScalingSpec, f Figures) string {
	var parts []string
	if t := sp.ConnectionsPerBroker; t != nil && f.Connections != nil {
		parts = append(parts, fmt.Sprintf("%d connections (target %d per broker)", *f.Connections, *t))
	}
	if t := sp.MessagesPerSecondPerBroker; t != nil && f.MessagesPerSecond != nil {
		parts = append(parts, fmt.Sprintf("%.0f messages/s (target %d per broker)", *f.MessagesPerSecond, *t))
	}
	return strings.Join(parts, " and ")
}

// above says the load n brokers hold at share of the targets.
func above(sp api.ScalingSpec, n int32, share float64) string {
	var parts []string
	if t := sp.ConnectionsPerBroker; t != nil {
		parts = append(parts, fmt.Sprintf("%.0f connections", float64(*t)*float64(n)*share))
	}
	if t := sp.MessagesPerSecondPerBroker; t != nil {
		parts = append(parts, fmt.Sprintf("%.0f messages/s", float64(*t)*float64(n)*share))
	}
	return strings.Join(parts, " and ")
}

func event(reason, msg string) *api.Event {
	return &api.Event{Type: api.EventNormal, Reason: reason, Message: msg}
}

func ptrTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}
