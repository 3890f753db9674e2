package testutil

import (
	"sync/atomic"
	"testing"
	"time"
)

// A probe that takes 300 ms to fail and comes back at once once the
// service is up: the recovery is timed to within a tick or so, not to the
// end of the slow probe that was under way when the service came back.
func TestFirstSuccessIsNotHeldUpBySlowProbes(t *testing.T) {
	start := time.Now()
	upAt := 200 * time.Millisecond
	var started atomic.Int32
	got, ok := FirstSuccess(start, 20*time.Millisecond, 5*time.Second, 50, func() bool {
		started.Add(1)
		if time.Since(start) < upAt {
			time.Sleep(300 * time.Millisecond)
			return false
		}
		return true
	})
	if !ok {
		t.Fatal("no probe succeeded")
	}
	if got < upAt || got > upAt+100*time.Millisecond {
		t.Fatalf("recovered after %s, want within 100 ms of %s", got, upAt)
	}
}

func TestFirstSuccessGivesUpAtTheLimit(t *testing.T) {
	start := time.Now()
	if _, ok := FirstSuccess(start, 10*time.Millisecond, 100*time.Millisecond, 3, func() bool { time.Sleep(30 * time.Millisecond); return false }); ok {
		t.Fatal("succeeded")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("returned after %s", d)
	}
}
