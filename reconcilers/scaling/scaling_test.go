package scaling

import (
	"strings"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
)

func auto(min, max, conns int32) api.ScalingSpec {
	return api.ScalingSpec{Mode: api.ScalingAuto, Min: &min, Max: &max, ConnectionsPerBroker: &conns, ScaleDownDelay: "1m"}
}

func conns(n int64) Figures { return Figures{Connections: &n} }

// run feeds Decide one pass per step, each 10 s after the last, carrying
// the status (through JSON, as the store does) from pass to pass.
type step struct {
	figures Figures
	ready   bool
	want    int32  // replicas after the pass
	event   string // the event's reason, "" none
}

func run(t *testing.T, sp api.ScalingSpec, steps []step) *api.ScalingStatus {
	t.Helper()
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	var prev *api.ScalingStatus
	for i, s := range steps {
		d := Decide(Input{Spec: sp, Prev: prev, Figures: s.figures, Ready: s.ready, Now: t0.Add(time.Duration(i) * 10 * time.Second)})
		if d.Status.Replicas != s.want {
			t.Fatalf("pass %d: replicas %d, want %d (next: %s)", i, d.Status.Replicas, s.want, d.Status.Next)
		}
		got := ""
		if len(d.Events) > 0 {
			got = d.Events[0].Reason
		}
		if got != s.event || len(d.Events) > 1 {
			t.Fatalf("pass %d: events %v, want %q", i, d.Events, s.event)
		}
		c := &api.MqttCluster{}
		c.Status.Scaling = &d.Status
		prev = c.DeepCopy().Status.Scaling
	}
	return prev
}

func TestScalesUpAtOnceToWhatTheConnectionsNeed(t *testing.T) {
	t.Parallel()
	st := run(t, auto(2, 5, 100), []step{
		{conns(50), true, 2, ""},
		{conns(200), true, 2, ""},          // exactly at the target: no change
		{conns(201), false, 3, "ScaledUp"}, // above it; Ready does not matter up
		{conns(450), false, 5, "ScaledUp"},
		{conns(5000), true, 5, ""}, // max holds
	})
	if st.Desired != 5 || *st.Connections != 5000 {
		t.Fatalf("status %+v", st)
	}
}

func TestScalesDownOneAtATimeAfterTheDelayAndOnlyWhenReady(t *testing.T) {
	t.Parallel()
	steps := []step{{conns(450), true, 5, "ScaledUp"}}
	// 150 connections need 2 at 90 % of 100: low from pass 1 on; the delay
	// is 1 min (6 passes).
	for i := 0; i < 6; i++ {
		steps = append(steps, step{conns(150), true, 5, ""})
	}
	steps = append(steps,
		step{conns(150), false, 5, ""},          // due, but not Ready
		step{conns(150), true, 4, "ScaledDown"}, // one broker
		step{conns(150), false, 4, ""},          // the removal runs
		step{conns(150), true, 3, "ScaledDown"}, // the next, no new delay
		step{conns(150), true, 2, "ScaledDown"}, // down to what 150 need
		step{conns(150), true, 2, ""},
	)
	st := run(t, auto(1, 5, 100), steps)
	if st.LowSince != nil {
		t.Fatalf("low period kept after reaching its floor: %+v", st)
	}
}

func TestALoadInTheHeadroomBandOrAPeakHoldsTheCount(t *testing.T) {
	t.Parallel()
	// 3 brokers, 100 each: 190 connections need 2 at 100 % but 3 at 90 %
	// (the band): never down.
	steps := []step{{conns(290), true, 3, "ScaledUp"}}
	for i := 0; i < 20; i++ {
		steps = append(steps, step{conns(190), true, 3, ""})
	}
	run(t, auto(1, 5, 100), steps)

	// A peak inside the window bounds the step: low at 50 (needs 1), one
	// pass at 170 (needs 2 with headroom) — it goes down to 2, not 1.
	steps = []step{{conns(290), true, 3, "ScaledUp"}, {conns(50), true, 3, ""}, {conns(170), true, 3, ""}}
	for i := 0; i < 4; i++ { // due 1 min after the first low pass
		steps = append(steps, step{conns(50), true, 3, ""})
	}
	steps = append(steps, step{conns(50), true, 2, "ScaledDown"}, step{conns(50), true, 2, ""}, step{conns(50), true, 2, ""})
	run(t, auto(1, 5, 100), steps)
}

func TestARiseResetsTheLowPeriod(t *testing.T) {
	t.Parallel()
	steps := []step{{conns(290), true, 3, "ScaledUp"}}
	for i := 0; i < 4; i++ {
		steps = append(steps, step{conns(50), true, 3, ""})
	}
	steps = append(steps, step{conns(280), true, 3, ""}) // back above: the window restarts
	for i := 0; i < 5; i++ {
		steps = append(steps, step{conns(50), true, 3, ""})
	}
	steps = append(steps, step{conns(50), true, 3, ""}, step{conns(50), true, 2, "ScaledDown"})
	run(t, auto(1, 5, 100), steps)
}

func TestUnknownFiguresChangeNothing(t *testing.T) {
	t.Parallel()
	st := run(t, auto(2, 5, 100), []step{{conns(450), true, 5, "ScaledUp"}, {Figures{}, true, 5, ""}, {Figures{}, true, 5, ""}})
	if !strings.Contains(st.Next, "no load figures") {
		t.Fatalf("next = %q", st.Next)
	}
}

func TestMessagesTargetAndTheLargerNeedWins(t *testing.T) {
	t.Parallel()
	sp := auto(1, 10, 1000)
	mps := int32(500)
	sp.MessagesPerSecondPerBroker = &mps
	c, m := int64(100), 1600.0
	d := Decide(Input{Spec: sp, Figures: Figures{Connections: &c, MessagesPerSecond: &m}, Now: time.Now()})
	if d.Status.Replicas != 4 || len(d.Events) != 1 || !strings.Contains(d.Events[0].Message, "1600 messages/s") {
		t.Fatalf("got %+v %v", d.Status, d.Events)
	}
}

func TestBoundsChangedInTheSpecApplyAtOnce(t *testing.T) {
	t.Parallel()
	prev := &api.ScalingStatus{Replicas: 5}
	d := Decide(Input{Spec: auto(1, 3, 100), Prev: prev, Figures: conns(10), Now: time.Now()})
	if d.Status.Replicas != 3 || len(d.Events) != 1 || d.Events[0].Reason != "Scaled" {
		t.Fatalf("got %+v %v", d.Status, d.Events)
	}
}

func TestASettledClusterRewritesItsFiguresOnlyEveryRefresh(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	sp := auto(1, 5, 100)
	first := Decide(Input{Spec: sp, Figures: conns(10), Ready: true, Now: t0}).Status
	again := Decide(Input{Spec: sp, Prev: &first, Figures: conns(12), Ready: true, Now: t0.Add(FigureRefresh / 2)}).Status
	if *again.Connections != 10 {
		t.Fatalf("figures rewritten before the refresh: %d", *again.Connections)
	}
	later := Decide(Input{Spec: sp, Prev: &again, Figures: conns(12), Ready: true, Now: t0.Add(FigureRefresh)}).Status
	if *later.Connections != 12 {
		t.Fatalf("figures not refreshed: %d", *later.Connections)
	}
}
