package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/server/servertest"
)

// Any manager's API takes writes: a follower forwards them to the leader.
// Reads are local with the index headers; ?consistent=true goes through
// the leader; a backup taken through a follower comes from the leader.
func TestFollowerForwardsWritesAndConsistentReads(t *testing.T) {
	t.Parallel()
	nodes := servertest.StartCluster(t, 3)
	follower := nodes[2]
	if follower.Store.IsLeader() {
		t.Fatal("node 2 leads")
	}
	body := []byte("apiVersion: mqtt.swarm/v1alpha1\nkind: MqttCluster\nmetadata: {name: fwd}\n")
	if code, b := do(t, follower.URL, call{method: http.MethodPost, path: server.BasePath, token: tok, body: body}); code != http.StatusCreated {
		t.Fatalf("apply through a follower: %d %s", code, b)
	}
	if nodes[0].Store.Get(api.KindMqttCluster, "fwd") == nil {
		t.Fatal("the forwarded write is not on the leader")
	}
	// Without the token the follower refuses before forwarding.
	if code, _ := do(t, follower.URL, call{method: http.MethodPost, path: server.BasePath, body: body}); code != http.StatusUnauthorized {
		t.Fatalf("forwarding without a token: %d", code)
	}
	// A consistent read on the follower sees the write at once.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, follower.URL+server.BasePath+"/fwd?consistent=true", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"fwd"`)) {
		t.Fatalf("consistent read: %d %s", resp.StatusCode, b)
	}
	// A local read carries how fresh it is.
	req, _ = http.NewRequestWithContext(context.Background(), http.MethodGet, follower.URL+server.BasePath, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if idx, err := strconv.ParseUint(resp.Header.Get(server.IndexHeader), 10, 64); err != nil || idx == 0 || resp.Header.Get(server.KnownLeaderHeader) != "true" || resp.Header.Get(server.LastContactHeader) == "" {
		t.Fatalf("read headers: %v", resp.Header)
	}
	// Backup through a follower: the leader's state, readable.
	code, b := do(t, follower.URL, call{method: http.MethodGet, path: "/v1/backup", token: tok})
	var snap struct {
		Objects []struct{ Name string } `json:"objects"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &snap) != nil || len(snap.Objects) != 1 || snap.Objects[0].Name != "fwd" {
		t.Fatalf("backup: %d %s", code, b)
	}
	// Delete through a follower.
	if code, b := do(t, follower.URL, call{method: http.MethodDelete, path: server.BasePath + "/fwd", token: tok}); code != http.StatusOK {
		t.Fatalf("delete through a follower: %d %s", code, b)
	}
}
