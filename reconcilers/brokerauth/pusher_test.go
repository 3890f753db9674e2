package brokerauth

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"
)

// A broker parked (PerNode) loses its connection and a broker back gets
// one, and neither restarts the connections to the others.
func TestParkingABrokerTouchesOnlyItsConnection(t *testing.T) {
	t.Parallel()
	p, tgt, conns := runningPusher(t)
	p.Set("c", tgt, State{Version: "v1"})
	before := conns()
	if got := slices.Sorted(maps.Keys(before)); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("connections %v", got)
	}
	tgt.Parked = []int{1}
	p.Set("c", tgt, State{Version: "v1"})
	parked := conns()
	if got := slices.Sorted(maps.Keys(parked)); !slices.Equal(got, []int{0, 2}) || parked[0] != before[0] || parked[2] != before[2] {
		t.Fatalf("after parking 1: %v (0 and 2 must be kept)", got)
	}
	tgt.Parked = nil
	p.Set("c", tgt, State{Version: "v1"})
	back := conns()
	if got := slices.Sorted(maps.Keys(back)); !slices.Equal(got, []int{0, 1, 2}) || back[0] != before[0] || back[2] != before[2] || back[1] == before[1] {
		t.Fatalf("after 1 is back: %v", got)
	}
}

// runningPusher is a running Pusher (its connections to nowhere, retried
// once an hour), a three-broker target, and a copy of cluster "c"'s
// connections.
func runningPusher(t *testing.T) (*Pusher, Target, func() map[int]*conn) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &Pusher{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Retry: time.Hour}
	go p.Run(ctx)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		running := p.ctx != nil
		p.mu.Unlock()
		if running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pusher did not start within 5 s")
		}
	}
	tgt := Target{Brokers: 3, Addr: func(int) string { return "127.0.0.1:1" }, User: "u", Password: "p", CA: []byte("x")}
	conns := func() map[int]*conn {
		p.mu.Lock()
		defer p.mu.Unlock()
		return maps.Clone(p.clusters["c"].conns)
	}
	return p, tgt, conns
}

// A broker moved off a lost node gets a new connection at once (the old
// one is half open); the others keep theirs; an unknown cluster or
// broker is ignored.
func TestReconnectRenewsOnlyThatBrokersConnection(t *testing.T) {
	t.Parallel()
	p, tgt, conns := runningPusher(t)
	p.Set("c", tgt, State{Version: "v1"})
	before := conns()
	p.Reconnect("c", 2)
	p.Reconnect("other", 0)
	after := conns()
	if got := slices.Sorted(maps.Keys(after)); !slices.Equal(got, []int{0, 1, 2}) || after[0] != before[0] || after[1] != before[1] || after[2] == before[2] {
		t.Fatalf("after Reconnect(c, 2): %v (0 and 1 kept, 2 new)", got)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clusters["other"] != nil {
		t.Fatal("Reconnect made a cluster")
	}
}
