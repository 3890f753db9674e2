package server_test

import (
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

// leaderless is a real store whose raft can be made to know no leader.
type leaderless struct {
	*store.Store
	lost *atomic.Bool
}

func (l leaderless) Leader() store.LeaderInfo {
	info := l.Store.Leader()
	if l.lost.Load() {
		info.LeaderID, info.LeaderAddress = "", ""
	}
	return info
}

// TestLivezStaysOnceJoined: the container's health is 503 until the
// operator has joined its raft cluster, then 200 for good — a lost leader
// later (a partition, a lost quorum) makes readyz 503 but not livez, so
// Swarm does not restart an operator that is only waiting.
func TestLivezStaysOnceJoined(t *testing.T) {
	inst := servertest.Start(t, "")
	lost := &atomic.Bool{}
	lost.Store(true)
	srv, err := server.New(server.Config{Store: leaderless{inst.Store, lost}, Token: servertest.Token})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	get := func(path string) int {
		code, _ := do(t, hs.URL, call{method: "GET", path: path})
		return code
	}
	if c := get("/livez"); c != 503 {
		t.Fatalf("livez before joining: %d, want 503", c)
	}
	lost.Store(false)
	if c := get("/livez"); c != 200 {
		t.Fatalf("livez once joined: %d, want 200", c)
	}
	lost.Store(true)
	if c := get("/readyz"); c != 503 {
		t.Fatalf("readyz with no leader: %d, want 503", c)
	}
	if c := get("/livez"); c != 200 {
		t.Fatalf("livez after the leader was lost: %d, want 200 (joined once)", c)
	}
}
