// Package storetest opens a real one-node store for tests.
package storetest

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
)

// Open returns a bootstrapped one-voter store that leads, closed when the
// test ends.
func Open(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(store.Config{DataDir: t.TempDir(), BindAddr: testutil.FreeAddr(t), Bootstrap: true, LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}
