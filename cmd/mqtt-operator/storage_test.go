package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/api"
	"github.com/swarm-mqtt-operator/swarm-mqtt-operator/controller/objects"
)

// Every raft server's operator is asked its storage version: a current one
// answers it, one from before storage versions answers none (1), one that
// does not answer is an error naming it; this operator answers for itself.
func TestPeerStorageVersions(t *testing.T) {
	serve := func(body string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/version" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte(body))
		}))
	}
	// Each test server stands for the peers asked with its port as the
	// API port.
	cur := serve(`{"version":"new","apiVersion":"mqtt.swarm/v1alpha1","storageVersion":` + strconv.Itoa(objects.StorageVersion) + `}`)
	defer cur.Close()
	old := serve(`{"version":"c1054f5","apiVersion":"mqtt.swarm/v1alpha1"}`)
	defer old.Close()
	_, curPort, _ := net.SplitHostPort(strings.TrimPrefix(cur.URL, "http://"))
	_, oldPort, _ := net.SplitHostPort(strings.TrimPrefix(old.URL, "http://"))
	pc, _ := strconv.Atoi(curPort)
	po, _ := strconv.Atoi(oldPort)

	ask := func(port int, ps ...api.Peer) (map[string]int, error) {
		f := peerStorageVersions("self", func() ([]api.Peer, error) { return ps, nil }, newPeerTransports(nil), port)
		return f(t.Context())
	}
	got, err := ask(pc, api.Peer{ID: "self", Address: "127.0.0.1:1"}, api.Peer{ID: "m2", Address: "127.0.0.1:7951"})
	if err != nil || got["self"] != objects.StorageVersion || got["m2"] != objects.StorageVersion {
		t.Fatalf("current peers: %v %v", got, err)
	}
	if got, err := ask(po, api.Peer{ID: "m3", Address: "127.0.0.1:7951"}); err != nil || got["m3"] != 1 {
		t.Fatalf("a peer from before storage versions: %v %v", got, err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	_, deadPort, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	pd, _ := strconv.Atoi(deadPort)
	if got, err := ask(pd, api.Peer{ID: "m4", Address: "127.0.0.1:7951"}); err == nil || !strings.Contains(err.Error(), "m4") || len(got) != 0 {
		t.Fatalf("a peer that does not answer: %v %v", got, err)
	}
}
