//go:build e2e_ha

package ha

import (
	"context"
	"crypto/tls"
	"fmt"
	gonet "net"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"
)

// tlsLayer is a raft stream layer that dials with a given TLS config: the
// test's "peers", honest or not.
type tlsLayer struct {
	ln  gonet.Listener
	cfg *tls.Config
}

func (l *tlsLayer) Accept() (gonet.Conn, error) { return l.ln.Accept() }
func (l *tlsLayer) Close() error                { return l.ln.Close() }
func (l *tlsLayer) Addr() gonet.Addr            { return l.ln.Addr() }
func (l *tlsLayer) Dial(a raft.ServerAddress, timeout time.Duration) (gonet.Conn, error) {
	cfg := l.cfg.Clone()
	cfg.ServerName, _, _ = gonet.SplitHostPort(string(a))
	return tls.DialWithDialer(&gonet.Dialer{Timeout: timeout}, "tcp", string(a), cfg)
}

func peerTransport(t *testing.T, cfg *tls.Config) raft.Transport {
	t.Helper()
	if cfg == nil {
		tr, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	ln, err := gonet.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransport(&tlsLayer{ln: ln, cfg: cfg}, 1, 2*time.Second, nil)
	t.Cleanup(func() { tr.Close() })
	return tr
}

// quietIndex waits until every operator reports the same last raft index
// twice in a row, and returns it with the term.
func (e *env) quietIndex(t *testing.T) (last, term uint64) {
	t.Helper()
	eventually(t, "a quiet raft log", 60*time.Second, func() error {
		var seen []uint64
		for round := 0; round < 2; round++ {
			for _, n := range nodes {
				li := e.leaderInfo(n)
				if li == nil {
					return fmt.Errorf("%s does not answer", n)
				}
				seen = append(seen, li.LastIndex)
				term = max(term, li.Term)
			}
			time.Sleep(300 * time.Millisecond) // two samples apart: the log must stand still
		}
		for _, v := range seen {
			if v != seen[0] {
				return fmt.Errorf("last indexes %v", seen)
			}
		}
		last = seen[0]
		return nil
	})
	return last, term
}

// TestAttackerOnTheNetwork plays the attacker of the security review from
// the host (not one of the project's containers) against the raft port of
// every manager: one AppendEntries of a higher term carrying an
// MqttCluster (as the packet that stored image attacker/evil did), over
// plain TCP, over TLS with no certificate, and with an operator
// certificate from another CA — refused everywhere, every operator still
// up, the store unchanged. Then an authenticated peer (a certificate from
// the real control-plane CA, as only an operator holds) appends an entry of
// an unknown type: every replica skips it alike (the skip counter moves on
// all three), none crashes, the cluster elects a leader and takes writes.
func TestAttackerOnTheNetwork(t *testing.T) {
	e := setup(t)
	e.waitVoters(t, 3)
	ctx := context.Background()
	before, err := e.c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	evil := []byte(`{"kind":"MqttCluster","name":"evil","spec":{"image":"attacker/evil:latest"}}`)
	append1 := func(tr raft.Transport, n string, last, term uint64, data []byte) (*raft.AppendEntriesResponse, error) {
		var resp raft.AppendEntriesResponse
		req := &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte("127.0.0.1:1")},
			Term:      term + 1, LeaderCommitIndex: last + 1,
			Entries: []*raft.Log{{Index: last + 1, Term: term + 1, Type: raft.LogCommand, Data: data}},
		}
		err := tr.AppendEntries(raft.ServerID(e.id[n]), raft.ServerAddress(e.ip[n]+":7951"), req, &resp)
		return &resp, err
	}

	otherPEM, _ := tlsutil.NewCA("attacker", time.Now())
	otherCA, _ := tlsutil.ParseCA(otherPEM)
	impostor, _ := tlsutil.NewNode(otherCA, tlsutil.Identity{ID: e.id[nodes[0]]}, time.Hour)
	noCert := tlsutil.Base()
	noCert.InsecureSkipVerify = true
	attackers := map[string]*tls.Config{
		"plain TCP":                             nil,
		"TLS without a certificate":             noCert,
		"an operator certificate of another CA": impostor.ClientConfig(""),
	}
	last, term := e.quietIndex(t)
	for name, cfg := range attackers {
		tr := peerTransport(t, cfg)
		for _, n := range nodes {
			if resp, err := append1(tr, n, last, term, append([]byte{0}, evil...)); err == nil {
				t.Errorf("%s: %s took an AppendEntries (success %v)", name, n, resp.Success)
			}
		}
	}
	for _, n := range nodes {
		if e.leaderInfo(n) == nil {
			t.Errorf("%s's operator stopped answering after the attempts", n)
		}
	}
	if _, err := e.c.Get(ctx, "evil"); err == nil {
		t.Fatal("the injected cluster is stored")
	}

	// An authenticated peer, an entry of an unknown type.
	ca, err := tlsutil.LoadCA(filepath.Join(root(), ".local", "control-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	peer, err := tlsutil.NewNode(ca, tlsutil.Identity{ID: "test-peer"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	skippedBefore := map[string]int{}
	for _, n := range nodes {
		skippedBefore[n] = max(testutil.Metric(e.api(n), "mqttoperator_raft_skipped_entries_total"), 0)
	}
	tr := peerTransport(t, peer.ClientConfig(""))
	eventually(t, "the unknown entry appended on every manager", 60*time.Second, func() error {
		last, term := e.quietIndex(t)
		for _, n := range nodes {
			resp, err := append1(tr, n, last, term, []byte{77, '{', '}'})
			if err != nil || !resp.Success {
				return fmt.Errorf("%s: %v (success %v)", n, err, resp != nil && resp.Success)
			}
		}
		return nil
	})
	eventually(t, "every replica skipped it", 30*time.Second, func() error {
		for _, n := range nodes {
			if got := testutil.Metric(e.api(n), "mqttoperator_raft_skipped_entries_total"); got != skippedBefore[n]+1 {
				return fmt.Errorf("%s skipped %d entries (before: %d)", n, got, skippedBefore[n])
			}
		}
		return nil
	})
	e.waitVoters(t, 3)
	after, err := e.c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(userView(before), userView(after)) {
		t.Fatalf("objects changed:\nbefore %+v\nafter  %+v", userView(before), userView(after))
	}
	// Writes go on.
	if err := e.applyWith(ctx, e.quickstart(t), "security-test", ""); err != nil {
		t.Fatalf("a write after the skipped entry: %v", err)
	}
	e.waitReady(t)
}
