package store

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"
)

type node struct {
	id, addr, dir string
	s             *Store
	// serverTLS and clientTLS, when set, carry raft over mutual TLS.
	serverTLS, clientTLS *tls.Config
}

func (n *node) open(t *testing.T, bootstrap bool) {
	t.Helper()
	s, err := Open(Config{DataDir: n.dir, NodeID: n.id, BindAddr: n.addr, Bootstrap: bootstrap, LogOutput: io.Discard, ServerTLS: n.serverTLS, ClientTLS: n.clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	n.s = s
}

func (n *node) close() {
	if n.s != nil {
		n.s.Close()
		n.s = nil
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(nodes []*node) *node {
	for _, n := range nodes {
		if n.s != nil && n.s.IsLeader() {
			return n
		}
	}
	return nil
}

// threeNodes bootstraps the first server and adds the two others as
// voters, as the operator's membership loop does. With a CA, raft runs
// over mutual TLS with each server's operator certificate.
func threeNodes(t *testing.T, ca ...*tlsutil.CA) []*node {
	t.Helper()
	var nodes []*node
	for i := 0; i < 3; i++ {
		n := &node{id: fmt.Sprintf("n%d", i), addr: testutil.FreeAddr(t), dir: t.TempDir()}
		if len(ca) > 0 {
			id, err := tlsutil.NewNode(ca[0], tlsutil.Identity{ID: n.id}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			n.serverTLS, n.clientTLS = id.ServerConfig(tls.RequireAndVerifyClientCert), id.ClientConfig("")
		}
		nodes = append(nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.close()
		}
	})
	nodes[0].open(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nodes[0].s.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// A joining server with no state serves nothing until it has caught up.
	nodes[1].open(t, false)
	nodes[2].open(t, false)
	select {
	case <-nodes[1].s.CaughtUp():
		t.Fatal("a server not yet in any configuration says it is caught up")
	case <-time.After(300 * time.Millisecond):
	}
	if _, _, err := nodes[0].s.Apply(ApplyRequest{Kind: "K", Name: "before-join", Spec: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		if err := nodes[0].s.AddVoter(n.id, n.addr); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes[1:] {
		select {
		case <-n.s.CaughtUp():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s never caught up", n.id)
		}
		if n.s.Get("K", "before-join") == nil {
			t.Fatalf("%s caught up without the objects written before it joined", n.id)
		}
	}
	return nodes
}

func TestThreeVotersFailoverAndMembership(t *testing.T) {
	t.Parallel()
	nodes := threeNodes(t)
	peers, err := nodes[0].s.Peers()
	if err != nil || len(peers) != 3 {
		t.Fatalf("peers: %+v %v", peers, err)
	}
	// Writes on a follower are refused (the API forwards them); reads are
	// local.
	if _, _, err := nodes[1].s.Apply(ApplyRequest{Kind: "K", Name: "x", Spec: json.RawMessage(`{}`)}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write on a follower: %v", err)
	}
	if err := nodes[1].s.VerifyLeader(); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("VerifyLeader on a follower: %v", err)
	}
	if err := nodes[0].s.VerifyLeader(); err != nil {
		t.Fatalf("VerifyLeader on the leader: %v", err)
	}
	for i := 0; i < 20; i++ {
		if _, _, err := nodes[0].s.Apply(ApplyRequest{Kind: "K", Name: fmt.Sprintf("o%d", i), Spec: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// The leader goes: another takes over, and every acknowledged write is
	// there.
	start := time.Now()
	nodes[0].close()
	waitFor(t, "a new leader", 5*time.Second, func() bool { return leaderOf(nodes) != nil })
	t.Logf("new leader after %v", time.Since(start))
	l := leaderOf(nodes)
	if err := l.s.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if l.s.Get("K", fmt.Sprintf("o%d", i)) == nil {
			t.Fatalf("acknowledged write o%d lost in the failover", i)
		}
	}
	// The old leader comes back with its log and rejoins as itself.
	nodes[0].open(t, true)
	if _, _, err := l.s.Apply(ApplyRequest{Kind: "K", Name: "after", Spec: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the returning server catching up", 10*time.Second, func() bool { return nodes[0].s.Get("K", "after") != nil })
	// Membership: remove one, it is gone from the configuration.
	var gone *node
	for _, n := range nodes {
		if n != l {
			gone = n
			break
		}
	}
	if err := l.s.RemoveServer(gone.id); err != nil {
		t.Fatal(err)
	}
	peers, _ = l.s.Peers()
	if len(peers) != 2 {
		t.Fatalf("after remove: %+v", peers)
	}
}

func TestBackupRestoreAndRecover(t *testing.T) {
	t.Parallel()
	nodes := threeNodes(t)
	l := nodes[0].s
	for i := 0; i < 5; i++ {
		if _, _, err := l.Apply(ApplyRequest{Kind: "K", Name: fmt.Sprintf("o%d", i), Spec: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	var backup bytes.Buffer
	if err := l.Backup(&backup); err != nil {
		t.Fatal(err)
	}
	want, _ := l.List("K")

	// Every server lost: a new one restored from the backup leads alone,
	// with the same objects (uid, versions, status).
	n := &node{id: "fresh", addr: testutil.FreeAddr(t), dir: t.TempDir()}
	t.Cleanup(n.close)
	count, err := RestoreBackup(n.dir, n.id, n.addr, bytes.NewReader(backup.Bytes()))
	if err != nil || count != len(want)+0 {
		t.Fatalf("restore: %d objects, %v", count, err)
	}
	if _, err := RestoreBackup(n.dir, n.id, n.addr, bytes.NewReader(backup.Bytes())); err == nil {
		t.Fatal("restored over existing state")
	}
	n.open(t, false)
	waitFor(t, "the restored server leading", 10*time.Second, n.s.IsLeader)
	<-n.s.CaughtUp()
	got, _ := n.s.List("K")
	if len(got) != len(want) {
		t.Fatalf("restored %d objects, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].UID != want[i].UID || got[i].ModifyIndex != want[i].ModifyIndex || string(got[i].Spec) != string(want[i].Spec) {
			t.Fatalf("restored %+v, want %+v", got[i], want[i])
		}
	}
	if _, _, err := n.s.Apply(ApplyRequest{Kind: "K", Name: "new", Spec: json.RawMessage(`{}`)}); err != nil {
		t.Fatalf("write after restore: %v", err)
	}

	// Quorum lost for good (two of three gone): the survivor is recovered
	// to a one-server configuration and leads with its data.
	survivor := nodes[2]
	for _, x := range nodes {
		x.close()
	}
	if err := Recover(survivor.dir, []raft.Server{{ID: raft.ServerID(survivor.id), Address: raft.ServerAddress(survivor.addr), Suffrage: raft.Voter}}); err != nil {
		t.Fatal(err)
	}
	survivor.open(t, false)
	waitFor(t, "the recovered survivor leading", 10*time.Second, survivor.s.IsLeader)
	<-survivor.s.CaughtUp()
	if survivor.s.Get("K", "o4") == nil {
		t.Fatal("the survivor lost its objects in the recovery")
	}
}
