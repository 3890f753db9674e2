package store

import (
	"crypto/tls"
	"encoding/json"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/testutil"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/internal/tlsutil"
)

func newCA(t *testing.T) *tlsutil.CA {
	t.Helper()
	b, err := tlsutil.NewCA("test control-plane CA", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := tlsutil.ParseCA(b)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestRaftOverMutualTLS: three servers with operator certificates from
// the control-plane CA form a cluster and replicate; a peer without a
// certificate, with a self-signed one, or with an operator certificate
// from another CA cannot append entries of a higher term (as the
// attacker's packet did on the plain transport): refused, the leader still
// leads in the same term, nothing stored.
func TestRaftOverMutualTLS(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	nodes := threeNodes(t, ca)
	leader := leaderOf(nodes)
	if leader == nil {
		t.Fatal("no leader")
	}
	if _, _, err := leader.s.Apply(ApplyRequest{Kind: "K", Name: "over-tls", Spec: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor(t, n.id+" has the write", 10*time.Second, func() bool { return n.s.Get("K", "over-tls") != nil })
	}

	other, err := tlsutil.NewNode(newCA(t), tlsutil.Identity{ID: "n1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	selfSigned := other.ClientConfig("")
	selfSigned.InsecureSkipVerify = true
	noCert := tlsutil.Base()
	noCert.InsecureSkipVerify = true
	attackers := map[string]*tls.Config{
		"no client certificate":              noCert,
		"operator certificate of another CA": selfSigned,
	}
	term := leader.s.Leader().Term
	last := leader.s.Leader().LastIndex
	spec, _ := encode(ApplyObjectType, &ApplyRequest{Kind: "MqttCluster", Name: "evil", Spec: json.RawMessage(`{"image":"attacker/evil:latest"}`)})
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte(nodes[1].addr)},
		Term:      term + 1, PrevLogEntry: last, PrevLogTerm: term, LeaderCommitIndex: last + 1,
		Entries: []*raft.Log{{Index: last + 1, Term: term + 1, Type: raft.LogCommand, Data: spec}},
	}
	dial := map[string]func() (raft.Transport, error){
		"plain TCP": func() (raft.Transport, error) {
			return raft.NewTCPTransport(testutil.FreeAddr(t), nil, 1, time.Second, nil)
		},
	}
	for name, cfg := range attackers {
		dial[name] = func() (raft.Transport, error) {
			layer, err := newTLSStreamLayer(testutil.FreeAddr(t), nil, tlsutil.Base(), cfg)
			if err != nil {
				return nil, err
			}
			return raft.NewNetworkTransport(layer, 1, time.Second, nil), nil
		}
	}
	for name, mk := range dial {
		t.Run(name, func(t *testing.T) {
			tr, err := mk()
			if err != nil {
				t.Fatal(err)
			}
			defer tr.(interface{ Close() error }).Close()
			for _, n := range nodes {
				var resp raft.AppendEntriesResponse
				err := tr.AppendEntries(raft.ServerID(n.id), raft.ServerAddress(n.addr), req, &resp)
				if err == nil {
					t.Fatalf("%s accepted an AppendEntries (success %v)", n.id, resp.Success)
				}
			}
		})
	}
	if li := leader.s.Leader(); !li.IsLeader || li.Term != term {
		t.Fatalf("after the attempts: leader %v term %d (was %d)", li.IsLeader, li.Term, term)
	}
	for _, n := range nodes {
		if n.s.Get("MqttCluster", "evil") != nil {
			t.Fatalf("%s stored the injected object", n.id)
		}
	}
	if _, _, err := leader.s.Apply(ApplyRequest{Kind: "K", Name: "after", Spec: json.RawMessage(`{}`)}); err != nil {
		t.Fatalf("the cluster no longer takes writes: %v", err)
	}
}
