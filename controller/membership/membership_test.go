package membership

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/store"
)

type fakeRaft struct {
	self  string
	peers map[string]string
}

func (f *fakeRaft) NodeID() string { return f.self }
func (f *fakeRaft) Peers() ([]store.Peer, error) {
	var out []store.Peer
	for id, a := range f.peers {
		out = append(out, store.Peer{ID: id, Address: a})
	}
	slices.SortFunc(out, func(a, b store.Peer) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
func (f *fakeRaft) AddVoter(id, addr string) error { f.peers[id] = addr; return nil }
func (f *fakeRaft) RemoveServer(id string) error   { delete(f.peers, id); return nil }

func manager(id, addr string, leader bool) dswarm.Node {
	return dswarm.Node{ID: id, Spec: dswarm.NodeSpec{Role: dswarm.NodeRoleManager},
		ManagerStatus: &dswarm.ManagerStatus{Addr: addr + ":2377", Leader: leader}}
}

func TestMembershipFollowsTheManagers(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	r := &fakeRaft{self: "a", peers: map[string]string{"a": "10.0.0.1:7951"}}
	nodes := []dswarm.Node{manager("a", "10.0.0.1", true), manager("b", "10.0.0.2", false), manager("c", "10.0.0.3", false),
		{ID: "w", Spec: dswarm.NodeSpec{Role: dswarm.NodeRoleWorker}}}
	up := map[string]bool{"10.0.0.2:7951": true}
	m := &Membership{Raft: r, RaftPort: 7951, Grace: time.Minute, Now: func() time.Time { return now },
		Nodes:     func(context.Context) ([]dswarm.Node, error) { return nodes, nil },
		Reachable: func(a string) bool { return up[a] }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	pass := func() ([]string, []string) {
		t.Helper()
		a, rm, err := m.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return a, rm
	}
	// b's operator answers: added; c's does not yet: not added (it would
	// only raise the quorum); the worker never.
	if a, _ := pass(); !slices.Equal(a, []string{"b"}) {
		t.Fatalf("added %v", a)
	}
	up["10.0.0.3:7951"] = true
	if a, _ := pass(); !slices.Equal(a, []string{"c"}) || len(r.peers) != 3 {
		t.Fatalf("added %v, peers %v", a, r.peers)
	}
	// Nothing changed: nothing done.
	if a, rm := pass(); len(a)+len(rm) != 0 {
		t.Fatalf("quiet pass changed %v %v", a, rm)
	}
	// c's address changes (node restarted elsewhere): re-added there.
	nodes[2] = manager("c", "10.0.0.9", false)
	up["10.0.0.9:7951"] = true
	if a, _ := pass(); !slices.Equal(a, []string{"c"}) || r.peers["c"] != "10.0.0.9:7951" {
		t.Fatalf("re-address: %v %v", a, r.peers)
	}
	// b and c demoted: removed after the grace period, one per pass.
	nodes[1].Spec.Role, nodes[2].Spec.Role = dswarm.NodeRoleWorker, dswarm.NodeRoleWorker
	if _, rm := pass(); len(rm) != 0 {
		t.Fatalf("removed at once: %v", rm)
	}
	now = now.Add(30 * time.Second)
	if _, rm := pass(); len(rm) != 0 {
		t.Fatalf("removed within the grace: %v", rm)
	}
	now = now.Add(31 * time.Second)
	if _, rm := pass(); len(rm) != 1 {
		t.Fatalf("first removal: %v", rm)
	}
	if _, rm := pass(); len(rm) != 1 || len(r.peers) != 1 {
		t.Fatalf("second removal: %v, peers %v", rm, r.peers)
	}
	// A server that comes back as a manager within the grace is kept.
	nodes[1].Spec.Role = dswarm.NodeRoleManager
	pass()
	nodes[1].Spec.Role = dswarm.NodeRoleWorker
	pass()
	nodes[1].Spec.Role = dswarm.NodeRoleManager
	now = now.Add(2 * time.Minute)
	if _, rm := pass(); len(rm) != 0 || r.peers["b"] == "" {
		t.Fatalf("a returning manager was removed: %v %v", rm, r.peers)
	}
	// The leader never removes itself.
	nodes[0].Spec.Role = dswarm.NodeRoleWorker
	pass()
	now = now.Add(2 * time.Minute)
	if _, rm := pass(); slices.Contains(rm, "a") {
		t.Fatal("the leader removed itself")
	}
}

func TestShouldBootstrap(t *testing.T) {
	t.Parallel()
	nodes := []dswarm.Node{manager("a", "10.0.0.1", true), manager("b", "10.0.0.2", false)}
	none := func([]string) bool { return false }
	some := func([]string) bool { return true }
	if !ShouldBootstrap("a", nodes, none) {
		t.Error("the Swarm leader with no raft cluster around must bootstrap")
	}
	if ShouldBootstrap("b", nodes, none) {
		t.Error("a non-leader manager bootstrapped")
	}
	if ShouldBootstrap("a", nodes, some) {
		t.Error("bootstrapped while another manager's operator has raft state or does not answer")
	}
	if !ShouldBootstrap("a", nodes[:1], some) {
		t.Error("a single manager must bootstrap")
	}
}
