package testutil

import (
	"sync"
	"time"
)

// FirstSuccess times a recovery: it starts probe every `every`, each in its
// own goroutine (at most maxInFlight at once), until one returns true or
// limit has passed since start, and returns when the first successful
// probe returned, measured from start. Overlapping probes make the
// resolution `every` rather than a probe's own timeouts (a probe that
// began just before the service came back may wait seconds to fail). It
// returns once every probe it started has returned.
func FirstSuccess(start time.Time, every, limit time.Duration, maxInFlight int, probe func() bool) (time.Duration, bool) {
	var (
		mu    sync.Mutex
		first time.Duration
		wg    sync.WaitGroup
	)
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != 0
	}
	slots := make(chan struct{}, maxInFlight)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !done() && time.Since(start) < limit {
		select {
		case slots <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				if probe() {
					at := time.Since(start)
					mu.Lock()
					if first == 0 || at < first {
						first = at
					}
					mu.Unlock()
				}
			}()
		default: // every slot busy: wait for the next tick
		}
		<-tick.C
	}
	wg.Wait()
	return first, first != 0
}
