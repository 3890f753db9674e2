// Package servertest starts a real operator API (raft store on disk, HTTP
// server on loopback) inside a test process.
package servertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"

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
	return StartWith(t, dir, nil)
}

// StartWith is Start with the API's handler wrapped (a test that counts or
// holds requests); wrap nil: none.
func StartWith(t testing.TB, dir string, wrap func(http.Handler) http.Handler) *Instance {
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
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		hs.Close()
		_ = st.Close()
	})
	return &Instance{URL: hs.URL, Store: st, HTTP: hs}
}

// StartCluster runs n stores as one raft cluster (the first bootstraps,
// the others are added as voters) with an API in front of each; a
// follower's API forwards writes to the leader's, found by raft address.
func StartCluster(t testing.TB, n int) []*Instance {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var mu sync.Mutex
	apiOf := map[string]string{} // raft address -> API URL
	var out []*Instance
	for i := 0; i < n; i++ {
		addr := testutil.FreeAddr(t)
		st, err := store.Open(store.Config{DataDir: t.TempDir(), NodeID: fmt.Sprintf("m%d", i), BindAddr: addr, Bootstrap: i == 0, LogOutput: io.Discard, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := st.WaitLeader(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		} else if err := out[0].Store.AddVoter(fmt.Sprintf("m%d", i), addr); err != nil {
			t.Fatal(err)
		}
		forward := func() (*url.URL, http.RoundTripper, bool) {
			li := st.Leader()
			mu.Lock()
			defer mu.Unlock()
			u, ok := apiOf[li.LeaderAddress]
			if !ok {
				return nil, nil, false
			}
			p, err := url.Parse(u)
			return p, http.DefaultTransport, err == nil
		}
		srv, err := server.New(server.Config{Store: st, Token: Token, Defaults: api.Defaults{BrokerImage: "eclipse-mosquitto:2.0", LoadBalancerImage: "haproxy:2.8"}, Logger: quiet, Forward: forward})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		mu.Lock()
		apiOf[addr] = hs.URL
		mu.Unlock()
		out = append(out, &Instance{URL: hs.URL, Store: st, HTTP: hs})
	}
	t.Cleanup(func() {
		for _, in := range out {
			in.HTTP.Close()
			_ = in.Store.Close()
		}
	})
	for _, in := range out {
		select {
		case <-in.Store.CaughtUp():
		case <-time.After(10 * time.Second):
			t.Fatal("a server did not catch up")
		}
	}
	return out
}
