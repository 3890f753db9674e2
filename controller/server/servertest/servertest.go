// Package servertest starts a real operator API (raft store on disk, HTTP
// server on loopback) inside a test process.
package servertest

import (
	"context"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

// Token is the bearer token of test servers.
const Token = "test-token-0123456789"

// Instance is a running API.
type Instance struct {
	URL   string
	Store *store.Store
	HTTP  *httptest.Server
}

// Start runs a one-voter store in dir (a new temp dir when empty) and the
// API in front of it; both stop when the test ends.
func Start(t testing.TB, dir string) *Instance {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	addr := testutil.FreeAddr(t)
	st, err := store.Open(store.Config{DataDir: dir, BindAddr: addr, Bootstrap: true, LogOutput: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.CaughtUp():
	case <-ctx.Done():
		t.Fatal("the store did not catch up with its log")
	}
	srv, err := server.New(server.Config{Store: st, Token: Token, Defaults: api.Defaults{BrokerImage: "eclipse-mosquitto:2.0", LoadBalancerImage: "haproxy:2.8"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		hs.Close()
		_ = st.Close()
	})
	return &Instance{URL: hs.URL, Store: st, HTTP: hs}
}
